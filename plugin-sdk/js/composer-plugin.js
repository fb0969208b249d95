// Write composer plugins as plain JavaScript functions.
//
// A plugin is an ES module that registers functions. Each takes the node's
// inputs (one object) and returns anything JSON can encode (usually an
// object), or a Promise of it:
//
//   import { register, log } from "./composer-plugin.js";
//
//   register("word_count", {
//     description: "Counts the words of `text`",
//     pure: true,
//     inputSchema: { type: "object", required: ["text"] },
//   }, ({ text }) => {
//     log.info("counting words");
//     return { words: text.split(/\s+/).filter(Boolean).length };
//   });
//
// `composer plugin build DIR` puts this file next to your module as
// `./composer-plugin.js` and turns the folder into a WebAssembly component
// with componentize-js (the contract is plugin-sdk/wit/plugin.wit).
//
// Errors: throw `new PluginError(message)` for a message meant for the
// recipe author. Any other thrown value (or rejected Promise) also becomes
// a clean error result, never a crash of the host.

import {
  log as hostLog,
  progress as hostProgress,
} from "composer:plugin/host@0.1.0";

/** An error meant for the recipe author; its message is the call's error. */
export class PluginError extends Error {
  constructor(message) {
    super(message);
    this.name = "PluginError";
  }
}

/** name -> { name, description, tags, pure, inputSchema, handler } */
const functions = new Map();

/**
 * Registers a plugin function.
 *
 * @param {string} name what recipes call (`function_identifier`)
 * @param {{description?: string, tags?: string[], pure?: boolean,
 *          inputSchema?: object}} options `pure`: same input, same output,
 *   no side effects (the host may cache); `inputSchema`: a JSON Schema of
 *   the input, checked before the call (type, required, properties, items,
 *   enum, minimum, maximum)
 * @param {(input: object) => any | Promise<any>} handler
 */
export function register(name, options, handler) {
  if (typeof options === "function" && handler === undefined) {
    handler = options;
    options = {};
  }
  if (typeof name !== "string" || name === "") {
    throw new TypeError("register: the function needs a name");
  }
  if (typeof handler !== "function") {
    throw new TypeError(`register: \`${name}\` needs a handler function`);
  }
  if (functions.has(name)) {
    throw new Error(`plugin function \`${name}\` is registered twice`);
  }
  const { description = "", tags = [], pure = false, inputSchema } =
    options ?? {};
  functions.set(name, {
    name,
    description: String(description),
    tags: tags.map(String),
    pure: Boolean(pure),
    inputSchema,
    handler,
  });
}

function emit(level, message) {
  hostLog(level, String(message));
}

/** Log lines go into the run's events (`composer run` shows them). */
export const log = {
  trace: (m) => emit("trace", m),
  debug: (m) => emit("debug", m),
  info: (m) => emit("info", m),
  warn: (m) => emit("warn", m),
  error: (m) => emit("error", m),
};

/** Reports progress of a long call (`done` of `total` units). */
export function progress(done, total) {
  hostProgress(BigInt(Math.max(0, Math.floor(done))), BigInt(Math.max(0, Math.floor(total))));
}

function typeName(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function isType(v, t) {
  const actual = typeName(v);
  if (t === "number") return actual === "number" || actual === "integer";
  return actual === t;
}

/** Throws a PluginError when `value` breaks `schema` (a subset of JSON Schema). */
export function checkSchema(value, schema, path = "input") {
  if (schema === null || typeof schema !== "object") return;
  if (schema.type !== undefined) {
    const names = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!names.some((t) => isType(value, t))) {
      throw new PluginError(
        `\`${path}\` must be ${names.join(" or ")}, got ${typeName(value)}`,
      );
    }
  }
  if (Array.isArray(schema.enum) &&
      !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    throw new PluginError(`\`${path}\` must be one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) {
      throw new PluginError(`\`${path}\` must be at least ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      throw new PluginError(`\`${path}\` must be at most ${schema.maximum}`);
    }
  }
  if (typeName(value) === "object") {
    for (const key of schema.required ?? []) {
      if (!(key in value)) throw new PluginError(`\`${path}\` is missing \`${key}\``);
    }
    for (const [key, sub] of Object.entries(schema.properties ?? {})) {
      if (key in value) checkSchema(value[key], sub, `${path}.${key}`);
    }
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === "object") {
    value.forEach((item, i) => checkSchema(item, schema.items, `${path}[${i}]`));
  }
}

function errorText(e) {
  if (e instanceof PluginError) return e.message;
  if (e instanceof Error) {
    const text = e.message ? `${e.name}: ${e.message}` : e.name;
    // The innermost frame of the plugin's own code, if the engine says.
    const frame = (e.stack ?? "")
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l && !l.includes("composer-plugin.js"));
    return frame ? `${text} (at ${frame})` : text;
  }
  if (typeof e === "string") return e;
  try {
    return `thrown: ${JSON.stringify(e)}`;
  } catch {
    return `thrown: ${String(e)}`;
  }
}

// --- The component's exports (composer:plugin/plugin) -----------------------

/** The registered functions. */
export function describe() {
  return [...functions.values()].map((f) => ({
    name: f.name,
    description: f.description,
    tags: f.tags,
    inputSchema: f.inputSchema === undefined ? undefined : JSON.stringify(f.inputSchema),
    pure: f.pure,
  }));
}

/**
 * Runs `name` on `input` (JSON text) and returns JSON text; every failure
 * is thrown as a string, which the component returns as the error result.
 */
export async function call(name, input) {
  const f = functions.get(name);
  if (f === undefined) {
    const known = [...functions.keys()].sort().join(", ") || "none";
    throw `unknown function \`${name}\` (this plugin offers: ${known})`;
  }
  let value;
  try {
    value = JSON.parse(input);
  } catch (e) {
    throw `input is not JSON: ${e.message}`;
  }
  let output;
  try {
    if (f.inputSchema !== undefined) checkSchema(value, f.inputSchema);
    output = await f.handler(value);
  } catch (e) {
    throw errorText(e);
  }
  let text;
  try {
    text = JSON.stringify(output);
  } catch (e) {
    throw `\`${name}\` returned a value JSON cannot encode: ${e.message}`;
  }
  if (text === undefined) {
    throw `\`${name}\` returned ${typeof output}, which JSON cannot encode`;
  }
  return text;
}
