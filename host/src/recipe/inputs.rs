//! Checking and coercing user inputs before a run (RECIPES.md section 4).
//! Every problem is reported at once, by input id.
//!
//! Relative `file` paths are resolved against a base folder (the working
//! directory for the command line, a tenant's data folder for a server)
//! before any node sees them, so plugins get a path they can open.

use super::diagnostic::did_you_mean;
use super::model::{InputType, UserInput};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Why a value does not fit its input's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CoerceError(pub String);

/// Coerces one value to an input type: `"42"` → 42 for `int`,
/// `yes/no/true/false/1/0` for `bool`, a `file` path must exist (or a list
/// of paths) when `check_files` is set; relative paths are then resolved
/// against the working directory.
pub fn coerce(
    input_type: InputType,
    literal_values: Option<&[Value]>,
    value: &Value,
    check_files: bool,
) -> Result<Value, CoerceError> {
    let base = if check_files {
        std::env::current_dir().ok()
    } else {
        None
    };
    coerce_in(
        input_type,
        literal_values,
        value,
        check_files,
        base.as_deref(),
    )
}

/// `coerce`, with relative `file` paths resolved against `base` (when given).
pub fn coerce_in(
    input_type: InputType,
    literal_values: Option<&[Value]>,
    value: &Value,
    check_files: bool,
    base: Option<&Path>,
) -> Result<Value, CoerceError> {
    coerce_value(input_type, literal_values, value, check_files, base).map_err(CoerceError)
}

fn coerce_value(
    input_type: InputType,
    literal_values: Option<&[Value]>,
    value: &Value,
    check_files: bool,
    base: Option<&Path>,
) -> Result<Value, String> {
    match input_type {
        InputType::String | InputType::Text => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(format!(
                "expected text, found {}",
                super::validate::kind_of(other)
            )),
        },
        InputType::Int => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(format!("expected a whole number, found {n}")),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("expected a whole number, found `{s}`")),
            other => Err(format!("expected a whole number, found {other}")),
        },
        InputType::Float => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("expected a number, found `{s}`")),
            other => Err(format!("expected a number, found {other}")),
        },
        InputType::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(Value::Bool(true)),
                "false" | "no" | "0" | "off" => Ok(Value::Bool(false)),
                _ => Err(format!("expected yes/no/true/false/1/0, found `{s}`")),
            },
            other => Err(format!("expected yes/no/true/false/1/0, found {other}")),
        },
        InputType::File => {
            let check = |v: &Value| -> Result<Value, String> {
                let Value::String(p) = v else {
                    return Err(format!("expected a file path, found {v}"));
                };
                let path = match base {
                    Some(base) if Path::new(p).is_relative() => base.join(p),
                    _ => PathBuf::from(p),
                };
                if check_files && !path.is_file() {
                    return Err(match base.filter(|_| Path::new(p).is_relative()) {
                        Some(base) => format!(
                            "file `{p}` does not exist (looked for `{}`, relative to `{}`)",
                            path.display(),
                            base.display()
                        ),
                        None => format!("file `{p}` does not exist"),
                    });
                }
                Ok(Value::String(path.display().to_string()))
            };
            match value {
                Value::Array(items) => items
                    .iter()
                    .map(check)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array),
                v => check(v),
            }
        }
        InputType::Literal => {
            let allowed = literal_values.unwrap_or(&[]);
            // Text from the command line (`-i n=3`) matches a numeric or
            // boolean literal written in the recipe.
            let same = |a: &Value| {
                a == value || (!a.is_string() && value.as_str() == Some(a.to_string().as_str()))
            };
            match allowed.iter().find(|a| same(a)) {
                Some(a) => Ok(a.clone()),
                None => Err(format!(
                    "{} is not one of {}",
                    value,
                    allowed
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// One problem with the inputs given to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct InputProblem {
    pub input: String,
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input `{}`: {}", self.input, self.message)
    }
}

/// Checks and coerces the values given for a run against the recipe's
/// inputs: defaults fill gaps, required inputs must be present, undeclared
/// values are refused unless `allow_extra`. Relative `file` paths are
/// resolved against the working directory.
pub fn prepare(
    declared: &[UserInput],
    given: &Map<String, Value>,
    allow_extra: bool,
) -> Result<Map<String, Value>, Vec<InputProblem>> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    prepare_in(declared, given, allow_extra, &cwd)
}

/// `prepare`, with relative `file` paths resolved against `base` (a
/// tenant's data folder, say).
pub fn prepare_in(
    declared: &[UserInput],
    given: &Map<String, Value>,
    allow_extra: bool,
    base: &Path,
) -> Result<Map<String, Value>, Vec<InputProblem>> {
    let mut problems = Vec::new();
    let mut values = Map::new();
    for input in declared {
        let value = match given.get(&input.id) {
            Some(v) => Some(v),
            None => input.default.as_ref(),
        };
        match value {
            Some(v) => match coerce_in(
                input.input_type,
                input.literal_values.as_deref(),
                v,
                true,
                Some(base),
            ) {
                Ok(v) => {
                    values.insert(input.id.clone(), v);
                }
                Err(CoerceError(message)) => problems.push(InputProblem {
                    input: input.id.clone(),
                    message,
                }),
            },
            None if input.required => problems.push(InputProblem {
                input: input.id.clone(),
                message: format!(
                    "required ({}{}) and not given; pass it with `-i {}=...`",
                    input.input_type.as_str(),
                    input
                        .description
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default(),
                    input.id
                ),
            }),
            None => {
                values.insert(input.id.clone(), Value::Null);
            }
        }
    }
    for (key, value) in given {
        if declared.iter().any(|i| &i.id == key) {
            continue;
        }
        if allow_extra {
            values.insert(key.clone(), value.clone());
        } else {
            let hint = did_you_mean(key, declared.iter().map(|i| i.id.as_str()))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            problems.push(InputProblem {
                input: key.clone(),
                message: format!("the recipe declares no such input{hint}"),
            });
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// A JSON Schema (draft 2020-12) object describing the inputs.
pub fn json_schema(title: &str, inputs: &[UserInput]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in inputs {
        let mut prop = match input.input_type {
            InputType::String | InputType::Text => json!({"type": "string"}),
            InputType::Int => json!({"type": "integer"}),
            InputType::Float => json!({"type": "number"}),
            InputType::Bool => json!({"type": "boolean"}),
            InputType::File => json!({
                "anyOf": [
                    {"type": "string", "format": "path"},
                    {"type": "array", "items": {"type": "string", "format": "path"}}
                ]
            }),
            InputType::Literal => json!({"enum": input.literal_values.clone().unwrap_or_default()}),
        };
        if let Value::Object(p) = &mut prop {
            p.insert("title".into(), Value::String(input.label.clone()));
            if let Some(d) = &input.description {
                p.insert("description".into(), Value::String(d.clone()));
            }
            if let Some(d) = &input.default {
                p.insert("default".into(), d.clone());
            }
            if input.input_type == InputType::Text {
                p.insert("x-composer-multiline".into(), Value::Bool(true));
            }
        }
        if input.required && input.default.is_none() {
            required.push(Value::String(input.id.clone()));
        }
        properties.insert(input.id.clone(), prop);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercions() {
        assert_eq!(
            coerce(InputType::Int, None, &json!("42"), false),
            Ok(json!(42))
        );
        assert!(coerce(InputType::Int, None, &json!("4.5"), false).is_err());
        assert_eq!(
            coerce(InputType::Bool, None, &json!("yes"), false),
            Ok(json!(true))
        );
        assert_eq!(
            coerce(InputType::Bool, None, &json!("0"), false),
            Ok(json!(false))
        );
        assert_eq!(
            coerce(InputType::Float, None, &json!("2.5"), false),
            Ok(json!(2.5))
        );
        let lits = [json!("day"), json!("week")];
        assert_eq!(
            coerce(InputType::Literal, Some(&lits), &json!("week"), false),
            Ok(json!("week"))
        );
        assert!(coerce(InputType::Literal, Some(&lits), &json!("year"), false).is_err());
        assert!(coerce(InputType::File, None, &json!("/no/such/file"), true).is_err());
    }

    #[test]
    fn relative_file_inputs_are_resolved_against_the_base() {
        let dir = std::env::temp_dir().join(format!("composer-inputs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("docs"));
        let _ = std::fs::write(dir.join("docs/report.md"), "# report");
        let declared = [UserInput {
            id: "document".into(),
            label: "document".into(),
            input_type: InputType::File,
            description: None,
            default: None,
            required: true,
            literal_values: None,
        }];
        let mut given = Map::new();
        given.insert("document".into(), json!("docs/report.md"));
        let values = prepare_in(&declared, &given, false, &dir).map_err(|p| format!("{p:?}"));
        let expected = dir.join("docs/report.md").display().to_string();
        assert_eq!(values.map(|v| v["document"].clone()), Ok(json!(expected)));
        given.insert("document".into(), json!("docs/missing.md"));
        let problems = prepare_in(&declared, &given, false, &dir)
            .err()
            .unwrap_or_default();
        assert!(
            problems[0].message.contains("relative to"),
            "{}",
            problems[0].message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
