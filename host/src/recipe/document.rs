//! Reading one YAML or JSON file into a value plus a map of where each part
//! of it stands in the source.
//!
//! YAML is read from the parser's event stream rather than through serde so
//! that (a) every mapping entry and list item keeps its line and column for
//! diagnostics and (b) alias expansion is counted and bounded: a "billion
//! laughs" document fails fast instead of filling memory. Merge keys
//! (`<<: *base`) are applied here. JSON goes through serde_json (exact JSON
//! semantics and errors) and gets its positions from the same event reader,
//! since JSON is valid YAML.

use super::diagnostic::{Code, Diagnostic};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Files larger than this are refused before parsing: a recipe is a program
/// description, not a data set.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// Upper bound on values materialised from one document, aliases included.
pub const MAX_VALUES: usize = 1_000_000;
/// Deepest nesting accepted; deeper documents are refused (they would only
/// serve to exhaust the stack of whatever walks them later).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Line and column (both from 1) of each value, keyed by its path from the
/// document root (`recipe.nodes[3].task`). The root has the empty path.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    by_path: HashMap<String, (usize, usize)>,
}

impl Spans {
    /// The position of exactly `path`, if the document has it.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.by_path.get(path).copied()
    }

    /// The position of `path`, or of its closest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut current = path;
        loop {
            if let Some(pos) = self.by_path.get(current) {
                return Some(*pos);
            }
            if current.is_empty() {
                return None;
            }
            current = parent_path(current);
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
pub fn parent_path(path: &str) -> &str {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    &path[..cut]
}

/// Appends a key to a path: `nodes[0]` + `id` → `nodes[0].id`. Keys that are
/// not plain identifiers are quoted: `x["a b"]`.
pub fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_string())),
    }
}

pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub spans: Spans,
}

/// Parses `text` (already read from `file`) in the given format.
pub fn parse(text: &str, format: Format, file: &Path) -> Result<Document, Diagnostic> {
    if text.len() > MAX_FILE_BYTES {
        return Err(too_large(text.len(), file));
    }
    match format {
        Format::Yaml => parse_yaml(text).map_err(|e| e.in_file(file)),
        Format::Json => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                // serde_json refuses deep nesting itself: same code as YAML.
                let d = if e.to_string().starts_with("recursion limit exceeded") {
                    too_deep()
                } else {
                    Diagnostic::error(Code::Syntax, format!("invalid JSON: {e}"))
                };
                d.in_file(file).at_line(e.line(), e.column())
            })?;
            check_depth(&value, 0).map_err(|e| e.in_file(file))?;
            // Positions are a convenience: a JSON file the YAML reader cannot
            // follow (rare escapes) still loads, just without line numbers.
            let spans = parse_yaml(text).map(|d| d.spans).unwrap_or_default();
            Ok(Document { value, spans })
        }
    }
}

pub fn too_large(len: usize, file: &Path) -> Diagnostic {
    Diagnostic::error(
        Code::TooLarge,
        format!(
            "file is {} bytes; recipes and definition files are limited to {} bytes",
            len, MAX_FILE_BYTES
        ),
    )
    .in_file(file)
}

fn check_depth(value: &Value, depth: usize) -> Result<(), Diagnostic> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_depth(v, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|v| check_depth(v, depth + 1)),
        _ => Ok(()),
    }
}

fn too_deep() -> Diagnostic {
    Diagnostic::error(
        Code::TooDeep,
        format!("document nests deeper than {MAX_DEPTH} levels"),
    )
}

fn parse_yaml(text: &str) -> Result<Document, Diagnostic> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let result = parser.load(&mut builder, false);
    if let Some(err) = builder.error.take() {
        return Err(err);
    }
    if let Err(e) = result {
        let m = e.marker();
        return Err(
            Diagnostic::error(Code::Syntax, format!("invalid YAML: {}", e.info()))
                .at_line(m.line(), m.col() + 1),
        );
    }
    let value = builder.root.take().unwrap_or(Value::Null);
    Ok(Document {
        value,
        spans: builder.spans,
    })
}

/// One container being filled while events stream in.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        path: String,
    },
    Map {
        /// Entries in source order; merge keys are applied when it closes.
        entries: Vec<(String, Value)>,
        pending_key: Option<String>,
        anchor: usize,
        path: String,
        /// The mapping's position is taken from its first key (the
        /// parser's own mark for a block mapping points past it).
        first_key_seen: bool,
    },
}

/// A plain (unquoted) `<<` key: a merge. A quoted `"<<"` is an ordinary key.
const MERGE_KEY: &str = "\u{0}<<";

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, (Value, usize)>,
    spans: Spans,
    values: usize,
    error: Option<Diagnostic>,
}

impl Builder {
    fn fail(&mut self, diagnostic: Diagnostic, mark: Marker) {
        if self.error.is_none() {
            self.error = Some(diagnostic.at_line(mark.line(), mark.col() + 1));
        }
    }

    /// The path the next value will have, or None when the next scalar is a
    /// mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, path, .. }) => Some(join_index(path, items.len())),
            Some(Frame::Map {
                pending_key: Some(key),
                path,
                ..
            }) => Some(join_key(path, key)),
            Some(Frame::Map { .. }) => None,
        }
    }

    fn count(&mut self, n: usize, mark: Marker) -> bool {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            self.fail(
                Diagnostic::error(
                    Code::AliasBomb,
                    format!(
                        "document expands to more than {MAX_VALUES} values (aliases repeated too often?)"
                    ),
                ),
                mark,
            );
            return false;
        }
        true
    }

    /// Hands a finished value to the container being filled.
    fn push(&mut self, value: Value, size: usize, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(key) => entries.push((key, value)),
                None => {
                    let key = match value {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            self.fail(
                                Diagnostic::error(
                                    Code::Syntax,
                                    "mapping keys must be scalars, not lists or mappings",
                                ),
                                mark,
                            );
                            return;
                        }
                    };
                    *pending_key = Some(key);
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let position = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let is_key = match self.next_path() {
                    Some(path) => {
                        self.spans.by_path.insert(path, position);
                        false
                    }
                    None => true,
                };
                if let Some(Frame::Map {
                    first_key_seen,
                    path,
                    ..
                }) = self.stack.last_mut()
                {
                    if is_key && !*first_key_seen {
                        *first_key_seen = true;
                        self.spans.by_path.insert(path.clone(), position);
                    }
                }
                if !self.count(1, mark) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if is_key && plain && text == "<<" {
                    Value::String(MERGE_KEY.to_string())
                } else if plain && !forced_string {
                    scalar(&text)
                } else {
                    Value::String(text)
                };
                self.push(value, 1, anchor, mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(too_deep(), mark);
                    return;
                }
                let Some(path) = self.next_path() else {
                    self.fail(
                        Diagnostic::error(
                            Code::Syntax,
                            "mapping keys must be scalars, not lists or mappings",
                        ),
                        mark,
                    );
                    return;
                };
                self.spans.by_path.insert(path.clone(), position);
                if !self.count(1, mark) {
                    return;
                }
                self.stack.push(if is_seq {
                    Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        path,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        pending_key: None,
                        anchor,
                        path,
                        first_key_seen: false,
                    }
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor, .. }) = self.stack.pop() {
                    let size = 1 + items.iter().map(value_size).sum::<usize>();
                    self.push(Value::Array(items), size, anchor, mark);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    entries, anchor, ..
                }) = self.stack.pop()
                {
                    match merge_entries(entries) {
                        Ok(map) => {
                            let value = Value::Object(map);
                            let size = value_size(&value);
                            self.push(value, size, anchor, mark);
                        }
                        Err(d) => self.fail(d, mark),
                    }
                }
            }
            Event::Alias(id) => {
                let Some((value, size)) = self.anchors.get(&id).cloned() else {
                    self.fail(
                        Diagnostic::error(Code::Syntax, "alias names an unknown anchor"),
                        mark,
                    );
                    return;
                };
                if let Some(path) = self.next_path() {
                    self.spans.by_path.insert(path, position);
                }
                if !self.count(size, mark) {
                    return;
                }
                self.push(value, size, 0, mark);
            }
            _ => {}
        }
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_size).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(value_size).sum::<usize>(),
        _ => 1,
    }
}

/// Applies YAML merge keys: explicit keys win over merged ones, and among
/// merged mappings the earlier one wins (YAML 1.1 merge semantics).
fn merge_entries(entries: Vec<(String, Value)>) -> Result<Map<String, Value>, Diagnostic> {
    if !entries.iter().any(|(k, _)| k == MERGE_KEY) {
        return Ok(entries.into_iter().collect());
    }
    let explicit: std::collections::HashSet<String> = entries
        .iter()
        .filter(|(k, _)| k != MERGE_KEY)
        .map(|(k, _)| k.clone())
        .collect();
    let mut map = Map::new();
    for (key, value) in entries {
        if key != MERGE_KEY {
            map.insert(key, value);
            continue;
        }
        let sources = match value {
            Value::Object(m) => vec![m],
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(m) => Ok(m),
                    _ => Err(merge_error()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(merge_error()),
        };
        for source in sources {
            for (k, v) in source {
                if !explicit.contains(&k) && !map.contains_key(&k) {
                    map.insert(k, v);
                }
            }
        }
    }
    Ok(map)
}

fn merge_error() -> Diagnostic {
    Diagnostic::error(
        Code::Syntax,
        "a merge key `<<` takes a mapping or a list of mappings",
    )
}

/// YAML 1.2 core-schema resolution of a plain scalar.
fn scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Number(i.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Number(i.into());
        }
    }
    let looks_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            if let Some(n) = Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Document {
        match parse(text, Format::Yaml, Path::new("t.yaml")) {
            Ok(d) => d,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let d = yaml("a: 1\nb: 1.5\nc: true\nd: ~\ne: hello\nf: '1'\ng: 1.0\n");
        assert_eq!(
            d.value,
            serde_json::json!({"a": 1, "b": 1.5, "c": true, "d": null, "e": "hello", "f": "1", "g": 1.0})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let d = yaml("base: &b {provider: mock, model: x}\nm:\n  <<: *b\n  model: y\nl: [*b]\n");
        assert_eq!(
            d.value["m"],
            serde_json::json!({"model": "y", "provider": "mock"})
        );
        assert_eq!(d.value["l"][0]["provider"], "mock");
    }

    #[test]
    fn positions_are_recorded_per_path() {
        let d = yaml("recipe:\n  nodes:\n    - id: a\n      type: x\n");
        assert_eq!(d.spans.find("recipe.nodes[0].type"), Some((4, 13)));
        assert_eq!(d.spans.find("recipe.nodes[0].missing"), Some((3, 7)));
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        let err = parse(&text, Format::Yaml, Path::new("bomb.yaml")).err();
        assert_eq!(err.map(|e| e.code), Some(Code::AliasBomb));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse("a: [1, 2\nb: 3\n", Format::Yaml, Path::new("x.yaml")).err();
        let err = err.map(|e| (e.code, e.line.is_some()));
        assert_eq!(err, Some((Code::Syntax, true)));
        let err = parse("{\"a\": 1,,}", Format::Json, Path::new("x.json")).err();
        assert_eq!(err.and_then(|e| e.line), Some(1));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        let err = parse(&text, Format::Yaml, Path::new("deep.yaml")).err();
        assert!(err.is_some());
    }
}
