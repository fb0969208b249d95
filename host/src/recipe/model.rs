//! The validated recipe: plain types that the planner and the executors
//! read. Everything here has passed the static checks of `validate`.

pub use super::policy::{CachePolicy, RetryPolicy};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub user_inputs: Vec<UserInput>,
    pub model_config: Option<ModelSpec>,
    pub nodes: Vec<Node>,
    /// None when the recipe has no `edges:` (nodes then run in list order).
    pub edges: Option<Vec<Edge>>,
    pub final_outputs: Option<Vec<FinalOutput>>,
    /// Loop bound for every loop in this recipe unless an edge says otherwise.
    pub max_iterations: Option<u32>,
    /// The file this recipe came from, if any.
    pub file: Option<PathBuf>,
    /// Folder that relative paths (prompt files, sub-recipes) start from.
    pub base_dir: PathBuf,
    /// Where each part stands in `file`, for diagnostics found after load.
    #[serde(skip)]
    pub positions: Positions,
}

/// Line and column of the parts of a recipe, by recipe-relative path
/// (`nodes[2].function_identifier`).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    spans: Arc<super::document::Spans>,
    /// `recipe` for the wrapped shape, empty for the flat one.
    prefix: String,
}

impl Positions {
    pub fn new(spans: super::document::Spans, prefix: &str) -> Positions {
        Positions {
            spans: Arc::new(spans),
            prefix: prefix.to_string(),
        }
    }

    /// The position of `path` (or of its closest ancestor that has one).
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let absolute = match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) if path.starts_with('[') => format!("{}{path}", self.prefix),
            (false, false) => format!("{}.{path}", self.prefix),
        };
        self.spans.find(&absolute)
    }
}

impl Recipe {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Fills in the file, line and column of a diagnostic whose path is
    /// one of this recipe's (as `functions` gives them: a sub-recipe's
    /// part is `nodes[0]/nodes[1]`, and is found in the sub-recipe's file).
    pub fn locate(&self, mut d: super::diagnostic::Diagnostic) -> super::diagnostic::Diagnostic {
        let path = d.path.clone().unwrap_or_default();
        if let Some((head, rest)) = path.split_once('/') {
            let sub = head
                .strip_prefix("nodes[")
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| self.nodes.get(i))
                .and_then(|n| match &n.kind {
                    NodeKind::Recipe(sub) => Some(sub),
                    NodeKind::Map(spec) => match &spec.task.kind {
                        NodeKind::Recipe(sub) if head.ends_with(".task") => Some(sub),
                        _ => None,
                    },
                    _ => None,
                });
            if let Some(sub) = sub {
                let inner = sub.recipe.locate(d.clone().at(rest));
                d.file = inner.file;
                d.line = inner.line;
                d.column = inner.column;
                return d;
            }
        }
        d.file = self.file.clone();
        if let Some((line, column)) = self.positions.find(&path) {
            d.line = Some(line);
            d.column = Some(column);
        }
        d
    }

    /// Every function the recipe calls, with where (`nodes[2].task`;
    /// sub-recipes as `nodes[0]/nodes[1]`), sub-recipes and map tasks included.
    pub fn functions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            collect_functions(node, &format!("nodes[{i}]"), &mut out);
        }
        out
    }
}

fn collect_functions(node: &Node, path: &str, out: &mut Vec<(String, String)>) {
    match &node.kind {
        NodeKind::FunctionTask {
            function_identifier,
        }
        | NodeKind::Reduce {
            function_identifier,
        } => {
            out.push((path.to_string(), function_identifier.clone()));
        }
        NodeKind::Map(spec) => collect_functions(&spec.task, &format!("{path}.task"), out),
        NodeKind::Recipe(sub) => {
            for (p, f) in sub.recipe.functions() {
                out.push((format!("{path}/{p}"), f));
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Text,
    Int,
    Float,
    Bool,
    File,
    Literal,
}

impl InputType {
    pub const NAMES: [&'static str; 7] =
        ["string", "text", "int", "float", "bool", "file", "literal"];

    pub fn parse(name: &str) -> Option<InputType> {
        Some(match name {
            "string" | "str" => InputType::String,
            "text" => InputType::Text,
            "int" | "integer" => InputType::Int,
            "float" | "number" => InputType::Float,
            "bool" | "boolean" => InputType::Bool,
            "file" => InputType::File,
            "literal" => InputType::Literal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Text => "text",
            InputType::Int => "int",
            InputType::Float => "float",
            InputType::Bool => "bool",
            InputType::File => "file",
            InputType::Literal => "literal",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UserInput {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub input_type: InputType,
    pub description: Option<String>,
    pub default: Option<Value>,
    pub required: bool,
    pub literal_values: Option<Vec<Value>>,
}

/// A model mapping: `provider`, `model`, and every other key (temperature,
/// max_tokens, base_url, mock settings ...) passed to the provider as-is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub provider: String,
    pub model: String,
    pub params: serde_json::Map<String, Value>,
}

/// The model a node uses, highest first: `--model` (`run`), a map item's
/// `model_override` (`item`), the node's own `model`, the enclosing map
/// node's `model` (`map`, for a map's task), the recipe's `model_config`.
/// This is the only place that order is written down.
pub fn choose_model<'a>(
    run: Option<&'a ModelSpec>,
    item: Option<&'a ModelSpec>,
    node: &'a Node,
    map: Option<&'a Node>,
    recipe: &'a Recipe,
) -> Option<&'a ModelSpec> {
    run.or(item)
        .or(node.model.as_ref())
        .or_else(|| map.and_then(|m| m.model.as_ref()))
        .or(recipe.model_config.as_ref())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The failure fails the run (default).
    Fail,
    /// The output becomes null and the error is stored under `<output>_error`.
    Continue,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSettings {
    pub on_error: Option<OnError>,
    /// `cache: false | true | {ttl, normalize}` (default: the kind's default).
    pub cache: CachePolicy,
    /// `retry: N | {max_attempts, base_delay, max_delay}` (None: the
    /// provider's defaults).
    pub retry: Option<RetryPolicy>,
    /// Seconds.
    pub timeout: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub description: Option<String>,
    /// Entries laid over the state before the node runs (None: the whole state).
    pub input: Option<IndexMap<String, Value>>,
    /// State key the result is stored under (default: the id).
    pub output: String,
    pub model: Option<ModelSpec>,
    pub settings: NodeSettings,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Text,
    Json,
    Sections,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    LanguageTask {
        prompt: Prompt,
        output_format: OutputFormat,
        fallback: Vec<ModelSpec>,
    },
    TextToSpeechTask,
    SpeechToTextTask {
        language: Option<String>,
        response_format: Option<String>,
    },
    FunctionTask {
        function_identifier: String,
    },
    Reduce {
        function_identifier: String,
    },
    Map(MapSpec),
    Recipe(SubRecipe),
    Hitl(HitlSpec),
}

impl NodeKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::LanguageTask { .. } => "language_task",
            NodeKind::TextToSpeechTask => "text_to_speech_task",
            NodeKind::SpeechToTextTask { .. } => "speech_to_text_task",
            NodeKind::FunctionTask { .. } => "function_task",
            NodeKind::Reduce { .. } => "reduce",
            NodeKind::Map(_) => "map",
            NodeKind::Recipe(_) => "recipe",
            NodeKind::Hitl(_) => "hitl",
        }
    }

    /// Whether this kind talks to a model (and so needs a model mapping).
    pub fn uses_model(&self) -> bool {
        matches!(
            self,
            NodeKind::LanguageTask { .. }
                | NodeKind::TextToSpeechTask
                | NodeKind::SpeechToTextTask { .. }
        )
    }
}

pub const NODE_TYPES: [&str; 8] = [
    "language_task",
    "text_to_speech_task",
    "speech_to_text_task",
    "function_task",
    "map",
    "reduce",
    "recipe",
    "hitl",
];

/// Task types a map may run per item.
pub const MAP_TASK_TYPES: [&str; 5] = [
    "language_task",
    "text_to_speech_task",
    "speech_to_text_task",
    "function_task",
    "recipe",
];

#[derive(Debug, Clone, Serialize)]
pub enum Prompt {
    Inline(String),
    /// A `.jinja` file, read at load time; the path is kept for messages.
    File {
        path: PathBuf,
        text: String,
    },
}

impl Prompt {
    pub fn text(&self) -> &str {
        match self {
            Prompt::Inline(t) => t,
            Prompt::File { text, .. } => text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapOnError {
    Halt,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    Parallel,
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    Auto,
    Fixed(usize),
}

#[derive(Debug, Clone, Serialize)]
pub struct MapSpec {
    /// A state key, dotted path or template expression giving a list.
    pub over: String,
    /// The per-item task; its id is `<map id>.task`.
    pub task: Box<Node>,
    pub on_error: MapOnError,
    pub execution_mode: ExecutionMode,
    pub max_concurrency: Concurrency,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubRecipe {
    pub recipe_path: PathBuf,
    #[serde(skip)]
    pub recipe: Arc<Recipe>,
    /// The sub-recipe's plan, built once when it loaded.
    #[serde(skip)]
    pub plan: Arc<super::plan::Plan>,
    pub input_mapping: Option<IndexMap<String, Value>>,
    pub output_mapping: Option<IndexMap<String, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HitlSpec {
    pub required_fields: Vec<String>,
    pub timeout: Option<f64>,
    pub default: Option<Value>,
    pub prompt: Option<String>,
}

pub const START: &str = "START";
pub const END: &str = "END";

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// A Jinja expression (braces already stripped), evaluated on the state.
    pub condition: Option<String>,
    pub max_iterations: Option<u32>,
    /// Where the edge sits in the recipe (`edges[2]`), for messages.
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum FinalOutput {
    /// A state key or dotted path; the result key is the whole string.
    Key(String),
    Entry {
        id: String,
        value: Value,
        condition: Option<String>,
    },
}
