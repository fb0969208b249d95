//! The values a node sees (RECIPES.md section 5) and the run's final outputs
//! (section 8).
//!
//! The state is one mapping, user inputs plus every output produced so far,
//! kept as minijinja values so that templates read it without conversion.
//! It is shared copy-on-write: a running node holds a cheap snapshot while
//! the scheduler writes new outputs.

use crate::recipe::model::FinalOutput;
use crate::template::{self, TemplateError};
use minijinja::value::{merge_maps, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub type Values = HashMap<String, Value>;

/// A snapshot of the state, as a template context.
pub fn context(state: &Arc<Values>) -> Value {
    Value::from_dyn_object(state.clone())
}

/// `overlay` laid over `base`: keys of the overlay win.
pub fn layered(overlay: Values, base: Value) -> Value {
    if overlay.is_empty() {
        return base;
    }
    // The last source wins in minijinja's merge.
    merge_maps([base, Value::from_object(overlay)])
}

pub fn to_json(value: &Value) -> serde_json::Value {
    if value.is_undefined() {
        return serde_json::Value::Null;
    }
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub fn from_json(value: &serde_json::Value) -> Value {
    Value::from_serialize(value)
}

/// Looks up a state key or dotted path (`combined.file_count`,
/// `result.phrases.0`). Only name-like strings are looked up.
pub fn lookup(ctx: &Value, path: &str) -> Option<Value> {
    if path.is_empty() || path.contains(char::is_whitespace) || path.starts_with('.') {
        return None;
    }
    let mut current = ctx.clone();
    for part in path.split('.') {
        let next = match current.get_attr(part) {
            Ok(v) if !v.is_undefined() => v,
            _ => match part.parse::<usize>() {
                Ok(i) => current.get_item_by_index(i).ok()?,
                Err(_) => return None,
            },
        };
        if next.is_undefined() {
            return None;
        }
        current = next;
    }
    Some(current)
}

/// Resolves one `input` entry (or a final output value) by the rules of
/// section 5:
/// - a string with `{{` is a template (one expression keeps its type);
/// - a string naming a visible key or dotted path is that value;
/// - a string naming a producer that produced nothing (skipped) is null;
/// - anything else is a literal (strings inside lists and mappings follow
///   the template rule only).
pub fn resolve_entry(
    value: &serde_json::Value,
    ctx: &Value,
    producers: &HashSet<String>,
) -> Result<Value, TemplateError> {
    match value {
        serde_json::Value::String(s) => {
            if template::is_template(s) {
                return template::resolve_template(s, ctx);
            }
            if let Some(v) = lookup(ctx, s) {
                return Ok(v);
            }
            let head = s.split('.').next().unwrap_or_default();
            if producers.contains(head) {
                return Ok(Value::from(()));
            }
            Ok(Value::from(s.as_str()))
        }
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            resolve_nested(value, ctx).map(|v| from_json(&v))
        }
        other => Ok(from_json(other)),
    }
}

/// Inside lists and mappings only templates are resolved.
fn resolve_nested(
    value: &serde_json::Value,
    ctx: &Value,
) -> Result<serde_json::Value, TemplateError> {
    Ok(match value {
        serde_json::Value::String(s) if template::is_template(s) => {
            to_json(&template::resolve_template(s, ctx)?)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|v| resolve_nested(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_nested(v, ctx)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// The run's result: the `final_outputs` entries, or every node output in
/// recipe order (null for producers that were skipped).
pub fn final_outputs(
    spec: Option<&[FinalOutput]>,
    state: &Arc<Values>,
    node_outputs: &[String],
    producers: &HashSet<String>,
) -> Result<serde_json::Map<String, serde_json::Value>, (String, String)> {
    let ctx = context(state);
    let mut out = serde_json::Map::new();
    let Some(spec) = spec else {
        for key in node_outputs {
            let value = state
                .get(key)
                .map(to_json)
                .unwrap_or(serde_json::Value::Null);
            out.insert(key.clone(), value);
            for suffix in ["_error", "_errors"] {
                let extra = format!("{key}{suffix}");
                if let Some(v) = state.get(&extra) {
                    out.insert(extra, to_json(v));
                }
            }
        }
        return Ok(out);
    };
    for entry in spec {
        match entry {
            FinalOutput::Key(key) => {
                let value = if template::is_template(key) {
                    template::resolve_template(key, &ctx)
                        .map_err(|e| (key.clone(), e.to_string()))?
                } else {
                    lookup(&ctx, key).unwrap_or(Value::from(()))
                };
                out.insert(key.clone(), to_json(&value));
            }
            FinalOutput::Entry {
                id,
                value,
                condition,
            } => {
                if let Some(cond) = condition {
                    let keep =
                        template::is_true(cond, &ctx).map_err(|e| (id.clone(), e.to_string()))?;
                    if !keep {
                        continue;
                    }
                }
                let v = resolve_entry(value, &ctx, producers)
                    .map_err(|e| (id.clone(), e.to_string()))?;
                out.insert(id.clone(), to_json(&v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(v: serde_json::Value) -> Arc<Values> {
        let mut m = Values::new();
        if let serde_json::Value::Object(o) = v {
            for (k, v) in o {
                m.insert(k, from_json(&v));
            }
        }
        Arc::new(m)
    }

    #[test]
    fn input_rules() {
        let s = state(json!({"topic": "AI", "result": {"phrases": [1, 2]}, "n": 3}));
        let ctx = context(&s);
        let producers: HashSet<String> = ["skipped_node".to_string()].into();
        let r = |v: serde_json::Value| {
            to_json(&resolve_entry(&v, &ctx, &producers).unwrap_or_default())
        };
        assert_eq!(r(json!("topic")), json!("AI"));
        assert_eq!(r(json!("result.phrases")), json!([1, 2]));
        assert_eq!(r(json!("{{ n + 1 }}")), json!(4));
        assert_eq!(r(json!("n={{ n }}")), json!("n=3"));
        assert_eq!(r(json!("skipped_node")), json!(null));
        assert_eq!(r(json!("just text")), json!("just text"));
        assert_eq!(r(json!(["topic", "{{ topic }}"])), json!(["topic", "AI"]));
        assert_eq!(r(json!(5)), json!(5));
    }

    #[test]
    fn layering_overrides_state() {
        let s = state(json!({"a": 1, "b": 2}));
        let mut overlay = Values::new();
        overlay.insert("a".into(), Value::from(10));
        let ctx = layered(overlay, context(&s));
        assert_eq!(lookup(&ctx, "a").map(|v| to_json(&v)), Some(json!(10)));
        assert_eq!(lookup(&ctx, "b").map(|v| to_json(&v)), Some(json!(2)));
    }
}
