//! Static checks of a recipe (RECIPES.md sections 3 to 8) and its conversion
//! into the typed `model`. Every problem found is reported, not only the
//! first; unknown fields are warnings with a "did you mean".

use super::diagnostic::{did_you_mean, Code, Diagnostic};
use super::document::{join_index, join_key};
use super::load::Loader;
use super::model::*;
use super::policy::InvalidSetting;
use crate::template;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;

const RECIPE_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "user_inputs",
    "model_config",
    "nodes",
    "edges",
    "final_outputs",
    "max_iterations",
];
const INPUT_FIELDS: &[&str] = &[
    "id",
    "label",
    "type",
    "description",
    "default",
    "required",
    "literal_values",
];
const COMMON_NODE_FIELDS: &[&str] = &[
    "id",
    "type",
    "description",
    "input",
    "output",
    "model",
    "on_error",
    "cache",
    "retry",
    "timeout",
];
const EDGE_FIELDS: &[&str] = &["from", "to", "condition", "max_iterations"];
const FINAL_OUTPUT_FIELDS: &[&str] = &["id", "value", "condition"];

fn type_fields(node_type: &str) -> &'static [&'static str] {
    match node_type {
        "language_task" => &["prompt", "output_format", "fallback"],
        "speech_to_text_task" => &["language", "response_format"],
        "function_task" | "reduce" => &["function_identifier"],
        "map" => &["over", "task", "execution_mode", "max_concurrency"],
        "recipe" => &["recipe_path", "input_mapping", "output_mapping"],
        "hitl" => &["required_fields", "default", "prompt"],
        _ => &[],
    }
}

struct Checker<'a> {
    out: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, code: Code, path: &str, message: impl Into<String>) {
        self.out.push(Diagnostic::error(code, message).at(path));
    }

    fn error_hint(&mut self, code: Code, path: &str, message: String, hint: Option<String>) {
        self.out
            .push(Diagnostic::error(code, message).at(path).with_hint(hint));
    }

    fn unknown_fields(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        known: &[&[&str]],
        what: &str,
    ) {
        for key in map.keys() {
            if known.iter().any(|list| list.contains(&key.as_str())) {
                continue;
            }
            let all = known.iter().flat_map(|list| list.iter().copied());
            self.out.push(
                Diagnostic::warning(
                    Code::UnknownField,
                    format!("unknown field `{key}` in {what} (it is ignored)"),
                )
                .at(join_key(path, key))
                .with_hint(did_you_mean(key, all)),
            );
        }
    }

    fn string(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.error(
                        Code::MissingField,
                        &join_key(path, key),
                        format!("missing required field `{key}`"),
                    );
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            // Numbers are accepted where text is expected (`version: 1.0`).
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.error(
                    Code::WrongType,
                    &join_key(path, key),
                    format!("`{key}` must be text, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn template(&mut self, text: &str, path: &str) {
        if let Err(e) = template::check_template(text) {
            self.error(
                Code::InvalidTemplate,
                path,
                format!("template does not parse: {e}"),
            );
        }
    }

    /// Template-rule values (input entries, final output values): strings
    /// with `{{` are checked as templates, lists and mappings recursively.
    fn template_values(&mut self, value: &Value, path: &str) {
        match value {
            Value::String(s) if s.contains("{{") || s.contains("{%") => self.template(s, path),
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.template_values(v, &join_index(path, i));
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    self.template_values(v, &join_key(path, k));
                }
            }
            _ => {}
        }
    }

    fn positive_int(&mut self, value: &Value, path: &str, what: &str) -> Option<u32> {
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    Code::InvalidValue,
                    path,
                    format!("`{what}` must be a positive whole number, found {value}"),
                );
                None
            }
        }
    }
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Validates the (reference-resolved) recipe mapping. Returns the typed
/// recipe when the shape allowed building one; errors are in `out`.
pub fn validate(
    map: &Map<String, Value>,
    file: &Path,
    base_dir: &Path,
    loader: &mut Loader,
    out: &mut Vec<Diagnostic>,
) -> Option<Recipe> {
    let mut c = Checker { out };
    c.unknown_fields(
        map,
        "",
        &[RECIPE_FIELDS, &["imports", "definitions", "models"]],
        "the recipe",
    );

    let name = c.string(map, "name", "", true);
    let version = c.string(map, "version", "", false);
    let description = c.string(map, "description", "", false);
    let max_iterations = map
        .get("max_iterations")
        .and_then(|v| c.positive_int(v, "max_iterations", "max_iterations"));
    let user_inputs = user_inputs(&mut c, map.get("user_inputs"));
    let model_config = match map.get("model_config") {
        None | Some(Value::Null) => None,
        Some(v) => model_spec(&mut c, v, "model_config"),
    };

    let nodes = match map.get("nodes") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| node(&mut c, v, &join_index("nodes", i), base_dir, loader, false))
            .collect::<Vec<_>>(),
        Some(Value::Array(_)) => {
            c.error(
                Code::MissingField,
                "nodes",
                "a recipe needs at least one node",
            );
            Vec::new()
        }
        None | Some(Value::Null) => {
            c.error(
                Code::MissingField,
                "nodes",
                "missing required field `nodes`",
            );
            Vec::new()
        }
        Some(other) => {
            c.error(
                Code::WrongType,
                "nodes",
                format!("`nodes` must be a list, found {}", kind_of(other)),
            );
            Vec::new()
        }
    };
    let node_count = match map.get("nodes") {
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    };

    // Ids: unique, not reserved.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(first) = seen.insert(n.id.as_str(), i) {
            c.error(
                Code::DuplicateId,
                &format!("nodes[{}].id", node_index(map, &n.id, i)),
                format!("node id `{}` is used twice (first by nodes[{first}])", n.id),
            );
        }
    }
    // Names come from the source list, so that a node that failed its own
    // checks does not also make every edge to it an error.
    let raw_nodes: Vec<&Map<String, Value>> = match map.get("nodes") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    let ids: Vec<&str> = raw_nodes
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .collect();
    let id_set: HashSet<&str> = ids.iter().copied().collect();
    let with_model: HashSet<&str> = raw_nodes
        .iter()
        .filter(|m| m.contains_key("model"))
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .collect();
    let edges = match map.get("edges") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| edge(&mut c, v, &join_index("edges", i), &ids, &id_set))
                .collect(),
        ),
        Some(other) => {
            c.error(
                Code::WrongType,
                "edges",
                format!("`edges` must be a list, found {}", kind_of(other)),
            );
            None
        }
    };

    if model_config.is_none() {
        for (i, n) in nodes.iter().enumerate() {
            if n.kind.uses_model() && !with_model.contains(n.id.as_str()) {
                c.out.push(
                    Diagnostic::warning(
                        Code::NoModel,
                        format!("node `{}` names no model and the recipe has no `model_config`; it can only run with `--model`", n.id),
                    )
                    .at(format!("nodes[{}]", node_index(map, &n.id, i))),
                );
            }
        }
    }

    let mut known_keys = state_keys(&user_inputs, &nodes);
    for m in &raw_nodes {
        for key in ["id", "output"] {
            if let Some(name) = m.get(key).and_then(Value::as_str) {
                known_keys.insert(name.to_string());
            }
        }
    }
    let final_outputs = match map.get("final_outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    final_output(&mut c, v, &join_index("final_outputs", i), &known_keys)
                })
                .collect(),
        ),
        Some(other) => {
            c.error(
                Code::WrongType,
                "final_outputs",
                format!("`final_outputs` must be a list, found {}", kind_of(other)),
            );
            None
        }
    };

    if nodes.len() != node_count {
        return None;
    }
    Some(Recipe {
        name: name?,
        version,
        description,
        user_inputs,
        model_config,
        nodes,
        edges,
        final_outputs,
        max_iterations,
        file: Some(file.to_path_buf()),
        base_dir: base_dir.to_path_buf(),
        positions: Positions::default(),
    })
}

/// Where node `id` sits in the source list (ids can be filtered out when a
/// node failed to validate, so positions are recomputed from the source).
fn node_index(map: &Map<String, Value>, id: &str, fallback: usize) -> usize {
    let Some(Value::Array(items)) = map.get("nodes") else {
        return fallback;
    };
    let positions: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("id").and_then(Value::as_str) == Some(id))
        .map(|(i, _)| i)
        .collect();
    // For a duplicate, the last occurrence is the offending one.
    positions.last().copied().unwrap_or(fallback)
}

/// Every key a run's state can hold: inputs, node outputs, error keys and
/// keys written by sub-recipe output mappings.
fn state_keys(inputs: &[UserInput], nodes: &[Node]) -> HashSet<String> {
    let mut keys: HashSet<String> = inputs.iter().map(|i| i.id.clone()).collect();
    for n in nodes {
        keys.insert(n.id.clone());
        keys.insert(n.output.clone());
        keys.insert(format!("{}_error", n.output));
        if let NodeKind::Map(_) = n.kind {
            keys.insert(format!("{}_errors", n.output));
        }
        if let NodeKind::Recipe(sub) = &n.kind {
            if let Some(mapping) = &sub.output_mapping {
                keys.extend(mapping.keys().cloned());
            }
        }
    }
    keys
}

fn user_inputs(c: &mut Checker, value: Option<&Value>) -> Vec<UserInput> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error(
                Code::WrongType,
                "user_inputs",
                format!("`user_inputs` must be a list, found {}", kind_of(other)),
            );
            return Vec::new();
        }
    };
    let mut result: Vec<UserInput> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = join_index("user_inputs", i);
        let Value::Object(m) = item else {
            c.error(
                Code::WrongType,
                &path,
                format!("a user input must be a mapping, found {}", kind_of(item)),
            );
            continue;
        };
        c.unknown_fields(m, &path, &[INPUT_FIELDS], "a user input");
        let Some(id) = c.string(m, "id", &path, true) else {
            continue;
        };
        if result.iter().any(|u| u.id == id) {
            c.error(
                Code::DuplicateId,
                &join_key(&path, "id"),
                format!("user input id `{id}` is used twice"),
            );
            continue;
        }
        let input_type = match c.string(m, "type", &path, false) {
            None => InputType::String,
            Some(t) => match InputType::parse(&t) {
                Some(t) => t,
                None => {
                    c.error_hint(
                        Code::InvalidValue,
                        &join_key(&path, "type"),
                        format!(
                            "unknown input type `{t}` (known: {})",
                            InputType::NAMES.join(", ")
                        ),
                        did_you_mean(&t, InputType::NAMES),
                    );
                    InputType::String
                }
            },
        };
        let required = match m.get("required") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                c.error(
                    Code::WrongType,
                    &join_key(&path, "required"),
                    format!("`required` must be true or false, found {other}"),
                );
                true
            }
        };
        let literal_values = match m.get("literal_values") {
            None | Some(Value::Null) => None,
            Some(Value::Array(v)) => Some(v.clone()),
            Some(other) => {
                c.error(
                    Code::WrongType,
                    &join_key(&path, "literal_values"),
                    format!("`literal_values` must be a list, found {}", kind_of(other)),
                );
                None
            }
        };
        if input_type == InputType::Literal && literal_values.as_ref().is_none_or(Vec::is_empty) {
            c.error(
                Code::MissingField,
                &join_key(&path, "literal_values"),
                format!("literal input `{id}` needs a non-empty `literal_values` list"),
            );
        }
        let default = m.get("default").filter(|v| !v.is_null()).cloned();
        let literal_without_values =
            input_type == InputType::Literal && literal_values.as_ref().is_none_or(Vec::is_empty);
        if let Some(d) = default.as_ref().filter(|_| !literal_without_values) {
            if let Err(problem) =
                super::inputs::coerce(input_type, literal_values.as_deref(), d, false)
            {
                c.error(
                    Code::InvalidValue,
                    &join_key(&path, "default"),
                    format!("default of `{id}` is not valid: {problem}"),
                );
            }
        }
        result.push(UserInput {
            label: c
                .string(m, "label", &path, false)
                .unwrap_or_else(|| id.clone()),
            description: c.string(m, "description", &path, false),
            id,
            input_type,
            default,
            required,
            literal_values,
        });
    }
    result
}

/// A model mapping: `provider` and `model` required, other keys are params.
pub fn model_spec_from(value: &Value) -> Result<ModelSpec, InvalidSetting> {
    let Value::Object(m) = value else {
        return Err(InvalidSetting(format!(
            "a model must be a mapping with `provider` and `model`, found {}",
            kind_of(value)
        )));
    };
    let field = |key: &str| match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(InvalidSetting(format!(
            "model `{key}` must be text, found {}",
            kind_of(other)
        ))),
        None => Err(InvalidSetting(format!("model mapping is missing `{key}`"))),
    };
    let provider = field("provider")?;
    let model = field("model")?;
    let params = m
        .iter()
        .filter(|(k, _)| k.as_str() != "provider" && k.as_str() != "model")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(ModelSpec {
        provider,
        model,
        params,
    })
}

fn model_spec(c: &mut Checker, value: &Value, path: &str) -> Option<ModelSpec> {
    // A reference that did not resolve is left as text; its error is the
    // root cause, so "a model must be a mapping" would only repeat it.
    let unresolved = value
        .as_str()
        .is_some_and(|s| s.starts_with('@') && super::references::has_reference(s))
        && c.out.iter().any(|d| {
            d.is_error() && matches!(d.code, Code::UnknownReference | Code::ReferenceCycle)
        });
    if unresolved {
        return None;
    }
    match model_spec_from(value) {
        Ok(spec) => Some(spec),
        Err(InvalidSetting(message)) => {
            c.error(Code::InvalidValue, path, message);
            None
        }
    }
}

fn node(
    c: &mut Checker,
    value: &Value,
    path: &str,
    base_dir: &Path,
    loader: &mut Loader,
    in_map: bool,
) -> Option<Node> {
    let Value::Object(m) = value else {
        c.error(
            Code::WrongType,
            path,
            format!("a node must be a mapping, found {}", kind_of(value)),
        );
        return None;
    };
    let id = if in_map {
        if m.contains_key("id") {
            c.error(
                Code::InvalidValue,
                &join_key(path, "id"),
                "a map's `task` has no `id` (it runs as part of the map node)",
            );
        }
        String::from("task")
    } else {
        let id = c.string(m, "id", path, true);
        if let Some(id) = &id {
            if id == START || id == END {
                c.error(
                    Code::ReservedName,
                    &join_key(path, "id"),
                    format!("`{id}` is reserved for edges; choose another node id"),
                );
            } else if id.is_empty() || id.contains(char::is_whitespace) {
                c.error(
                    Code::InvalidValue,
                    &join_key(path, "id"),
                    format!("node id `{id}` must be non-empty and without spaces"),
                );
            }
        }
        id.unwrap_or_default()
    };
    let node_type = c.string(m, "type", path, true);
    let allowed: &[&str] = if in_map { &MAP_TASK_TYPES } else { &NODE_TYPES };
    let node_type = match node_type {
        Some(t) if allowed.contains(&t.as_str()) => t,
        Some(t) if in_map && NODE_TYPES.contains(&t.as_str()) => {
            c.error(
                Code::UnknownNodeType,
                &join_key(path, "type"),
                format!(
                    "a map cannot run `{t}` per item (allowed: {})",
                    MAP_TASK_TYPES.join(", ")
                ),
            );
            return None;
        }
        Some(t) => {
            c.error_hint(
                Code::UnknownNodeType,
                &join_key(path, "type"),
                format!("unknown node type `{t}` (known: {})", allowed.join(", ")),
                did_you_mean(&t, allowed.iter().copied()),
            );
            return None;
        }
        None => return None,
    };
    let mut known: Vec<&[&str]> = vec![COMMON_NODE_FIELDS, type_fields(&node_type)];
    if node_type == "map" {
        known.push(&["on_error"]);
    }
    if in_map {
        known.push(&["id"]);
    }
    c.unknown_fields(m, path, &known, &format!("a `{node_type}` node"));

    let input = match m.get("input") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entries)) => {
            c.template_values(&Value::Object(entries.clone()), &join_key(path, "input"));
            Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<IndexMap<_, _>>(),
            )
        }
        Some(other) => {
            c.error(
                Code::WrongType,
                &join_key(path, "input"),
                format!("`input` must be a mapping, found {}", kind_of(other)),
            );
            None
        }
    };
    let output = c
        .string(m, "output", path, false)
        .unwrap_or_else(|| id.clone());
    let model = match m.get("model") {
        None | Some(Value::Null) => None,
        Some(v) => model_spec(c, v, &join_key(path, "model")),
    };
    let settings = settings(c, m, path, &node_type);
    let kind = match node_type.as_str() {
        "language_task" => {
            let prompt = c.string(m, "prompt", path, true);
            let prompt =
                prompt.and_then(|p| load_prompt(c, p, &join_key(path, "prompt"), base_dir));
            let output_format = match c.string(m, "output_format", path, false).as_deref() {
                None | Some("text") => OutputFormat::Text,
                Some("json") => OutputFormat::Json,
                Some("sections") => OutputFormat::Sections,
                Some(other) => {
                    c.error_hint(
                        Code::InvalidValue,
                        &join_key(path, "output_format"),
                        format!("unknown output_format `{other}` (known: text, json, sections)"),
                        did_you_mean(other, ["text", "json", "sections"]),
                    );
                    OutputFormat::Text
                }
            };
            let fallback = match m.get("fallback") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        model_spec(c, v, &join_index(&join_key(path, "fallback"), i))
                    })
                    .collect(),
                Some(other) => {
                    c.error(
                        Code::WrongType,
                        &join_key(path, "fallback"),
                        format!(
                            "`fallback` must be a list of models, found {}",
                            kind_of(other)
                        ),
                    );
                    Vec::new()
                }
            };
            NodeKind::LanguageTask {
                prompt: prompt?,
                output_format,
                fallback,
            }
        }
        "text_to_speech_task" => NodeKind::TextToSpeechTask,
        "speech_to_text_task" => NodeKind::SpeechToTextTask {
            language: c.string(m, "language", path, false),
            response_format: c.string(m, "response_format", path, false),
        },
        "function_task" | "reduce" => {
            let function_identifier = c.string(m, "function_identifier", path, true)?;
            if node_type == "reduce" {
                NodeKind::Reduce {
                    function_identifier,
                }
            } else {
                NodeKind::FunctionTask {
                    function_identifier,
                }
            }
        }
        "map" => NodeKind::Map(map_spec(c, m, path, base_dir, loader)?),
        "recipe" => NodeKind::Recipe(sub_recipe(c, m, path, base_dir, loader)?),
        "hitl" => {
            let required_fields = match m.get("required_fields") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Some(other) => {
                    c.error(
                        Code::WrongType,
                        &join_key(path, "required_fields"),
                        format!("`required_fields` must be a list of names, found {other}"),
                    );
                    Vec::new()
                }
            };
            NodeKind::Hitl(HitlSpec {
                required_fields,
                timeout: settings.timeout,
                default: m.get("default").cloned(),
                prompt: c.string(m, "prompt", path, false),
            })
        }
        _ => return None,
    };
    Some(Node {
        id,
        description: c.string(m, "description", path, false),
        input,
        output,
        model,
        settings,
        kind,
    })
}

fn settings(c: &mut Checker, m: &Map<String, Value>, path: &str, node_type: &str) -> NodeSettings {
    let on_error = if node_type == "map" {
        None // the map's own `on_error` (halt|skip) is read by map_spec
    } else {
        match c.string(m, "on_error", path, false).as_deref() {
            None | Some("fail") | Some("halt") => None,
            Some("continue") => Some(OnError::Continue),
            // Content Composer accepts `skip` on every node.
            Some("skip") => {
                c.out.push(
                    Diagnostic::warning(
                        Code::InvalidValue,
                        "`on_error: skip` is for map nodes; on this node it means `continue` (the output is null and the error is stored under `<output>_error`)",
                    )
                    .at(join_key(path, "on_error"))
                    .with_hint(Some("write `on_error: continue`".into())),
                );
                Some(OnError::Continue)
            }
            Some(other) => {
                c.error_hint(
                    Code::InvalidValue,
                    &join_key(path, "on_error"),
                    format!("unknown on_error `{other}` (known: fail, continue, skip)"),
                    did_you_mean(other, ["fail", "continue", "skip"]),
                );
                None
            }
        }
    };
    let timeout = match m.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if t > 0.0 => Some(t),
            _ => {
                c.error(
                    Code::InvalidValue,
                    &join_key(path, "timeout"),
                    format!("`timeout` must be a positive number of seconds, found {v}"),
                );
                None
            }
        },
    };
    let cache = CachePolicy::parse(m.get("cache")).unwrap_or_else(|e| {
        c.error(Code::InvalidValue, &join_key(path, "cache"), e.0);
        CachePolicy::default()
    });
    let retry = match m.get("retry") {
        None | Some(Value::Null) => None,
        Some(v) => match RetryPolicy::parse(v) {
            Ok(p) => Some(p),
            Err(e) => {
                c.error(Code::InvalidValue, &join_key(path, "retry"), e.0);
                None
            }
        },
    };
    NodeSettings {
        on_error,
        cache,
        retry,
        timeout,
    }
}

fn load_prompt(c: &mut Checker, prompt: String, path: &str, base_dir: &Path) -> Option<Prompt> {
    let trimmed = prompt.trim();
    if trimmed.ends_with(".jinja") && !trimmed.contains('\n') && !trimmed.contains("{{") {
        let file = base_dir.join(trimmed);
        return match std::fs::read_to_string(&file) {
            Ok(text) => {
                c.template(&text, path);
                Some(Prompt::File { path: file, text })
            }
            Err(e) => {
                c.error(
                    Code::Io,
                    path,
                    format!("cannot read prompt file `{}`: {e}", file.display()),
                );
                None
            }
        };
    }
    c.template(&prompt, path);
    Some(Prompt::Inline(prompt))
}

fn map_spec(
    c: &mut Checker,
    m: &Map<String, Value>,
    path: &str,
    base_dir: &Path,
    loader: &mut Loader,
) -> Option<MapSpec> {
    let over = c.string(m, "over", path, true);
    if let Some(over) = &over {
        if over.contains("{{") {
            c.template(over, &join_key(path, "over"));
        }
    }
    let task = match m.get("task") {
        None | Some(Value::Null) => {
            c.error(
                Code::MissingField,
                &join_key(path, "task"),
                "missing required field `task`",
            );
            None
        }
        Some(v) => node(c, v, &join_key(path, "task"), base_dir, loader, true),
    };
    let on_error = match c.string(m, "on_error", path, false).as_deref() {
        None | Some("halt") => MapOnError::Halt,
        Some("skip") => MapOnError::Skip,
        Some(other) => {
            c.error_hint(
                Code::InvalidValue,
                &join_key(path, "on_error"),
                format!("unknown map on_error `{other}` (known: halt, skip)"),
                did_you_mean(other, ["halt", "skip"]),
            );
            MapOnError::Halt
        }
    };
    let execution_mode = match c.string(m, "execution_mode", path, false).as_deref() {
        None | Some("parallel") => ExecutionMode::Parallel,
        Some("sequential") => ExecutionMode::Sequential,
        Some(other) => {
            c.error_hint(
                Code::InvalidValue,
                &join_key(path, "execution_mode"),
                format!("unknown execution_mode `{other}` (known: parallel, sequential)"),
                did_you_mean(other, ["parallel", "sequential"]),
            );
            ExecutionMode::Parallel
        }
    };
    let max_concurrency = match m.get("max_concurrency") {
        None | Some(Value::Null) => Concurrency::Auto,
        Some(Value::String(s)) if s == "auto" => Concurrency::Auto,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Concurrency::Fixed(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                c.error(
                    Code::InvalidValue,
                    &join_key(path, "max_concurrency"),
                    format!("`max_concurrency` must be a positive number or `auto`, found {v}"),
                );
                Concurrency::Auto
            }
        },
    };
    Some(MapSpec {
        over: over?,
        task: Box::new(task?),
        on_error,
        execution_mode,
        max_concurrency,
    })
}

fn sub_recipe(
    c: &mut Checker,
    m: &Map<String, Value>,
    path: &str,
    base_dir: &Path,
    loader: &mut Loader,
) -> Option<SubRecipe> {
    let at = join_key(path, "recipe_path");
    // A reference in it was reported before references were resolved.
    if c.out
        .iter()
        .any(|d| d.is_error() && d.path.as_deref() == Some(&at))
    {
        return None;
    }
    let recipe_path = c.string(m, "recipe_path", path, true)?;
    if recipe_path.contains("{{") || recipe_path.contains("{%") {
        c.error_hint(
            Code::SubRecipe,
            &at,
            format!("`recipe_path` must be a plain path, but `{recipe_path}` holds a template (recipe paths are not expanded)"),
            Some("write the sub-recipe's file path, relative to this recipe (e.g. `sub/summary.yaml`)".into()),
        );
        return None;
    }
    let full = base_dir.join(&recipe_path);
    let (recipe, plan) = match loader.load_sub_recipe(&full) {
        Ok(loaded) => loaded,
        Err(diags) => {
            let nested_errors = diags.iter().filter(|d| d.is_error()).count();
            // A problem without a file is about the path itself (missing
            // file, recursion): report it here, since it is not kept below.
            let local = diags.iter().find(|d| d.is_error() && d.file.is_none());
            match local {
                Some(d) => c.error(d.code, &join_key(path, "recipe_path"), d.message.clone()),
                None => c.error(
                    Code::SubRecipe,
                    &join_key(path, "recipe_path"),
                    format!(
                        "sub-recipe `{recipe_path}` does not load ({nested_errors} error(s) below)"
                    ),
                ),
            }
            c.out.extend(diags.into_iter().filter(|d| d.file.is_some()));
            return None;
        }
    };
    let sub_ids: Vec<&str> = recipe.user_inputs.iter().map(|u| u.id.as_str()).collect();
    let mapped = match m.get("input_mapping") {
        Some(Value::Object(entries)) => Some(("input_mapping", entries)),
        None | Some(Value::Null) => match m.get("input") {
            Some(Value::Object(entries)) => Some(("input", entries)),
            _ => None,
        },
        Some(_) => None,
    };
    if let Some((field, entries)) = mapped {
        undeclared_sub_inputs(c, &recipe, &sub_ids, entries, &join_key(path, field));
    }
    let input_mapping = match m.get("input_mapping") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entries)) => {
            c.template_values(
                &Value::Object(entries.clone()),
                &join_key(path, "input_mapping"),
            );
            Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        Some(other) => {
            c.error(
                Code::WrongType,
                &join_key(path, "input_mapping"),
                format!(
                    "`input_mapping` must be a mapping, found {}",
                    kind_of(other)
                ),
            );
            None
        }
    };
    let output_mapping = match m.get("output_mapping") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entries)) => {
            let mut mapping = IndexMap::new();
            for (parent_key, sub_key) in entries {
                let entry_path = join_key(&join_key(path, "output_mapping"), parent_key);
                let Value::String(sub_key) = sub_key else {
                    c.error(
                        Code::WrongType,
                        &entry_path,
                        "an output mapping value names a sub-recipe output (text)",
                    );
                    continue;
                };
                let sub_keys = state_keys(&recipe.user_inputs, &recipe.nodes);
                let head = sub_key.split('.').next().unwrap_or_default();
                if !sub_keys.contains(head) {
                    let names: Vec<&str> = sub_keys.iter().map(String::as_str).collect();
                    c.error_hint(
                        Code::UnknownOutput,
                        &entry_path,
                        format!("sub-recipe `{}` produces no `{head}`", recipe.name),
                        did_you_mean(head, names),
                    );
                }
                mapping.insert(parent_key.clone(), sub_key.clone());
            }
            Some(mapping)
        }
        Some(other) => {
            c.error(
                Code::WrongType,
                &join_key(path, "output_mapping"),
                format!(
                    "`output_mapping` must be a mapping, found {}",
                    kind_of(other)
                ),
            );
            None
        }
    };
    Some(SubRecipe {
        recipe_path: full,
        recipe,
        plan,
        input_mapping,
        output_mapping,
    })
}

/// A Jinja spelling for operators from other languages that conditions
/// are often written with.
fn condition_hint(cond: &str) -> Option<String> {
    if let Some((left, right)) = cond.split_once(" contains ") {
        let (left, right) = (left.trim(), right.trim());
        return Some(format!(
            "Jinja has no `contains` operator; write `{right} in {left}`"
        ));
    }
    for (wrong, right) in [("&&", "and"), ("||", "or"), ("===", "=="), ("!==", "!=")] {
        if cond.contains(wrong) {
            return Some(format!("Jinja writes `{wrong}` as `{right}`"));
        }
    }
    let t = cond.trim_start();
    if t.starts_with('!') && !t.starts_with("!=") {
        return Some("Jinja writes `!x` as `not x`".into());
    }
    None
}

/// Keys passed into a sub-recipe that it does not declare: a near miss of
/// a declared input is an error (a typo), anything else a warning (the
/// value is passed into its state as it is, as Content Composer does).
fn undeclared_sub_inputs(
    c: &mut Checker,
    recipe: &Recipe,
    sub_ids: &[&str],
    entries: &Map<String, Value>,
    path: &str,
) {
    for key in entries.keys() {
        if sub_ids.contains(&key.as_str()) {
            continue;
        }
        let at = join_key(path, key);
        match did_you_mean(key, sub_ids.iter().copied()) {
            Some(hint) => c.error_hint(
                Code::SubRecipeInput,
                &at,
                format!("sub-recipe `{}` has no input `{key}`", recipe.name),
                Some(hint),
            ),
            None => c.out.push(
                Diagnostic::warning(
                    Code::SubRecipeInput,
                    format!(
                        "sub-recipe `{}` declares no input `{key}`; the value is passed into its state as it is",
                        recipe.name
                    ),
                )
                .at(at)
                .with_hint(Some(format!(
                    "declare it in the sub-recipe's `user_inputs` (`- id: {key}`) to have it checked"
                ))),
            ),
        }
    }
}

/// `"{{ x > 1 }}"` → `x > 1`; a bare expression is returned as it is.
pub fn strip_braces(condition: &str) -> &str {
    let t = condition.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") && !inner.contains("}}") => inner.trim(),
        _ => t,
    }
}

fn edge(
    c: &mut Checker,
    value: &Value,
    path: &str,
    ids: &[&str],
    id_set: &HashSet<&str>,
) -> Option<Edge> {
    let (from, to, condition, max_iterations) = match value {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(" to ").map(str::trim).collect();
            match parts.as_slice() {
                [from, to] if !from.is_empty() && !to.is_empty() => {
                    (from.to_string(), to.to_string(), None, None)
                }
                _ => {
                    c.error(
                        Code::InvalidEdge,
                        path,
                        format!("edge `{s}` must read `SOURCE to TARGET`"),
                    );
                    return None;
                }
            }
        }
        Value::Object(m) => {
            c.unknown_fields(m, path, &[EDGE_FIELDS], "an edge");
            let from = c.string(m, "from", path, true);
            let to = c.string(m, "to", path, true);
            let condition = match m.get("condition") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::String(s)) => Some(strip_braces(s).to_string()),
                Some(other) => {
                    c.error(
                        Code::WrongType,
                        &join_key(path, "condition"),
                        format!(
                            "a condition is a Jinja expression (text), found {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            };
            if let Some(cond) = &condition {
                if let Err(e) = template::check_expression(cond) {
                    c.error_hint(
                        Code::InvalidTemplate,
                        &join_key(path, "condition"),
                        format!("condition `{cond}` does not parse: {e}"),
                        condition_hint(cond),
                    );
                }
            }
            let max_iterations = m.get("max_iterations").and_then(|v| {
                c.positive_int(v, &join_key(path, "max_iterations"), "max_iterations")
            });
            (from?, to?, condition, max_iterations)
        }
        other => {
            c.error(
                Code::InvalidEdge,
                path,
                format!(
                    "an edge is `\"a to b\"` or a mapping `{{from, to, condition}}`, found {}",
                    kind_of(other)
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    for (end, name) in [("from", &from), ("to", &to)] {
        let is_start = name == START;
        let is_end = name == END;
        if (end == "from" && is_end) || (end == "to" && is_start) {
            c.error(
                Code::InvalidEdge,
                path,
                format!("`{name}` cannot be an edge's `{end}`"),
            );
            ok = false;
        } else if !is_start && !is_end && !id_set.contains(name.as_str()) {
            let names = ids.iter().copied().chain([START, END]);
            c.error_hint(
                Code::UnknownNode,
                path,
                format!("edge {end} `{name}` names no node"),
                did_you_mean(name, names),
            );
            ok = false;
        }
    }
    ok.then(|| Edge {
        from,
        to,
        condition,
        max_iterations,
        path: path.to_string(),
    })
}

fn final_output(
    c: &mut Checker,
    value: &Value,
    path: &str,
    known: &HashSet<String>,
) -> Option<FinalOutput> {
    let check_key = |c: &mut Checker, key: &str, at: &str| {
        let head = key.split('.').next().unwrap_or_default();
        let is_name = head
            .chars()
            .next()
            .is_some_and(|ch| ch.is_alphabetic() || ch == '_');
        if !is_name {
            let mut names: Vec<&str> = known
                .iter()
                .map(String::as_str)
                .filter(|k| !k.ends_with("_error") && !k.ends_with("_errors"))
                .collect();
            names.sort_unstable();
            let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
            c.error_hint(
                Code::UnknownOutput,
                at,
                format!("final output `{key}` is not a key: write a state key or a dotted path (a placeholder such as `...` cannot be left in)"),
                Some(format!("known keys: {}", shown.join(", "))),
            );
            return;
        }
        if !known.contains(head) {
            c.error_hint(
                Code::UnknownOutput,
                at,
                format!("final output `{key}`: no input or node output is called `{head}`"),
                did_you_mean(head, known.iter().map(String::as_str)),
            );
        }
    };
    match value {
        Value::String(key) => {
            if key.contains("{{") {
                c.template(key, path);
            } else {
                check_key(c, key, path);
            }
            Some(FinalOutput::Key(key.clone()))
        }
        Value::Object(m) => {
            c.unknown_fields(m, path, &[FINAL_OUTPUT_FIELDS], "a final output");
            let id = c.string(m, "id", path, true)?;
            let value = m
                .get("value")
                .cloned()
                .unwrap_or_else(|| Value::String(id.clone()));
            match &value {
                Value::String(s) if !s.contains("{{") => check_key(c, s, &join_key(path, "value")),
                v => c.template_values(v, &join_key(path, "value")),
            }
            let condition = match m.get("condition") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    let cond = strip_braces(s).to_string();
                    if let Err(e) = template::check_expression(&cond) {
                        c.error_hint(
                            Code::InvalidTemplate,
                            &join_key(path, "condition"),
                            format!("condition `{cond}` does not parse: {e}"),
                            condition_hint(&cond),
                        );
                    }
                    Some(cond)
                }
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(other) => {
                    c.error(
                        Code::WrongType,
                        &join_key(path, "condition"),
                        format!("a condition is text, found {}", kind_of(other)),
                    );
                    None
                }
            };
            Some(FinalOutput::Entry {
                id,
                value,
                condition,
            })
        }
        other => {
            c.error(
                Code::WrongType,
                path,
                format!(
                    "a final output is a key or `{{id, value, condition}}`, found {}",
                    kind_of(other)
                ),
            );
            None
        }
    }
}
