//! `@name.path` references to definitions (RECIPES.md section 2).
//!
//! A string that is exactly one reference is replaced by the referenced
//! value, whatever its type; a reference inside a longer string is replaced
//! by the value's text. `@@` is a literal `@`, and an `@` right after a letter
//! or digit (`a@b.com`) is plain text. Definitions may reference each other;
//! cycles and unknown names are errors.

use super::diagnostic::{did_you_mean, Code, Diagnostic};
use super::document::{join_index, join_key};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// One piece of a string: literal text or a reference `name.a.b`.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(std::borrow::Cow<'a, str>),
    Reference(&'a str),
    /// `@reference:name`, a form that does not exist (kept as text).
    Malformed {
        text: &'a str,
        target: &'a str,
    },
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits a string into text and references. Returns None when the string
/// holds no reference and no `@@` (the common case: no allocation).
fn split(text: &str) -> Option<Vec<Piece<'_>>> {
    if !text.contains('@') {
        return None;
    }
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut changed = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < text.len() {
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if c != '@' {
            literal.push(c);
            prev = Some(c);
            i += c.len_utf8();
            continue;
        }
        if bytes.get(i + 1) == Some(&b'@') {
            literal.push('@');
            changed = true;
            prev = Some('@');
            i += 2;
            continue;
        }
        if prev.is_some_and(|p| p.is_alphanumeric()) {
            literal.push('@');
            prev = Some('@');
            i += 1;
            continue;
        }
        let rest = &text[i + 1..];
        if let Some(inner) = rest.strip_prefix("reference:") {
            let len = dotted_name_len(inner);
            if len > 0 {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
                }
                let consumed = 1 + "reference:".len() + len;
                pieces.push(Piece::Malformed {
                    text: &text[i..i + consumed],
                    target: &inner[..len],
                });
                changed = true;
                prev = Some(')');
                i += consumed;
                continue;
            }
        }
        let (reference, consumed) = if let Some(inner) = rest.strip_prefix("reference(") {
            match inner.find(')') {
                Some(end) => (Some(inner[..end].trim()), 1 + "reference(".len() + end + 1),
                None => (None, 1),
            }
        } else {
            let len = dotted_name_len(rest);
            if len > 0 {
                (Some(&rest[..len]), 1 + len)
            } else {
                (None, 1)
            }
        };
        match reference {
            Some(name) if !name.is_empty() => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
                }
                pieces.push(Piece::Reference(name));
                changed = true;
                prev = Some(')');
                i += consumed;
            }
            _ => {
                literal.push('@');
                prev = Some('@');
                i += 1;
            }
        }
    }
    if !changed {
        return None;
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal.into()));
    }
    Some(pieces)
}

/// Whether `text` holds a reference (of any form, `@reference:x` included).
pub fn has_reference(text: &str) -> bool {
    split(text).is_some_and(|pieces| {
        pieces
            .iter()
            .any(|p| matches!(p, Piece::Reference(_) | Piece::Malformed { .. }))
    })
}

/// Length of `name(.segment)*` at the start of `s`, or 0. A trailing `.` (end
/// of a sentence) is not part of the reference.
fn dotted_name_len(s: &str) -> usize {
    let mut chars = s.char_indices().peekable();
    match chars.peek() {
        Some((_, c)) if is_name_start(*c) => {}
        _ => return 0,
    }
    let mut end = 0;
    let mut after_dot = false;
    for (i, c) in s.char_indices() {
        if is_name_char(c) {
            end = i + c.len_utf8();
            after_dot = false;
        } else if c == '.' && !after_dot && end == i {
            after_dot = true;
        } else {
            break;
        }
    }
    end
}

/// Resolves references against a set of definitions, memoising each
/// definition once it is resolved.
pub struct Resolver<'d> {
    raw: &'d Map<String, Value>,
    resolved: HashMap<String, Value>,
    in_progress: Vec<String>,
    /// Every reference looked up (`models.writer.model`), with the own
    /// definition being resolved at the time (None: the value itself).
    uses: Vec<(Option<String>, String)>,
    /// Where a whole-string reference was replaced by its value: the path
    /// of the string and the reference (for locating diagnostics).
    substitutions: Vec<(String, String)>,
}

impl<'d> Resolver<'d> {
    pub fn new(definitions: &'d Map<String, Value>) -> Self {
        Self::with_imports(definitions, Map::new())
    }

    /// `own` are this file's definitions (raw); `imported` were resolved in
    /// their own files and are not resolved again (a `@@` in them is already
    /// a plain `@`). Own definitions win over imported ones.
    pub fn with_imports(own: &'d Map<String, Value>, imported: Map<String, Value>) -> Self {
        let resolved = imported
            .into_iter()
            .filter(|(name, _)| !own.contains_key(name))
            .collect();
        Resolver {
            raw: own,
            resolved,
            in_progress: Vec::new(),
            uses: Vec::new(),
            substitutions: Vec::new(),
        }
    }

    /// Every reference the resolved values reach, directly or through this
    /// file's own definitions (`owner` None: from the values given to
    /// `resolve`; Some(d): from the own definition `d`).
    pub fn reached_from(&self, owner: Option<&str>) -> Vec<String> {
        let mut reached: Vec<String> = Vec::new();
        let mut owners: Vec<Option<&str>> = vec![owner];
        let mut seen_owners: Vec<Option<&str>> = Vec::new();
        while let Some(o) = owners.pop() {
            if seen_owners.contains(&o) {
                continue;
            }
            seen_owners.push(o);
            for (by, reference) in &self.uses {
                if by.as_deref() != o {
                    continue;
                }
                if !reached.contains(reference) {
                    reached.push(reference.clone());
                }
                let head = reference.split('.').next().unwrap_or_default();
                if let Some((name, _)) = self.raw.get_key_value(head) {
                    owners.push(Some(name.as_str()));
                }
            }
        }
        reached
    }

    /// Whole-string references replaced by their values: `(path, reference)`.
    pub fn substitutions(&self) -> &[(String, String)] {
        &self.substitutions
    }

    /// The resolved value of the definition `name`.
    pub fn resolve_definition(&mut self, name: &str, out: &mut Vec<Diagnostic>) -> Option<Value> {
        self.definition(name, &format!("definitions.{name}"), out)
    }

    /// Resolves every reference inside `value`; `path` names where it sits
    /// (for diagnostics). Problems are appended to `out` and the offending
    /// string is left as it was.
    pub fn resolve(&mut self, value: &Value, path: &str, out: &mut Vec<Diagnostic>) -> Value {
        match value {
            Value::String(s) => self.resolve_string(s, path, out),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.resolve(v, &join_index(path, i), out))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v, &join_key(path, k), out)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn resolve_string(&mut self, s: &str, path: &str, out: &mut Vec<Diagnostic>) -> Value {
        let Some(pieces) = split(s) else {
            return Value::String(s.to_string());
        };
        if let [Piece::Reference(name)] = pieces.as_slice() {
            if s.trim() == s {
                return match self.lookup(name, path, out) {
                    Some(v) => {
                        self.substitutions
                            .push((path.to_string(), name.to_string()));
                        v
                    }
                    None => Value::String(s.to_string()),
                };
            }
        }
        let mut text = String::with_capacity(s.len());
        for piece in &pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Malformed { text: form, target } => {
                    out.push(
                        Diagnostic::error(
                            Code::UnknownReference,
                            format!("`{form}` is not a reference: there is no `@reference:` form"),
                        )
                        .at(path)
                        .with_hint(Some(format!("write `@{target}` or `@reference({target})`"))),
                    );
                    text.push_str(form);
                }
                Piece::Reference(name) => match self.lookup(name, path, out) {
                    Some(Value::String(v)) => text.push_str(&v),
                    Some(Value::Null) => {}
                    Some(v) => text.push_str(&v.to_string()),
                    None => {
                        text.push('@');
                        text.push_str(name);
                    }
                },
            }
        }
        Value::String(text)
    }

    /// The value of `name.a.b`, resolved.
    fn lookup(&mut self, reference: &str, path: &str, out: &mut Vec<Diagnostic>) -> Option<Value> {
        self.uses
            .push((self.in_progress.last().cloned(), reference.to_string()));
        let mut parts = reference.split('.');
        let head = parts.next().unwrap_or_default();
        let mut value = self.definition(head, path, out)?;
        let mut walked = head.to_string();
        for part in parts {
            let next = match &value {
                Value::Object(map) => map.get(part).cloned(),
                Value::Array(items) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i).cloned()),
                _ => None,
            };
            match next {
                Some(v) => value = v,
                None => {
                    let keys: Vec<&str> = match &value {
                        Value::Object(map) => map.keys().map(String::as_str).collect(),
                        _ => Vec::new(),
                    };
                    out.push(
                        Diagnostic::error(
                            Code::UnknownReference,
                            format!("reference `@{reference}`: `{walked}` has no `{part}`"),
                        )
                        .at(path)
                        .with_hint(did_you_mean(part, keys)),
                    );
                    return None;
                }
            }
            walked.push('.');
            walked.push_str(part);
        }
        Some(value)
    }

    fn definition(&mut self, name: &str, path: &str, out: &mut Vec<Diagnostic>) -> Option<Value> {
        if let Some(v) = self.resolved.get(name) {
            return Some(v.clone());
        }
        let Some(raw) = self.raw.get(name) else {
            let known = self
                .raw
                .keys()
                .chain(self.resolved.keys())
                .map(String::as_str);
            let hint = did_you_mean(name, known)
                .or_else(|| self.nested_hint(name))
                .or_else(|| {
                    Some(
                        "write `@@` for a literal `@`; known definitions: ".to_string()
                            + &self.known_list(),
                    )
                });
            out.push(
                Diagnostic::error(
                    Code::UnknownReference,
                    format!("reference to unknown definition `@{name}`"),
                )
                .at(path)
                .with_hint(hint),
            );
            return None;
        };
        if let Some(start) = self.in_progress.iter().position(|n| n == name) {
            let mut chain: Vec<String> = self.in_progress[start..]
                .iter()
                .map(|n| format!("@{n}"))
                .collect();
            chain.push(format!("@{name}"));
            out.push(
                Diagnostic::error(
                    Code::ReferenceCycle,
                    format!(
                        "definitions reference each other in a cycle: {}",
                        chain.join(" -> ")
                    ),
                )
                .at(path),
            );
            return None;
        }
        self.in_progress.push(name.to_string());
        let value = self.resolve(raw, &format!("definitions.{name}"), out);
        self.in_progress.pop();
        self.resolved.insert(name.to_string(), value.clone());
        Some(value)
    }

    /// "did you mean `@models.writer`?" when `name` (or a name close to
    /// it) is a key inside a definition (a namespace or a mapping).
    fn nested_hint(&self, name: &str) -> Option<String> {
        const MAX_DEPTH: usize = 3;
        const MAX_PATHS: usize = 10_000;
        fn walk(value: &Value, prefix: &str, depth: usize, paths: &mut Vec<(String, String)>) {
            let Value::Object(map) = value else {
                return;
            };
            for (key, v) in map {
                if paths.len() >= MAX_PATHS {
                    return;
                }
                let path = format!("{prefix}.{key}");
                paths.push((key.clone(), path.clone()));
                if depth < MAX_DEPTH {
                    walk(v, &path, depth + 1, paths);
                }
            }
        }
        let mut paths: Vec<(String, String)> = Vec::new();
        let mut names: Vec<(&String, &Value)> = self.resolved.iter().collect();
        names.extend(
            self.raw
                .iter()
                .filter(|(k, _)| !self.resolved.contains_key(*k)),
        );
        names.sort_by(|a, b| a.0.cmp(b.0));
        for (def, value) in names {
            walk(value, def, 1, &mut paths);
        }
        let exact: Vec<&str> = paths
            .iter()
            .filter(|(leaf, _)| leaf == name)
            .map(|(_, p)| p.as_str())
            .collect();
        let found: Vec<&str> = if exact.is_empty() {
            let leaves = paths.iter().map(|(leaf, _)| leaf.as_str());
            let close = super::diagnostic::closest(name, leaves);
            paths
                .iter()
                .filter(|(leaf, _)| close.contains(&leaf.as_str()))
                .map(|(_, p)| p.as_str())
                .collect()
        } else {
            exact
        };
        let first = found.first()?;
        let quoted: Vec<String> = found.iter().take(3).map(|p| format!("`@{p}`")).collect();
        let holder = first.split('.').next().unwrap_or_default();
        Some(format!(
            "did you mean {}? (`{name}` is inside `{holder}`)",
            quoted.join(" or ")
        ))
    }

    fn known_list(&self) -> String {
        let mut names: Vec<&str> = self
            .raw
            .keys()
            .chain(self.resolved.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return "none".to_string();
        }
        names
            .iter()
            .take(10)
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(defs: Value, value: Value) -> (Value, Vec<Diagnostic>) {
        let defs = defs.as_object().cloned().unwrap_or_default();
        let mut out = Vec::new();
        let v = Resolver::new(&defs).resolve(&value, "x", &mut out);
        (v, out)
    }

    #[test]
    fn whole_value_keeps_type() {
        let (v, errs) = resolve(json!({"m": {"provider": "mock"}}), json!("@m"));
        assert!(errs.is_empty());
        assert_eq!(v, json!({"provider": "mock"}));
    }

    #[test]
    fn interpolation_and_paths() {
        let defs = json!({"m": {"model": "gpt", "n": 3}, "who": "world"});
        let (v, _) = resolve(
            defs.clone(),
            json!("hi @who, use @m.model x@m.n @reference(m.n)."),
        );
        assert_eq!(v, json!("hi world, use gpt x@m.n 3."));
        let (v, _) = resolve(defs, json!("mail a@b.com or @@home, cfg @m"));
        assert_eq!(
            v,
            json!("mail a@b.com or @home, cfg {\"model\":\"gpt\",\"n\":3}")
        );
    }

    #[test]
    fn nested_definitions_resolve() {
        let (v, errs) = resolve(json!({"a": "@b", "b": {"k": "@c"}, "c": 5}), json!("@a.k"));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(v, json!(5));
    }

    #[test]
    fn cycles_and_unknown_names_are_errors() {
        let (_, errs) = resolve(json!({"a": "@b", "b": "@a"}), json!("@a"));
        assert_eq!(errs[0].code, Code::ReferenceCycle);
        assert!(
            errs[0].message.contains("@a -> @b -> @a"),
            "{}",
            errs[0].message
        );
        let (_, errs) = resolve(json!({"writer": 1}), json!("@writr"));
        assert_eq!(errs[0].code, Code::UnknownReference);
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `writer`?"));
    }
}
