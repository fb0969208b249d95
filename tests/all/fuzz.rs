//! Property tests: whatever text a recipe holds, `load_str` returns a result
//! (a recipe or diagnostics) and never panics, in either format.
//!
//! Four sources of text: arbitrary strings, arbitrary bytes read as lossy
//! UTF-8, YAML built from a small grammar (recipe keys, lists, mappings,
//! anchors, aliases, merge keys, `@` references, template braces) and
//! recipe-shaped JSON values, which must load the same way as JSON and YAML.

use crate::support;
use composer::recipe::document::Format;
use composer::recipe::{Code, LoadFailure, Loaded};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Relative paths in fuzzed recipes start here, so that some imports and
/// sub-recipes (`first.yaml`, `../flat.yaml`) exist and are followed.
fn base_dir() -> PathBuf {
    support::fixture("loader/imports")
}

fn load(text: &str, format: Format) -> Result<Loaded, LoadFailure> {
    composer::recipe::load_str(text, format, &base_dir())
}

fn load_both(text: &str) {
    let _ = load(text, Format::Yaml);
    let _ = load(text, Format::Json);
}

const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "imports",
    "definitions",
    "recipe",
    "models",
    "nodes",
    "edges",
    "final_outputs",
    "user_inputs",
    "model_config",
    "max_iterations",
    "id",
    "type",
    "label",
    "prompt",
    "model",
    "provider",
    "input",
    "output",
    "output_format",
    "over",
    "task",
    "function_identifier",
    "fucntion_identifier",
    "recipe_path",
    "input_mapping",
    "output_mapping",
    "required_fields",
    "from",
    "to",
    "condition",
    "literal_values",
    "default",
    "required",
    "on_error",
    "execution_mode",
    "max_concurrency",
    "timeout",
    "fallback",
    "path",
    "namespace",
    "value",
    "a",
    "b",
];

const SCALARS: &[&str] = &[
    "language_task",
    "function_task",
    "map",
    "reduce",
    "recipe",
    "hitl",
    "text_to_speech_task",
    "speech_to_text_task",
    "START",
    "END",
    "a",
    "b",
    "c",
    "a to b",
    "START to a",
    "b to END",
    "a -> b",
    "@a",
    "@a.b",
    "@b.0",
    "@reference(a.b)",
    "@reference(",
    "@@",
    "x@y.com",
    "@",
    "@writer",
    "@team.writer",
    "@missing",
    "{{ a }}",
    "{{ a.b | length > 1 }}",
    "{{ {'k': a} }}",
    "{{",
    "}}",
    "{% if a %}x{% endif %}",
    "{% for x in",
    "{#",
    "x.jinja",
    "prompts/none.jinja",
    "first.yaml",
    "team.yaml",
    "../flat.yaml",
    "../loop.yaml",
    "recipe.yaml",
    ".",
    "..",
    "/",
    "string",
    "literal",
    "int",
    "bool",
    "file",
    "json",
    "sections",
    "auto",
    "skip",
    "halt",
    "continue",
    "sequential",
    "parallel",
    "mock",
    "0",
    "-1",
    "1.5",
    "1e400",
    "true",
    "null",
    "",
    " ",
    "a.b.c",
    "é✓",
];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_string)
}

fn scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(SCALARS).prop_map(str::to_string),
        1 => "[a-z@{}%#.&*!|>' \\-]{0,16}",
    ]
}

/// How a scalar is written. `Plain` writes any text bare, which is often
/// not valid YAML (`@a`, `{{ x }}`): syntax errors are wanted too, but not
/// in every document.
#[derive(Debug, Clone, Copy)]
enum Style {
    Plain,
    Quoted,
    /// Bare when that is safe, double-quoted otherwise.
    Auto,
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![1 => Just(Style::Plain), 2 => Just(Style::Quoted), 6 => Just(Style::Auto)]
}

/// A YAML document tree with anchors, aliases and merge keys. Anchors are
/// numbered; aliases may name anchors that do not exist (yet).
#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String, Style),
    Number(i64),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
    Anchor(u8, Box<Yaml>),
    Alias(u8),
    /// `<<: *aN` inside a mapping.
    Merge(u8),
}

fn yaml_tree() -> impl Strategy<Value = Yaml> {
    let leaf = prop_oneof![
        6 => (scalar_text(), style()).prop_map(|(s, st)| Yaml::Scalar(s, st)),
        1 => any::<i64>().prop_map(Yaml::Number),
        2 => (0u8..4).prop_map(Yaml::Alias),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 0..6).prop_map(Yaml::Seq),
            4 => prop::collection::vec(
                prop_oneof![
                    8 => (key(), inner.clone()),
                    1 => (0u8..4).prop_map(|n| ("<<".to_string(), Yaml::Merge(n))),
                ],
                0..6
            )
            .prop_map(Yaml::Map),
            1 => ((0u8..4), inner).prop_map(|(n, v)| Yaml::Anchor(n, Box::new(v))),
        ]
    })
}

fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

fn plain_is_safe(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-./".contains(c))
        && !text.ends_with(' ')
}

/// A node: a mapping with an id and a type, and random other entries.
fn yaml_node() -> impl Strategy<Value = Yaml> {
    (
        prop::sample::select(&["a", "b", "c", "START", "a b"][..]),
        prop::sample::select(&composer::recipe::model::NODE_TYPES[..]),
        prop::collection::vec((key(), yaml_tree()), 0..4),
        prop::option::of(0u8..4),
    )
        .prop_map(|(id, node_type, extra, anchor)| {
            let mut entries = vec![
                ("id".to_string(), Yaml::Scalar(id.to_string(), Style::Auto)),
                (
                    "type".to_string(),
                    Yaml::Scalar(node_type.to_string(), Style::Auto),
                ),
            ];
            entries.extend(extra);
            let node = Yaml::Map(entries);
            match anchor {
                Some(n) => Yaml::Anchor(n, Box::new(node)),
                None => node,
            }
        })
}

/// A recipe-shaped YAML document (flat or wrapped), random elsewhere.
fn yaml_recipe() -> impl Strategy<Value = Yaml> {
    (
        prop::collection::vec(yaml_node(), 0..4),
        prop::collection::vec((key(), yaml_tree()), 0..4),
        prop::collection::vec((key(), yaml_tree()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(nodes, extra, definitions, wrapped)| {
            let mut recipe = vec![
                ("name".to_string(), Yaml::Scalar("fuzz".into(), Style::Auto)),
                ("nodes".to_string(), Yaml::Seq(nodes)),
            ];
            recipe.extend(extra);
            let definitions = ("definitions".to_string(), Yaml::Map(definitions));
            if wrapped {
                Yaml::Map(vec![definitions, ("recipe".to_string(), Yaml::Map(recipe))])
            } else {
                recipe.insert(0, definitions);
                Yaml::Map(recipe)
            }
        })
}

/// Writes a `Yaml` tree as text. Aliases to anchors not yet defined are
/// written as text instead (the YAML reader would refuse the whole
/// document, and most documents would never get past it).
#[derive(Default)]
struct Writer {
    out: String,
    anchors: std::collections::HashSet<u8>,
}

impl Writer {
    /// Flow style: `{k: v, ...}`, `[a, b]`, `&a1 value`, `*a1`.
    fn flow(&mut self, y: &Yaml) {
        match y {
            Yaml::Scalar(s, Style::Plain) => self.out.push_str(s),
            Yaml::Scalar(s, Style::Auto) if plain_is_safe(s) => self.out.push_str(s),
            Yaml::Scalar(s, _) => self.out.push_str(&quoted(s)),
            Yaml::Number(n) => self.out.push_str(&n.to_string()),
            Yaml::Alias(n) | Yaml::Merge(n) if self.anchors.contains(n) => {
                self.out.push_str(&format!("*a{n}"));
            }
            Yaml::Alias(n) => self.out.push_str(&format!("\"@a{n}\"")),
            Yaml::Merge(_) => self.out.push_str("{}"),
            Yaml::Anchor(n, v) => {
                self.out.push_str(&format!("&a{n} "));
                self.flow(v);
                self.anchors.insert(*n);
            }
            Yaml::Seq(items) => {
                self.out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.flow(v);
                }
                self.out.push(']');
            }
            Yaml::Map(entries) => {
                self.out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.out.push_str(k);
                    self.out.push_str(": ");
                    self.flow(v);
                }
                self.out.push('}');
            }
        }
    }

    /// Block style for the outer levels, flow style from `depth` 2 down.
    fn block(&mut self, y: &Yaml, indent: usize, depth: usize) {
        let pad = " ".repeat(indent);
        match y {
            Yaml::Map(entries) if depth < 2 && !entries.is_empty() => {
                for (k, v) in entries {
                    self.out.push_str(&pad);
                    self.out.push_str(k);
                    self.out.push(':');
                    self.nested(v, indent, depth);
                }
            }
            Yaml::Seq(items) if depth < 2 && !items.is_empty() => {
                for v in items {
                    self.out.push_str(&pad);
                    self.out.push('-');
                    self.nested(v, indent, depth);
                }
            }
            other => {
                self.out.push_str(&pad);
                self.flow(other);
                self.out.push('\n');
            }
        }
    }

    fn nested(&mut self, v: &Yaml, indent: usize, depth: usize) {
        let big = match v {
            Yaml::Map(e) => !e.is_empty(),
            Yaml::Seq(s) => !s.is_empty(),
            _ => false,
        };
        if big && depth + 1 < 2 {
            self.out.push('\n');
            self.block(v, indent + 2, depth + 1);
        } else {
            self.out.push(' ');
            self.flow(v);
            self.out.push('\n');
        }
    }
}

/// Block style at the top.
fn render(y: &Yaml) -> String {
    let mut w = Writer::default();
    w.block(y, 0, 0);
    w.out
}

/// All on one line, in flow style.
fn render_flow(y: &Yaml) -> String {
    let mut w = Writer::default();
    w.flow(y);
    w.out
}

/// Any JSON value, with recipe keys and scalars (no `<<`, which only YAML
/// gives a meaning).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        6 => scalar_text().prop_map(Value::String),
        1 => (-3i64..100).prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn node_value() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["a", "b", "c", "START", "a b"][..]),
        prop::sample::select(&composer::recipe::model::NODE_TYPES[..]),
        prop::collection::vec((key(), json_value()), 0..4),
    )
        .prop_map(|(id, node_type, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("id".into(), Value::from(id));
            m.insert("type".into(), Value::from(node_type));
            Value::Object(m)
        })
}

fn edge_value() -> impl Strategy<Value = Value> {
    let name = || prop::sample::select(&["a", "b", "c", "START", "END", "x"][..]);
    prop_oneof![
        (name(), name()).prop_map(|(a, b)| Value::from(format!("{a} to {b}"))),
        (name(), name(), prop::option::of(scalar_text())).prop_map(|(a, b, c)| {
            let mut m = Map::new();
            m.insert("from".into(), Value::from(a));
            m.insert("to".into(), Value::from(b));
            if let Some(c) = c {
                m.insert("condition".into(), Value::from(c));
            }
            Value::Object(m)
        }),
    ]
}

/// A recipe-shaped document: enough structure to reach the validator's
/// inner checks, with random values wherever a field sits.
fn recipe_value() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(node_value(), 0..4),
        prop::option::of(prop::collection::vec(edge_value(), 0..4)),
        prop::collection::vec((key(), json_value()), 0..3),
        prop::collection::vec((key(), json_value()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(nodes, edges, extra, definitions, wrapped)| {
            let mut recipe: Map<String, Value> = extra.into_iter().collect();
            recipe.insert("name".into(), Value::from("fuzz"));
            recipe.insert("nodes".into(), Value::Array(nodes));
            if let Some(edges) = edges {
                recipe.insert("edges".into(), Value::Array(edges));
            }
            let definitions = Value::Object(definitions.into_iter().collect());
            if wrapped {
                let mut top = Map::new();
                top.insert("definitions".into(), definitions);
                top.insert("recipe".into(), Value::Object(recipe));
                Value::Object(top)
            } else {
                recipe.insert("definitions".into(), definitions);
                Value::Object(recipe)
            }
        })
}

/// What a load came to, comparable across formats: the recipe as a value,
/// or the errors' codes and paths.
fn outcome(result: Result<Loaded, LoadFailure>) -> Result<Value, Vec<(Code, Option<String>)>> {
    match result {
        Ok(loaded) => {
            let mut v = serde_json::to_value(&*loaded.recipe).unwrap_or(Value::Null);
            if let Some(m) = v.as_object_mut() {
                m.remove("file");
            }
            Ok(v)
        }
        Err(failure) => Err(failure.errors().map(|d| (d.code, d.path.clone())).collect()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        load_both(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        load_both(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn text_made_of_recipe_tokens_never_panics(
        lines in prop::collection::vec(
            (0usize..5, prop::option::of(key()), prop::option::of(scalar_text()), any::<bool>()),
            0..40,
        )
    ) {
        let mut text = String::new();
        for (indent, k, v, dash) in lines {
            text.push_str(&"  ".repeat(indent));
            if dash {
                text.push_str("- ");
            }
            if let Some(k) = k {
                text.push_str(&k);
                text.push_str(": ");
            }
            if let Some(v) = v {
                text.push_str(&v);
            }
            text.push('\n');
        }
        load_both(&text);
    }

    #[test]
    fn structured_yaml_never_panics(tree in prop_oneof![1 => yaml_tree(), 3 => yaml_recipe()]) {
        let text = render(&tree);
        let _ = load(&text, Format::Yaml);
        load_both(&render_flow(&tree));
    }

    #[test]
    fn recipe_shaped_documents_load_alike_as_json_and_yaml(doc in recipe_value()) {
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let as_json = outcome(load(&text, Format::Json));
        // JSON is YAML: the same text read as YAML must mean the same.
        let as_yaml = outcome(load(&text, Format::Yaml));
        prop_assert_eq!(as_json, as_yaml, "document:\n{}", text);
    }
}
