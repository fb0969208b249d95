"""`text_insights`: readability scores and keywords of a text, for content
pipelines (is this draft readable? what is it about?).

Pure Python, no dependencies: ``composer plugin build`` bundles it with
CPython into one WebAssembly component.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, List

from composer_plugin import PluginError, function, log

WORD = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:'[A-Za-z]+)?")
SENTENCE_END = re.compile(r"[.!?]+")

TEXT_INPUT = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}},
}


def words(text: str) -> List[str]:
    """The words of ``text`` (letters and inner apostrophes)."""
    return WORD.findall(text)


def sentence_count(text: str) -> int:
    """Sentences: runs of text with words, split at ``.``, ``!`` and ``?``."""
    return sum(1 for part in SENTENCE_END.split(text) if words(part))


def syllables(word: str) -> int:
    """English syllables, estimated from vowel groups (the usual heuristic)."""
    w = word.lower()
    if len(w) <= 3:
        return 1
    w = re.sub(r"(?:[^laeiouy]es|ed|[^laeiouy]e)$", "", w)
    w = re.sub(r"^y", "", w)
    return max(1, len(re.findall(r"[aeiouy]{1,2}", w)))


def grade_label(ease: float) -> str:
    """The usual reading of a Flesch reading-ease score."""
    for floor, label in (
        (90, "very easy"),
        (80, "easy"),
        (70, "fairly easy"),
        (60, "plain English"),
        (50, "fairly difficult"),
        (30, "difficult"),
    ):
        if ease >= floor:
            return label
    return "very difficult"


@function(pure=True, tags=["text", "readability"], input_schema=TEXT_INPUT)
def score_readability(input: dict) -> dict:
    """Flesch reading ease and Flesch-Kincaid grade of `text`, with counts."""
    text = input["text"]
    ws = words(text)
    if not ws:
        raise PluginError("`text` has no words to score")
    sentences = sentence_count(text)
    syl = sum(syllables(w) for w in ws)
    per_sentence = len(ws) / sentences
    per_word = syl / len(ws)
    ease = 206.835 - 1.015 * per_sentence - 84.6 * per_word
    grade = 0.39 * per_sentence + 11.8 * per_word - 15.59
    log.debug(f"{len(ws)} words, {sentences} sentences, {syl} syllables")
    return {
        "flesch_reading_ease": round(ease, 1),
        "flesch_kincaid_grade": round(grade, 1),
        "level": grade_label(ease),
        "words": len(ws),
        "sentences": sentences,
        "syllables": syl,
        "words_per_sentence": round(per_sentence, 2),
    }


STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because
    been before being below between both but by can could did do does doing
    down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just let
    me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves also may might
    must shall us many much one two new use used using
    """.split()
)


@function(
    pure=True,
    tags=["text", "keywords"],
    input_schema={
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string"},
            "top": {"type": "integer", "minimum": 1, "maximum": 100},
            "min_length": {"type": "integer", "minimum": 1},
        },
    },
)
def extract_keywords(input: dict) -> dict:
    """The most frequent content words and two-word phrases of `text`.

    Input: ``text``, optional ``top`` (default 10) and ``min_length`` (default
    3). Output: ``keywords`` (``{"term", "count", "score"}``, best first;
    score is count per 100 words) and ``phrases`` (``{"phrase", "count"}``,
    two content words in a row that occur at least twice).
    """
    text = input["text"]
    top = int(input.get("top", 10))
    min_length = int(input.get("min_length", 3))
    ws = [w.lower() for w in words(text)]
    content = [w for w in ws if w not in STOPWORDS and len(w) >= min_length]
    counts: Dict[str, int] = Counter(content)
    # Highest count first; ties by first appearance, so the order is stable.
    first = {w: i for i, w in reversed(list(enumerate(content)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))[:top]
    total = max(len(ws), 1)
    pairs: Counter = Counter()
    for a, b in zip(ws, ws[1:]):
        if a in counts and b in counts:
            pairs[f"{a} {b}"] += 1
    phrases = [
        {"phrase": p, "count": c}
        for p, c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if c >= 2
    ][:top]
    return {
        "keywords": [
            {"term": w, "count": counts[w], "score": round(100 * counts[w] / total, 2)}
            for w in ranked
        ],
        "phrases": phrases,
        "words": len(ws),
    }
