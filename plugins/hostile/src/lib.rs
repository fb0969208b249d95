//! `hostile`: a TEST-ONLY plugin that misbehaves on purpose, so the host's
//! sandbox and limits can be tested. It is built to `plugins/dist/test/`,
//! never next to the real plugins.
//!
//! It implements the generated `Guest` trait by hand (not `export!`) so it
//! can return text that is not JSON. Functions (input → output):
//!
//! - `loop_forever` → never returns (busy loop).
//! - `memory_bomb` → never returns: allocates and touches 1 MiB chunks.
//! - `recurse` → never returns: unbounded recursion (stack overflow).
//! - `read_file` `{"path"}` → the file's text, as a JSON string.
//! - `write_file` `{"path", "text"}` → `{"bytes": <written>}`.
//! - `list_dir` `{"path"}` → the entry names, sorted, as a JSON list.
//! - `huge_output` `{"bytes"}` (default 100 MiB) → a JSON string whose
//!   encoding is exactly `bytes` long (at least 2).
//! - `panic` → panics (a trap, as plugins are built with `panic = "abort"`).
//! - `invalid_json` → `Ok("{not json")`.
//! - `count_calls` → how many times this instance was called, as a JSON
//!   number (1 when the host gives each call a fresh instance).
//! - `echo` → its input, unchanged (the only pure function).
//! - `fail` → the error "deliberate failure".
//! - `trap_every_tenth` `{"index"}` → traps when `index % 10 == 9`, else
//!   `{"index": index}`.
//! - `stdout_flood` → writes 10 MiB to stdout and 10 MiB to stderr, then
//!   `{"ok": true}`.
//! - `log_flood` → 100,000 `log::info` lines, then `{"ok": true}`.
//! - `env` → the environment variables it sees, as a JSON object.
//! - `plant_secret` `{"secret"}` → fills 4 MiB of its memory with copies of
//!   `secret` and keeps them, then `{"planted": <bytes>}`.
//! - `scan_memory` `{"reversed", "plant"}` → whether the secret (given
//!   reversed, so the input never holds it) is anywhere in this instance's
//!   linear memory: `{"found", "scanned"}`. With `"plant": true` it plants
//!   first (the scanner's own check).

use composer_plugin_sdk::bindings::Guest;
use composer_plugin_sdk::{info, log, FunctionInfo};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const MIB: u64 = 1024 * 1024;

const FUNCTIONS: &[(&str, &str)] = &[
    ("loop_forever", "Busy-loops forever"),
    ("memory_bomb", "Allocates and touches 1 MiB chunks forever"),
    (
        "recurse",
        "Recurses without bound until the stack overflows",
    ),
    ("read_file", "Returns the text of the file at `path`"),
    ("write_file", "Writes `text` to the file at `path`"),
    ("list_dir", "Lists the entry names of the folder at `path`"),
    (
        "huge_output",
        "Returns a JSON string of `bytes` bytes (default 100 MiB)",
    ),
    ("panic", "Panics"),
    ("invalid_json", "Returns text that is not JSON"),
    (
        "count_calls",
        "Returns how many times this instance has been called",
    ),
    ("echo", "Returns its input unchanged"),
    ("fail", "Returns the error \"deliberate failure\""),
    (
        "trap_every_tenth",
        "Traps when `index` % 10 == 9, else returns {\"index\": index}",
    ),
    ("stdout_flood", "Writes 10 MiB to stdout and to stderr"),
    ("log_flood", "Logs 100,000 info lines"),
    ("env", "Returns the environment variables it sees"),
    (
        "plant_secret",
        "Fills 4 MiB of memory with copies of `secret`",
    ),
    (
        "scan_memory",
        "Whether the reversed `reversed` is anywhere in linear memory",
    ),
];

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Vec<FunctionInfo> {
        FUNCTIONS
            .iter()
            .map(|(name, description)| info(name, description, *name == "echo"))
            .collect()
    }

    fn call(function: String, input: String) -> Result<String, String> {
        dispatch(&function, &input)
    }
}

composer_plugin_sdk::bindings::__export_plugin_world!(Hostile with_types_in composer_plugin_sdk::bindings);

fn string_field(input: &Value, key: &str) -> Result<String, String> {
    input
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("input needs a string `{key}`"))
}

fn encode(value: &Value) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// Never returns: the counter keeps the loop from being optimized away.
fn loop_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn memory_bomb() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB as usize];
        for (i, byte) in chunk.iter_mut().enumerate().step_by(4096) {
            *byte = i as u8 | 1; // touch every page
        }
        chunks.push(black_box(chunk));
    }
}

/// Recursion the optimizer cannot turn into a loop: every frame keeps a
/// buffer alive across the call, and the exit test is opaque.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(black_box(frame)[depth as usize % 32])
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("trap");
}

fn flood(out: &mut dyn Write) {
    let line = [b'x'; 1023]
        .iter()
        .copied()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    for _ in 0..10 * 1024 {
        if out.write_all(&line).is_err() {
            break;
        }
    }
    let _ = out.flush();
}

/// Runs one function (what `Guest::call` does).
pub fn dispatch(function: &str, input: &str) -> Result<String, String> {
    if function == "echo" {
        return Ok(input.to_string());
    }
    if function == "invalid_json" {
        return Ok("{not json".to_string());
    }
    let input: Value = serde_json::from_str(input).map_err(|e| format!("invalid input: {e}"))?;
    match function {
        "loop_forever" => loop_forever(),
        "memory_bomb" => memory_bomb(),
        "recurse" => encode(&json!(recurse(0))),
        "read_file" => {
            let path = string_field(&input, "path")?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
            encode(&Value::String(text))
        }
        "write_file" => {
            let path = string_field(&input, "path")?;
            let text = string_field(&input, "text")?;
            std::fs::write(&path, &text).map_err(|e| format!("cannot write {path}: {e}"))?;
            encode(&json!({ "bytes": text.len() }))
        }
        "list_dir" => {
            let path = string_field(&input, "path")?;
            let entries =
                std::fs::read_dir(&path).map_err(|e| format!("cannot list {path}: {e}"))?;
            let mut names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot list {path}: {e}"))?;
            names.sort();
            encode(&json!(names))
        }
        "huge_output" => {
            let bytes = input
                .get("bytes")
                .and_then(Value::as_u64)
                .unwrap_or(100 * MIB)
                .max(2);
            let len = usize::try_from(bytes - 2).map_err(|_| "`bytes` is too large".to_string())?;
            let mut out = String::new();
            out.try_reserve_exact(len + 2).map_err(|e| e.to_string())?;
            out.push('"');
            out.extend(std::iter::repeat_n('x', len));
            out.push('"');
            Ok(out)
        }
        "panic" => panic!("deliberate panic"),
        "count_calls" => encode(&json!(CALLS.fetch_add(1, Ordering::SeqCst) + 1)),
        "fail" => Err("deliberate failure".to_string()),
        "trap_every_tenth" => {
            let index = input
                .get("index")
                .and_then(Value::as_u64)
                .ok_or("input needs a number `index`")?;
            if index % 10 == 9 {
                trap();
            }
            encode(&json!({ "index": index }))
        }
        "stdout_flood" => {
            flood(&mut std::io::stdout().lock());
            flood(&mut std::io::stderr().lock());
            encode(&json!({ "ok": true }))
        }
        "log_flood" => {
            for i in 0..100_000 {
                log::info(&format!("log line {i}"));
            }
            encode(&json!({ "ok": true }))
        }
        "env" => encode(&Value::Object(
            std::env::vars()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
        )),
        "plant_secret" => {
            let secret = string_field(&input, "secret")?;
            encode(&json!({ "planted": plant(secret.as_bytes()) }))
        }
        "scan_memory" => {
            let reversed = string_field(&input, "reversed")?;
            // The one copy of the secret this call makes, skipped by the scan.
            let needle: Vec<u8> = reversed.bytes().rev().collect();
            if input.get("plant").and_then(Value::as_bool) == Some(true) {
                plant(&needle);
            }
            let (found, scanned) = scan(&needle);
            encode(&json!({ "found": found, "scanned": scanned }))
        }
        other => Err(format!("this plugin has no function `{other}`")),
    }
}

/// Copies of `secret` over 4 MiB of heap, kept for the instance's life.
fn plant(secret: &[u8]) -> usize {
    if secret.is_empty() {
        return 0;
    }
    let copies = (4 * MIB as usize) / secret.len();
    let planted: Vec<u8> = secret.repeat(copies);
    black_box(planted.leak()).len()
}

/// Searches the whole linear memory (past the first KiB) for `needle`,
/// except the needle itself. Returns (found, bytes scanned).
#[cfg(target_arch = "wasm32")]
fn scan(needle: &[u8]) -> (bool, usize) {
    let size = core::arch::wasm32::memory_size::<0>() * 65_536;
    let own = needle.as_ptr() as usize;
    let start = 1024;
    if needle.is_empty() || size <= start {
        return (false, 0);
    }
    // Every address below the memory's size is readable in WebAssembly:
    // this reads the instance's memory as the host handed it over.
    #[allow(unsafe_code)]
    let memory = unsafe { core::slice::from_raw_parts(start as *const u8, size - start) };
    let found = memory
        .windows(needle.len())
        .enumerate()
        .any(|(i, w)| start + i != own && w == needle);
    (found, size - start)
}

#[cfg(not(target_arch = "wasm32"))]
fn scan(_needle: &[u8]) -> (bool, usize) {
    (false, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_function_and_only_echo_is_pure() {
        let functions = Hostile::describe();
        assert_eq!(functions.len(), 18);
        assert!(functions.iter().all(|f| f.pure == (f.name == "echo")));
    }

    #[test]
    fn harmless_functions() {
        assert_eq!(dispatch("echo", "{\"a\": [1]}").unwrap(), "{\"a\": [1]}");
        assert_eq!(dispatch("invalid_json", "{}").unwrap(), "{not json");
        assert!(serde_json::from_str::<Value>(&dispatch("invalid_json", "{}").unwrap()).is_err());
        assert_eq!(dispatch("fail", "{}").unwrap_err(), "deliberate failure");
        assert_eq!(
            dispatch("trap_every_tenth", r#"{"index": 18}"#).unwrap(),
            r#"{"index":18}"#
        );
        assert!(dispatch("nope", "{}").unwrap_err().contains("nope"));
        let first: u64 = dispatch("count_calls", "{}").unwrap().parse().unwrap();
        let second: u64 = dispatch("count_calls", "{}").unwrap().parse().unwrap();
        assert_eq!(second, first + 1);
    }

    #[test]
    fn huge_output_is_valid_json_of_the_asked_size() {
        let out = dispatch("huge_output", r#"{"bytes": 1000}"#).unwrap();
        assert_eq!(out.len(), 1000);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap().len(), 998);
    }

    #[test]
    fn files_and_folders() {
        let dir = std::env::temp_dir().join(format!("hostile_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.txt");
        let input = json!({"path": file, "text": "hi"}).to_string();
        assert_eq!(dispatch("write_file", &input).unwrap(), r#"{"bytes":2}"#);
        assert_eq!(dispatch("read_file", &input).unwrap(), r#""hi""#);
        let listed = dispatch("list_dir", &json!({ "path": dir }).to_string()).unwrap();
        assert_eq!(listed, r#"["a.txt"]"#);
        assert!(dispatch("read_file", r#"{"path": "/nonexistent/x"}"#)
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn trap_every_tenth_traps_on_nine() {
        let result = std::panic::catch_unwind(|| dispatch("trap_every_tenth", r#"{"index": 29}"#));
        assert!(result.is_err());
    }
}
