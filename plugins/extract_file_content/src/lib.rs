//! `extract_file_content`: the title and text of a document file.
//!
//! Input: `file_path` (an absolute host path the host grants) and
//! `max_chars` (default 200000): how much of the text to return.
//!
//! By extension: `.md`/`.markdown` is Markdown (the text is kept as is; the
//! title is the first `# ` heading outside code fences), `.html`/`.htm` is
//! HTML (tags, comments, scripts and styles are dropped, common entities
//! decoded, whitespace collapsed, block tags become line breaks; the title
//! is `<title>`, else the first `<h1>`), `.pdf` (or a file starting with
//! `%PDF-`) is an error "PDF is not supported yet", and anything else is
//! plain text (invalid UTF-8 becomes U+FFFD). Without a heading the title
//! is the file name without its extension.
//!
//! The file is read in 64 KiB chunks, so any size is processed in constant
//! memory: only the first `max_chars` characters of text are kept, while
//! `chars` and `words` count the whole text. Progress (bytes read of the
//! file's size) is reported after every chunk.
//!
//! Output: `{"title", "content", "format": "text" | "markdown" | "html",
//! "chars", "words", "truncated"}`.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

const CHUNK: usize = 64 * 1024;
const DEFAULT_MAX_CHARS: u64 = 200_000;
/// Longest title (or heading line) kept, in characters.
const TITLE_CAP: usize = 1000;

#[derive(Deserialize)]
pub struct Input {
    pub file_path: String,
    #[serde(default)]
    pub max_chars: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct Output {
    pub title: String,
    pub content: String,
    pub format: &'static str,
    pub chars: u64,
    pub words: u64,
    pub truncated: bool,
}

/// Receives the text: keeps its first `max_chars` characters and counts
/// characters and words (runs of non-whitespace) over all of it.
struct Sink {
    max_chars: u64,
    content: String,
    chars: u64,
    words: u64,
    in_word: bool,
}

impl Sink {
    fn push(&mut self, c: char) {
        self.chars += 1;
        if c.is_whitespace() {
            self.in_word = false;
        } else if !self.in_word {
            self.in_word = true;
            self.words += 1;
        }
        if self.chars <= self.max_chars {
            self.content.push(c);
        }
    }
}

/// Markdown: passes text through and looks for the first `# ` heading.
#[derive(Default)]
struct Markdown {
    line: String,
    in_fence: bool,
    title: Option<String>,
}

impl Markdown {
    fn feed(&mut self, c: char, sink: &mut Sink) {
        sink.push(c);
        if self.title.is_some() {
            return;
        }
        if c == '\n' {
            self.end_line();
        } else if self.line.len() < TITLE_CAP {
            self.line.push(c);
        }
    }

    fn end_line(&mut self) {
        let line = self.line.trim();
        if line.starts_with("```") || line.starts_with("~~~") {
            self.in_fence = !self.in_fence;
        } else if !self.in_fence && self.line.len() - self.line.trim_start().len() <= 3 {
            if let Some(heading) = line.strip_prefix("# ") {
                let heading = heading.trim().trim_end_matches('#').trim();
                if !heading.is_empty() {
                    self.title = Some(heading.to_string());
                }
            }
        }
        self.line.clear();
    }
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Gap {
    None,
    Space,
    Line,
}

enum State {
    Text,
    /// Inside `<...>`; `quote` is the open attribute quote, if any.
    Tag {
        quote: Option<char>,
    },
    /// Inside `<!-- ... -->`, counting the `-` just seen.
    Comment {
        dashes: usize,
    },
    /// After `&`, collecting an entity name.
    Entity,
    /// Inside `<script>` or `<style>`, matching the closing tag.
    Raw {
        end: &'static str,
        matched: usize,
    },
    /// Skipping to the `>` of a closing tag.
    ToTagEnd,
}

/// HTML: a streaming tag stripper.
struct Html {
    state: State,
    /// The start of the current tag (enough for its name) or entity.
    buf: String,
    gap: Gap,
    started: bool,
    in_title: bool,
    title: String,
    /// 0 before the first `<h1>`, 1 inside it, 2 after it.
    h1_state: u8,
    h1: String,
}

const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "title",
    "tr",
    "ul",
];

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "deg" => '°',
        "times" => '×',
        _ => return None,
    })
}

/// Appends `c` to a title buffer, collapsing whitespace.
fn push_collapsed(buf: &mut String, c: char) {
    if buf.chars().count() >= TITLE_CAP {
        return;
    }
    if c.is_whitespace() {
        if !buf.is_empty() && !buf.ends_with(' ') {
            buf.push(' ');
        }
    } else {
        buf.push(c);
    }
}

impl Html {
    fn new() -> Self {
        Html {
            state: State::Text,
            buf: String::new(),
            gap: Gap::None,
            started: false,
            in_title: false,
            title: String::new(),
            h1_state: 0,
            h1: String::new(),
        }
    }

    fn feed(&mut self, c: char, sink: &mut Sink) {
        match &mut self.state {
            State::Text => match c {
                '<' => {
                    self.buf.clear();
                    self.state = State::Tag { quote: None };
                }
                '&' => {
                    self.buf.clear();
                    self.state = State::Entity;
                }
                _ => self.text(c, sink),
            },
            State::Entity => {
                if c == ';' {
                    self.state = State::Text;
                    match entity(&self.buf) {
                        Some(decoded) => self.text(decoded, sink),
                        None => self.flush_entity(Some(';'), sink),
                    }
                } else if (c.is_ascii_alphanumeric() || c == '#') && self.buf.len() < 10 {
                    self.buf.push(c);
                } else {
                    self.state = State::Text;
                    self.flush_entity(None, sink);
                    self.feed(c, sink);
                }
            }
            State::Tag { quote } => match (*quote, c) {
                (Some(q), _) if c == q => *quote = None,
                (Some(_), _) => {}
                (None, '>') => self.end_tag(),
                (None, '"' | '\'') if !self.buf.is_empty() => *quote = Some(c),
                (None, _)
                    if self.buf.is_empty() && !(c.is_ascii_alphabetic() || "/!?".contains(c)) =>
                {
                    // "a < b": not a tag after all.
                    self.state = State::Text;
                    self.text('<', sink);
                    self.feed(c, sink);
                }
                (None, _) => {
                    if self.buf.len() < 64 {
                        self.buf.push(c);
                    }
                    if self.buf == "!--" {
                        self.state = State::Comment { dashes: 0 };
                    }
                }
            },
            State::Comment { dashes } => match c {
                '-' => *dashes += 1,
                '>' if *dashes >= 2 => self.state = State::Text,
                _ => *dashes = 0,
            },
            State::Raw { end, matched } => {
                if c.is_ascii()
                    && end.as_bytes().get(*matched) == Some(&(c.to_ascii_lowercase() as u8))
                {
                    *matched += 1;
                    if *matched == end.len() {
                        self.state = State::ToTagEnd;
                    }
                } else {
                    *matched = usize::from(c == '<');
                }
            }
            State::ToTagEnd => {
                if c == '>' {
                    self.state = State::Text;
                }
            }
        }
    }

    fn flush_entity(&mut self, last: Option<char>, sink: &mut Sink) {
        let raw = std::mem::take(&mut self.buf);
        self.text('&', sink);
        for c in raw.chars().chain(last) {
            self.text(c, sink);
        }
    }

    fn end_tag(&mut self) {
        self.state = State::Text;
        let tag = self.buf.trim();
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let self_closing = tag.ends_with('/');
        match (name.as_str(), closing) {
            ("script", false) if !self_closing => {
                self.state = State::Raw {
                    end: "</script",
                    matched: 0,
                };
            }
            ("style", false) if !self_closing => {
                self.state = State::Raw {
                    end: "</style",
                    matched: 0,
                };
            }
            ("title", false) => self.in_title = self.title.is_empty(),
            ("title", true) => self.in_title = false,
            ("h1", false) if self.h1_state == 0 => self.h1_state = 1,
            ("h1", true) if self.h1_state == 1 => self.h1_state = 2,
            _ => {}
        }
        if BLOCK_TAGS.contains(&name.as_str()) {
            self.gap = Gap::Line;
        } else if matches!(name.as_str(), "td" | "th") && self.gap < Gap::Space {
            self.gap = Gap::Space;
        }
    }

    /// One character of text content.
    fn text(&mut self, c: char, sink: &mut Sink) {
        if self.in_title {
            push_collapsed(&mut self.title, c);
            return;
        }
        if self.h1_state == 1 {
            push_collapsed(&mut self.h1, c);
        }
        if c.is_whitespace() {
            if self.gap < Gap::Space {
                self.gap = Gap::Space;
            }
            return;
        }
        if self.started {
            match self.gap {
                Gap::Line => sink.push('\n'),
                Gap::Space => sink.push(' '),
                Gap::None => {}
            }
        }
        self.gap = Gap::None;
        self.started = true;
        sink.push(c);
    }

    fn finish(&mut self, sink: &mut Sink) {
        if let State::Entity = self.state {
            self.state = State::Text;
            self.flush_entity(None, sink);
        }
    }

    fn title(&self) -> Option<String> {
        [&self.title, &self.h1]
            .into_iter()
            .map(|t| t.trim())
            .find(|t| !t.is_empty())
            .map(str::to_string)
    }
}

enum Parser {
    Text,
    Markdown(Markdown),
    Html(Box<Html>),
}

impl Parser {
    fn feed(&mut self, c: char, sink: &mut Sink) {
        match self {
            Parser::Text => sink.push(c),
            Parser::Markdown(md) => md.feed(c, sink),
            Parser::Html(html) => html.feed(c, sink),
        }
    }
}

/// Decodes UTF-8 `bytes`, feeding each character to `f`. Returns how many
/// trailing bytes form an incomplete character (to be kept for the next
/// chunk), unless `eof`.
fn decode_utf8(mut bytes: &[u8], eof: bool, f: &mut impl FnMut(char)) -> usize {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                s.chars().for_each(&mut *f);
                return 0;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                if let Ok(s) = std::str::from_utf8(valid) {
                    s.chars().for_each(&mut *f);
                }
                match e.error_len() {
                    Some(bad) => {
                        f(char::REPLACEMENT_CHARACTER);
                        bytes = &rest[bad..];
                    }
                    None if eof => {
                        f(char::REPLACEMENT_CHARACTER);
                        return 0;
                    }
                    None => return rest.len(),
                }
            }
        }
    }
}

/// The work of `extract_file_content`, reporting progress to `progress`.
pub fn extract(input: Input, progress: &mut dyn FnMut(u64, u64)) -> Result<Output, String> {
    let path = Path::new(&input.file_path);
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let pdf_error = || format!("PDF is not supported yet ({})", path.display());
    let (mut parser, format) = match extension.as_str() {
        "pdf" => return Err(pdf_error()),
        "md" | "markdown" => (Parser::Markdown(Markdown::default()), "markdown"),
        "html" | "htm" | "xhtml" => (Parser::Html(Box::new(Html::new())), "html"),
        _ => (Parser::Text, "text"),
    };

    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut sink = Sink {
        max_chars: input.max_chars.unwrap_or(DEFAULT_MAX_CHARS),
        content: String::new(),
        chars: 0,
        words: 0,
        in_word: false,
    };
    let mut buf = vec![0u8; CHUNK + 4];
    let mut kept = 0; // bytes of an incomplete character carried over
    let mut done = 0u64;
    let mut first = true;
    loop {
        let n = match file.read(&mut buf[kept..kept + CHUNK]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let eof = n == 0;
        let end = kept + n;
        let mut bytes = &buf[..end];
        if first && !eof {
            first = false;
            if bytes.starts_with(b"%PDF-") {
                return Err(pdf_error());
            }
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let rest = decode_utf8(bytes, eof, &mut |c| parser.feed(c, &mut sink));
        buf.copy_within(end - rest..end, 0);
        kept = rest;
        if eof {
            break;
        }
        done += n as u64;
        progress(done, total.max(done));
    }

    let title = match &mut parser {
        Parser::Markdown(md) => {
            md.end_line();
            md.title.take()
        }
        Parser::Html(html) => {
            html.finish(&mut sink);
            html.title()
        }
        Parser::Text => None,
    };
    let title = title.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(Output {
        title,
        truncated: sink.chars > sink.max_chars,
        content: sink.content,
        format,
        chars: sink.chars,
        words: sink.words,
    })
}

pub fn extract_file_content(input: Input) -> Result<Output, String> {
    extract(input, &mut composer_plugin_sdk::progress)
}

composer_plugin_sdk::export!(
    extract_file_content: "Extracts the title and text of a text, Markdown or HTML file, streaming it in constant memory"
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("extract_file_content_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn run(path: &Path, max_chars: Option<u64>) -> Result<Output, String> {
        extract(
            Input {
                file_path: path.to_string_lossy().into(),
                max_chars,
            },
            &mut |_, _| {},
        )
    }

    #[test]
    fn plain_text_counts_and_title() {
        let p = temp_file(
            "notes.txt",
            "\u{feff}Hello  wörld\nsecond line\n".as_bytes(),
        );
        let out = run(&p, None).unwrap();
        assert_eq!(out.title, "notes");
        assert_eq!(out.format, "text");
        assert_eq!(out.content, "Hello  wörld\nsecond line\n");
        assert_eq!((out.chars, out.words, out.truncated), (25, 4, false));
    }

    #[test]
    fn markdown_title_is_the_first_h1_outside_fences() {
        let md = "Intro\n```\n# not a title\n```\n## Sub\n# Real Title #\ntext\n";
        let out = run(&temp_file("doc.md", md.as_bytes()), None).unwrap();
        assert_eq!(out.title, "Real Title");
        assert_eq!(out.format, "markdown");
        assert_eq!(out.content, md);
        let out = run(&temp_file("last.markdown", b"x\n# At the end"), None).unwrap();
        assert_eq!(out.title, "At the end");
    }

    #[test]
    fn html_is_stripped_and_decoded() {
        let html = r#"<!DOCTYPE html><html><head><title> My &amp; Page </title>
            <style>p { color: red; } </style><script>if (a < b && c) { x = "</p>"; }</script>
            </head><body><!-- a comment > with - dashes --><h1>Big <b>Head</b></h1>
            <p class="x > y">Fish &amp; chips &lt;3 &#169; &#x41; &bogus; a < b</p><ul><li>one</li><li>two</li></ul>
            </SCRIPT>tail</body></html>"#;
        let out = run(&temp_file("page.html", html.as_bytes()), None).unwrap();
        assert_eq!(out.title, "My & Page");
        assert_eq!(out.format, "html");
        assert_eq!(
            out.content,
            "Big Head\nFish & chips <3 © A &bogus; a < b\none\ntwo\ntail"
        );
        assert_eq!(out.words, 15);
        assert_eq!(out.chars, out.content.chars().count() as u64);
    }

    #[test]
    fn html_title_falls_back_to_the_first_h1() {
        let out = run(&temp_file("x.htm", b"<h1>First</h1><h1>Second</h1>"), None).unwrap();
        assert_eq!(out.title, "First");
        assert_eq!(out.content, "First\nSecond");
    }

    #[test]
    fn pdf_is_a_clear_error() {
        let err = run(&temp_file("a.pdf", b"%PDF-1.7"), None).unwrap_err();
        assert!(err.contains("PDF is not supported yet"), "{err}");
        let err = run(&temp_file("disguised.txt", b"%PDF-1.4 ..."), None).unwrap_err();
        assert!(err.contains("PDF is not supported yet"), "{err}");
        let err = run(Path::new("/nonexistent/x.txt"), None).unwrap_err();
        assert!(err.contains("cannot open"), "{err}");
    }

    #[test]
    fn invalid_utf8_and_split_characters() {
        // "é" (2 bytes) straddles the first chunk boundary; 0xFF is invalid.
        let mut bytes = vec![b'a'; CHUNK - 1];
        bytes.extend("é\u{ff}".as_bytes());
        bytes.push(0xFF);
        bytes.extend(b" z");
        let out = run(&temp_file("split.txt", &bytes), None).unwrap();
        assert!(out.content.ends_with("aéÿ\u{fffd} z"));
        assert_eq!((out.chars, out.words), (CHUNK as u64 + 4, 2));
    }

    #[test]
    fn multi_megabyte_file_is_streamed_counted_and_truncated() {
        let dir = std::env::temp_dir().join(format!("extract_file_content_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.txt");
        let mut f = std::io::BufWriter::new(File::create(&path).unwrap());
        let line = "lorem ipsum dolor sit amét, consectetur\n"; // 6 words, 40 chars, 41 bytes
        let lines = 100_000u64;
        for _ in 0..lines {
            f.write_all(line.as_bytes()).unwrap();
        }
        f.flush().unwrap();
        drop(f);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, 41 * lines);

        let mut calls = Vec::new();
        let out = extract(
            Input {
                file_path: path.to_string_lossy().into(),
                max_chars: Some(1000),
            },
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        assert_eq!(out.chars, 40 * lines);
        assert_eq!(out.words, 6 * lines);
        assert!(out.truncated);
        assert_eq!(out.content.chars().count(), 1000);
        assert!(line.repeat(26).starts_with(&out.content));
        assert_eq!(calls.len() as u64, size.div_ceil(CHUNK as u64));
        assert_eq!(calls.last(), Some(&(size, size)));
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));

        let out = run(&path, Some(u64::MAX)).unwrap();
        assert!(!out.truncated);
        assert_eq!(out.content.len() as u64, size);
    }
}
