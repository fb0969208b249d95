// `hostile_js`: a TEST-ONLY JavaScript plugin that misbehaves on purpose, so
// the host's limits and error reporting can be tested on the JavaScript
// runtime. It is built to `plugins/dist/test/`, never next to the real
// plugins.
//
// Functions (input -> output):
//
// - `loop_forever` -> never returns (busy loop).
// - `memory_bomb` -> never returns: allocates and fills 1 MiB chunks.
// - `throw_error` -> throws TypeError("deliberate failure").
// - `reject` -> an async function whose Promise rejects.
// - `plugin_error` -> throws PluginError("a message for the recipe author").
// - `invalid_json` -> output the host cannot parse (a lone surrogate).
// - `stdout_flood` `{"mib"}` (default 100) -> writes `mib` MiB to stdout,
//   then `{"ok": true}`.
// - `count_calls` -> how many times this instance was called.
// - `echo` -> its input, unchanged (pure).

import { register, PluginError } from "./composer-plugin.js";

let calls = 0;

register("loop_forever", { description: "Busy-loops forever" }, () => {
  let n = 0;
  for (;;) n++;
});

register("memory_bomb", { description: "Allocates and fills 1 MiB chunks forever" }, () => {
  const chunks = [];
  for (;;) chunks.push(new Uint8Array(1 << 20).fill(1));
});

register("throw_error", { description: "Throws TypeError" }, () => {
  throw new TypeError("deliberate failure");
});

register("reject", { description: "Returns a rejected Promise" }, async () => {
  await Promise.resolve();
  throw new RangeError("deliberate rejection");
});

register("plugin_error", { description: "Throws PluginError" }, () => {
  throw new PluginError("a message for the recipe author");
});

register("invalid_json", { description: "Returns a lone surrogate" }, () => ({
  text: "\ud800",
}));

register("stdout_flood", { description: "Writes `mib` MiB (default 100) to stdout" }, ({ mib = 100 }) => {
  const chunk = "y".repeat(1 << 20);
  for (let i = 0; i < mib; i++) console.log(chunk);
  return { ok: true };
});

register("count_calls", { description: "How many times this instance has been called" }, () => ++calls);

register("echo", { description: "Returns its input unchanged", pure: true }, (input) => input);
