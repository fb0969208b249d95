//! `composer plugin test`: a plugin's own tests, run through the host.
//!
//! `tests.json` in the plugin folder is a list of cases; each calls one
//! function of the built component (fresh instance, the configured limits
//! and sandbox, exactly like a recipe's call) and checks one of:
//!
//! - `output`: the result equals this value;
//! - `includes`: the result contains this value (objects: these keys,
//!   recursively; arrays: these leading elements; anything else: equal);
//! - `error`: the call fails and its error message contains this text.
//!
//! ```json
//! [{"name": "counts words", "function": "word_count",
//!   "input": {"text": "a b"}, "output": {"words": 2}}]
//! ```

use super::project::PluginCliError;
use crate::plugins::catalog::{describe_file, PluginHost, WasmFunction};
use crate::plugins::{CallContext, Function};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One case of `tests.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: Option<String>,
    pub function: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub includes: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Case {
    fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("#{} {}", index + 1, self.function))
    }
}

/// Reads and checks `tests.json`.
pub fn read_cases(file: &Path) -> Result<Vec<Case>, PluginCliError> {
    let text = std::fs::read_to_string(file).map_err(|e| PluginCliError::io("read", file, e))?;
    let cases: Vec<Case> = serde_json::from_str(&text).map_err(|e| PluginCliError::Tests {
        path: file.to_path_buf(),
        message: format!("not a list of test cases: {e}"),
    })?;
    for (i, case) in cases.iter().enumerate() {
        let expectations = [
            case.output.is_some(),
            case.includes.is_some(),
            case.error.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if expectations != 1 {
            return Err(PluginCliError::Tests {
                path: file.to_path_buf(),
                message: format!(
                    "case `{}` must have exactly one of `output`, `includes` and `error`",
                    case.label(i)
                ),
            });
        }
    }
    Ok(cases)
}

/// Whether `actual` contains `expected` (see the module docs).
pub fn includes(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| includes(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            e.len() <= a.len() && e.iter().zip(a).all(|(ev, av)| includes(av, ev))
        }
        _ => actual == expected,
    }
}

/// What one case did.
#[derive(Debug)]
pub struct CaseResult {
    pub label: String,
    /// None when the case passed, else why it failed.
    pub failure: Option<String>,
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

/// Runs every case against `component`, in order.
pub async fn run_cases(
    host: &Arc<PluginHost>,
    component: &Path,
    cases: &[Case],
    out_dir: &Path,
) -> Result<Vec<CaseResult>, PluginCliError> {
    let (plugin, functions) = describe_file(host, component)
        .await
        .map_err(|e| PluginCliError::Host(e.to_string()))?;
    let ctx = CallContext::bare(out_dir, "test");
    let mut results = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let label = case.label(i);
        let Some(info) = functions.iter().find(|f| f.name == case.function) else {
            let known: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
            results.push(CaseResult {
                label,
                failure: Some(format!(
                    "the plugin has no function `{}` (it has: {})",
                    case.function,
                    known.join(", ")
                )),
            });
            continue;
        };
        let function = WasmFunction {
            plugin: plugin.clone(),
            info: info.clone(),
        };
        let result = function.call(case.input.clone(), &ctx).await;
        let failure = match (result, &case.error) {
            (Ok(v), None) => match (&case.output, &case.includes) {
                (Some(want), _) if &v != want => Some(format!(
                    "expected output {}, got {}",
                    compact(want),
                    compact(&v)
                )),
                (_, Some(want)) if !includes(&v, want) => Some(format!(
                    "expected an output including {}, got {}",
                    compact(want),
                    compact(&v)
                )),
                _ => None,
            },
            (Ok(v), Some(want)) => Some(format!(
                "expected an error containing `{want}`, got output {}",
                compact(&v)
            )),
            (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => None,
            (Err(e), Some(want)) => Some(format!(
                "expected an error containing `{want}`, got the error: {e}"
            )),
            (Err(e), None) => Some(format!("failed: {e}")),
        };
        results.push(CaseResult { label, failure });
    }
    Ok(results)
}

/// A scratch output folder for the calls, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, PluginCliError> {
        let dir = std::env::temp_dir().join(format!("composer-plugin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| PluginCliError::io("create", &dir, e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn includes_matches_keys_and_leading_elements() {
        let actual = json!({"a": 1, "b": {"c": [1, 2, 3], "d": "x"}});
        assert!(includes(&actual, &json!({"b": {"c": [1, 2]}})));
        assert!(includes(&actual, &json!({})));
        assert!(!includes(&actual, &json!({"b": {"c": [2]}})));
        assert!(!includes(&actual, &json!({"z": 1})));
        assert!(!includes(&actual, &json!({"a": "1"})));
    }

    #[test]
    fn a_case_needs_exactly_one_expectation() {
        let dir = std::env::temp_dir().join(format!("composer-cases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join("tests.json");
        std::fs::write(&file, r#"[{"function": "f", "output": 1, "error": "x"}]"#).ok();
        let both = read_cases(&file).map(|c| c.len());
        std::fs::write(&file, r#"[{"function": "f", "includes": {}}]"#).ok();
        let one = read_cases(&file).map(|c| c.len());
        std::fs::write(&file, r#"[{"function": "f", "outptu": 1}]"#).ok();
        let typo = read_cases(&file).map(|c| c.len());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(both
            .err()
            .is_some_and(|e| e.to_string().contains("exactly one")));
        assert_eq!(one.ok(), Some(1));
        assert!(typo.err().is_some_and(|e| e.to_string().contains("outptu")));
    }
}
