"""`hostile_py`: a TEST-ONLY Python plugin that misbehaves on purpose, so the
host's limits and error reporting can be tested on the Python runtime. It
is built to `plugins/dist/test/`, never next to the real plugins.

Functions (input -> output):

- `loop_forever` -> never returns (busy loop).
- `memory_bomb` -> never returns: allocates and fills 1 MiB chunks.
- `raise_error` -> raises ValueError("deliberate failure").
- `plugin_error` -> raises PluginError("a message for the recipe author").
- `invalid_json` -> output the host cannot parse (a lone surrogate).
- `stdout_flood` `{"mib"}` (default 100) -> writes `mib` MiB to stdout,
  then `{"ok": true}`.
- `count_calls` -> how many times this instance was called.
- `echo` -> its input, unchanged (pure).
"""

import os

from composer_plugin import PluginError, function

CALLS = 0


@function
def loop_forever(input: dict) -> dict:
    """Busy-loops forever."""
    n = 0
    while True:
        n += 1


@function
def memory_bomb(input: dict) -> dict:
    """Allocates and fills 1 MiB chunks forever."""
    chunks = []
    while True:
        chunks.append(bytearray(b"x" * (1 << 20)))


@function
def raise_error(input: dict) -> dict:
    """Raises ValueError."""
    raise ValueError("deliberate failure")


@function
def plugin_error(input: dict) -> dict:
    """Raises PluginError."""
    raise PluginError("a message for the recipe author")


@function
def invalid_json(input: dict) -> dict:
    """Returns a lone surrogate, which is not valid JSON text for the host."""
    return {"text": "\ud800"}


@function
def stdout_flood(input: dict) -> dict:
    """Writes `mib` MiB (default 100) to stdout."""
    # os.write, not print: it says how much each write took, and the rest
    # is written again (sys.stdout in a component keeps only what one
    # write takes).
    chunk = b"y" * (1 << 20)
    for _ in range(int(input.get("mib", 100))):
        data = memoryview(chunk)
        while data:
            data = data[os.write(1, data) :]
    return {"ok": True}


@function
def count_calls(input: dict) -> int:
    """How many times this instance has been called."""
    global CALLS
    CALLS += 1
    return CALLS


@function(pure=True)
def echo(input: dict) -> dict:
    """Returns its input unchanged."""
    return input
