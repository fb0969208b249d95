//! The execution engine against RECIPES.md sections 5-8: scheduling,
//! conditions and skips, loops, map, values and templates, sub-recipes,
//! hitl, inputs, final outputs, and `composer run` end to end.
//!
//! Runs go through `run_recipe` with the `mock` provider and small native
//! test functions; assertions look at outputs, errors and the event stream
//! (event order and timestamps relative to each other, never wall-clock
//! durations).

mod cli_run;
mod compat;
mod hitl;
mod loops;
mod map;
mod recipe_layer;
mod scheduling;
mod subrecipe;
mod values;

use async_trait::async_trait;
use composer::config::EngineSettings;
use composer::engine::error::RunError;
use composer::engine::events::{CollectEvents, Event, EventKind};
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, NotStarted, RunOutcome, RunRequest};
use composer::plugins::{CallContext, CallError, Function, FunctionInfo, Scope};
use composer::recipe::model::{ModelSpec, Recipe};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `tests/fixtures/engine`: sub-recipes, prompt files, CLI recipes. Inline
/// recipes resolve relative paths from here.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("engine")
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("composer-engine-test-")
        .tempdir()
        .expect("cannot create a temporary folder")
}

/// Loads an inline YAML recipe (relative paths start at `fixtures()`).
pub fn load(yaml: &str) -> Arc<Recipe> {
    crate::support::load_yaml(yaml, &fixtures())
}

/// A native test function: `f` gets the node's input object.
pub fn func<F, Fut>(name: &str, f: F) -> Arc<dyn Function>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    Arc::new(Native {
        name: name.to_string(),
        f,
    })
}

struct Native<F> {
    name: String,
    f: F,
}

#[async_trait]
impl<F, Fut> Function for Native<F>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.clone(),
            description: "test function".into(),
            pure: false,
            tags: Vec::new(),
            input_schema: None,
        }
    }

    async fn call(&self, input: Value, _ctx: &CallContext) -> Result<Value, CallError> {
        (self.f)(input).await.map_err(CallError::Message)
    }
}

/// `echo`: returns its input object unchanged.
pub fn echo() -> Arc<dyn Function> {
    func("echo", |input| async move { Ok(input) })
}

/// `count_up`: `{previous: n}` → n + 1.
pub fn count_up() -> Arc<dyn Function> {
    func("count_up", |input| async move {
        let n = input["previous"]
            .as_i64()
            .ok_or_else(|| format!("`previous` is not a number: {input}"))?;
        Ok(Value::from(n + 1))
    })
}

/// A mock model mapping.
pub fn mock_model(model: &str, params: Value) -> ModelSpec {
    ModelSpec {
        provider: "mock".into(),
        model: model.into(),
        params: params.as_object().cloned().unwrap_or_default(),
    }
}

/// One run to set up: recipe, inputs, functions, replies, `--model`.
pub struct Setup {
    pub services: Services,
    pub recipe: Arc<Recipe>,
    pub inputs: Map<String, Value>,
    pub model_override: Option<ModelSpec>,
    pub replies: HashMap<String, Value>,
    pub allow_extra_inputs: bool,
}

impl Setup {
    pub fn new(yaml: &str) -> Self {
        Self::recipe(load(yaml))
    }

    pub fn recipe(recipe: Arc<Recipe>) -> Self {
        let mut services = Services::new(EngineSettings::default());
        services.functions.register(Scope::Core, echo());
        services.functions.register(Scope::Core, count_up());
        Setup {
            services,
            recipe,
            inputs: Map::new(),
            model_override: None,
            replies: HashMap::new(),
            allow_extra_inputs: false,
        }
    }

    pub fn function(mut self, f: Arc<dyn Function>) -> Self {
        self.services.functions.register(Scope::Core, f);
        self
    }

    pub fn input(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.inputs.insert(key.into(), value.into());
        self
    }

    pub fn reply(mut self, node: &str, reply: Value) -> Self {
        self.replies.insert(node.into(), reply);
        self
    }

    pub fn model(mut self, spec: ModelSpec) -> Self {
        self.model_override = Some(spec);
        self
    }

    /// Starts the run; `Err` when it was refused before anything ran
    /// (with the events emitted, which must be none).
    pub async fn start(self) -> Result<Ran, (NotStarted, Vec<Event>)> {
        let dir = temp_dir();
        let sink = CollectEvents::new();
        let request = RunRequest {
            recipe: self.recipe,
            inputs: self.inputs,
            model_override: self.model_override,
            out_root: dir.path().to_path_buf(),
            replies: self.replies,
            events: sink.clone(),
            allow_extra_inputs: self.allow_extra_inputs,
            cache_mode: Default::default(),
        };
        match run_recipe(Arc::new(self.services), request).await {
            Ok(outcome) => Ok(Ran {
                outcome,
                events: sink.events(),
                _dir: dir,
            }),
            Err(not_started) => Err((not_started, sink.events())),
        }
    }

    /// Runs to the end (success or failure); the run must start.
    pub async fn run(self) -> Ran {
        match self.start().await {
            Ok(ran) => ran,
            Err((e, _)) => panic!("the run did not start: {}", e.0),
        }
    }
}

/// A finished run: its outcome and every event.
pub struct Ran {
    pub outcome: RunOutcome,
    pub events: Vec<Event>,
    _dir: tempfile::TempDir,
}

impl Ran {
    /// The final outputs of a run that must have succeeded.
    pub fn outputs(&self) -> &Map<String, Value> {
        if let Some(e) = &self.outcome.error {
            panic!("the run failed: {e}\nevents:\n{}", self.describe());
        }
        &self.outcome.outputs
    }

    /// One final output of a run that must have succeeded.
    pub fn out(&self, key: &str) -> &Value {
        self.outputs()
            .get(key)
            .unwrap_or_else(|| panic!("no final output `{key}` in {:?}", self.outcome.outputs))
    }

    /// The error of a run that must have failed.
    pub fn error(&self) -> &RunError {
        match &self.outcome.error {
            Some(e) => e,
            None => panic!(
                "the run succeeded, but it should have failed; outputs: {:?}",
                self.outcome.outputs
            ),
        }
    }

    /// Times of the events `select` picks (it returns the node it concerns).
    fn times(&self, node: &str, select: impl Fn(&EventKind) -> Option<&str>) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|e| select(&e.kind) == Some(node))
            .map(|e| e.at)
            .collect()
    }

    pub fn started(&self, node: &str) -> Vec<Duration> {
        self.times(node, |k| match k {
            EventKind::NodeStarted { node, .. } => Some(node),
            _ => None,
        })
    }

    pub fn finished(&self, node: &str) -> Vec<Duration> {
        self.times(node, |k| match k {
            EventKind::NodeFinished { node, .. } => Some(node),
            _ => None,
        })
    }

    pub fn skipped(&self) -> Vec<String> {
        self.nodes(|k| match k {
            EventKind::NodeSkipped { node } => Some(node),
            _ => None,
        })
    }

    pub fn cancelled(&self) -> Vec<String> {
        self.nodes(|k| match k {
            EventKind::NodeCancelled { node } => Some(node),
            _ => None,
        })
    }

    /// `(node, error, continued)` of every NodeFailed event.
    pub fn failed(&self) -> Vec<(String, String, bool)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::NodeFailed {
                    node,
                    error,
                    continued,
                    ..
                } => Some((node.clone(), error.clone(), *continued)),
                _ => None,
            })
            .collect()
    }

    fn nodes(&self, select: impl Fn(&EventKind) -> Option<&String>) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| select(&e.kind).cloned())
            .collect()
    }

    /// The event stream, one line each, for failure messages.
    pub fn describe(&self) -> String {
        self.events
            .iter()
            .map(|e| format!("{:>8.4}s {:?}", e.at.as_secs_f64(), e.kind))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The node a `RunError::NodeFailed` names, and the full message.
pub fn failed_node(error: &RunError) -> (String, String) {
    match error {
        RunError::NodeFailed { node, .. } => (node.clone(), error.to_string()),
        other => panic!("expected a node failure, got {other:?} ({other})"),
    }
}
