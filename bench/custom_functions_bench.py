"""The Python side of the function benchmarks, registered the way Content
Composer registers custom functions: a module in `custom_functions/` of
the working directory, with `@register_function`. compare.py copies this
file there as `custom_functions/bench_functions.py`.
"""

import re

from content_composer.registry import register_function


@register_function("slugify", description="Turns `text` into a URL slug")
async def slugify(inputs):
    text = str(inputs.get("text", ""))
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return {"slug": slug}


@register_function("echo", description="Returns its input unchanged")
async def echo(inputs):
    return dict(inputs)


@register_function("split_topics", description="`topics` (comma-separated) as a list of {topic}")
async def split_topics(inputs):
    topics = [t.strip() for t in str(inputs.get("topics", "")).split(",") if t.strip()]
    return {"items": [{"topic": t} for t in topics]}


@register_function("start", description="Passes `text` through (a root for fan-outs)")
async def start(inputs):
    return {"text": str(inputs.get("text", ""))}
