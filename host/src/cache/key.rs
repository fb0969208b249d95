//! Cache keys: SHA-256 of the canonical JSON (keys sorted) of everything
//! that decides a result: node kind, provider, model, every parameter, the
//! rendered prompt or the resolved inputs, and for functions the plugin's
//! content hash and function name.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key of a set of parts.
pub fn key(parts: &Value) -> String {
    let mut text = String::new();
    canonical(parts, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted, so equal values give equal text whatever
/// the order they were written in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `normalize: true`: strings trimmed, lower-cased and with every run of
/// whitespace made one space, so "  Paris" and "paris" share a result
/// wherever the value sits in a rendered prompt.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        assert_eq!(
            key(&json!({"a": 1, "b": [1, {"x": 2, "y": 3}]})),
            key(&json!({"b": [1, {"y": 3, "x": 2}], "a": 1}))
        );
        assert_ne!(key(&json!({"a": 1})), key(&json!({"a": 2})));
        assert_ne!(key(&json!({"a": "1"})), key(&json!({"a": 1})));
    }

    #[test]
    fn normalizing_trims_and_lowercases() {
        assert_eq!(normalize(&json!({"q": "  Paris "})), json!({"q": "paris"}));
        assert_eq!(
            normalize(&json!("Facts about   Paris.")),
            normalize(&json!("facts about paris."))
        );
    }
}
