//! Node executors, one module per node type. Each takes the node's context
//! and returns its output; none names its own node in errors (the scheduler
//! adds the node path).

mod function_task;
pub mod hitl;
mod language_task;
mod map;
mod recipe;
mod speech_to_text_task;
mod text_to_speech_task;

pub use hitl::{HumanInput, HumanRequest};

use crate::engine::error::NodeError;
use crate::engine::run::RunContext;
use crate::engine::state::{self, Values};
use crate::recipe::model::{choose_model, ModelSpec, Node, NodeKind, Recipe};
use minijinja::value::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// Everything a node executor may read.
#[derive(Clone)]
pub struct NodeCtx {
    pub run: Arc<RunContext>,
    /// The recipe the node belongs to (for `model_config` and paths).
    pub recipe: Arc<Recipe>,
    /// Node path used in events: `parent/child`, `map[3]`.
    pub path: String,
    /// Checkpoint key of this execution (see `engine::durable`).
    pub key: String,
    /// The visible state (for map items: state, map inputs and the item).
    pub vars: Value,
    /// Output names of the recipe's nodes: a name among them that holds
    /// nothing (skipped producer) resolves to null.
    pub producers: Arc<HashSet<String>>,
    /// For a map item: the model chosen for the map's task (item
    /// `model_override`, the task's `model`, the map node's `model`,
    /// `model_config`), which the task uses unless `--model` is given.
    pub item_model: Option<ModelSpec>,
}

/// What a node produced.
#[derive(Debug, Default)]
pub struct NodeOutput {
    pub value: Value,
    /// Further state keys to write after the output (sub-recipe output
    /// mappings, a map's `<output>_errors`).
    pub extra: Vec<(String, Value)>,
    /// Made by the mock provider.
    pub mock: bool,
    /// Provider calls, retries, tokens and cost.
    pub stats: crate::providers::CallStats,
    /// Served from the cache.
    pub cached: bool,
    /// What plugin calls used (function nodes).
    pub plugin: Option<crate::engine::events::PluginUsage>,
}

impl NodeOutput {
    pub fn value(value: Value) -> Self {
        NodeOutput {
            value,
            ..NodeOutput::default()
        }
    }
}

impl NodeCtx {
    /// The model a node uses (see `recipe::model::choose_model`; for a map
    /// item, `item_model` already holds the choice made for its task).
    pub fn model_for(&self, node: &Node) -> Result<ModelSpec, NodeError> {
        choose_model(
            self.run.model_override.as_ref(),
            self.item_model.as_ref(),
            node,
            None,
            &self.recipe,
        )
        .cloned()
        .ok_or_else(|| {
            NodeError::Input(
                "no model: give the node a `model`, the recipe a `model_config`, or run with `--model`".into(),
            )
        })
    }

    /// Whether this node's result goes through the cache, per its `cache:`
    /// setting (checked when the recipe loaded), the run's mode, and
    /// `default_on` for this kind of call.
    pub fn cache_on(&self, node: &Node, default_on: bool) -> bool {
        self.run.services.cache.is_some()
            && node.settings.cache.enabled.unwrap_or(default_on)
            && self.run.cache_mode != crate::cache::CacheMode::Off
    }

    /// `compute`'s result through the cache (see `cache_on`); `parts` names
    /// everything that decides the result and is only built when the cache
    /// is used. Returns the value and whether it came from the cache.
    pub async fn cached<F, Fut>(
        &self,
        node: &Node,
        kind: &str,
        default_on: bool,
        parts: impl FnOnce() -> serde_json::Value,
        compute: F,
    ) -> Result<(serde_json::Value, bool), NodeError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<serde_json::Value, NodeError>>,
    {
        use crate::cache::key;
        let cache = match &self.run.services.cache {
            Some(c) if self.cache_on(node, default_on) => c,
            _ => return compute().await.map(|v| (v, false)),
        };
        let policy = &node.settings.cache;
        let parts = if policy.normalize {
            key::normalize(&parts())
        } else {
            parts()
        };
        // Each tenant's entries are its own.
        let parts = if self.run.cache_namespace.is_empty() {
            parts
        } else {
            serde_json::json!({"namespace": self.run.cache_namespace, "parts": parts})
        };
        cache
            .get_or_compute(
                &key::key(&parts),
                kind,
                policy.ttl,
                self.run.cache_mode,
                compute,
            )
            .await
    }

    /// Turns provider call notes into run events under this node.
    pub fn observer(&self) -> crate::providers::CallObserver {
        let (run, node) = (self.run.clone(), self.path.clone());
        std::sync::Arc::new(move |note| {
            run.emit(crate::engine::events::EventKind::Provider {
                node: node.clone(),
                note,
            })
        })
    }

    /// `observer`, also counting what the calls it watches cost (for
    /// providers whose answer carries no `CallStats`: speech, transcription).
    pub fn counting_observer(&self) -> (crate::providers::CallObserver, CallTally) {
        let tally = CallTally::default();
        let (seen, forward) = (tally.clone(), self.observer());
        let observer: crate::providers::CallObserver = std::sync::Arc::new(move |note| {
            seen.note(&note);
            forward(note)
        });
        (observer, tally)
    }

    /// The node's `input` entries resolved against the visible state, and
    /// the context they make when laid over it.
    pub fn resolve_inputs(&self, node: &Node) -> Result<(Value, Option<Values>), NodeError> {
        let Some(entries) = &node.input else {
            return Ok((self.vars.clone(), None));
        };
        let mut resolved = Values::with_capacity(entries.len());
        // Text templates print omitted optional inputs as empty text, as
        // prompts do; names and single expressions keep them null.
        let mut text_ctx: Option<Value> = None;
        for (key, raw) in entries {
            let v = match raw {
                serde_json::Value::String(s)
                    if crate::template::is_template(s)
                        && crate::template::single_expression(s).is_none() =>
                {
                    let ctx =
                        text_ctx.get_or_insert_with(|| self.prompt_context(self.vars.clone()));
                    crate::template::render(s, ctx).map(Value::from)
                }
                _ => state::resolve_entry(raw, &self.vars, &self.producers),
            }
            .map_err(|e| NodeError::template(format!("input `{key}`"), e))?;
            resolved.insert(key.clone(), v);
        }
        let ctx = state::layered(resolved.clone(), self.vars.clone());
        Ok((ctx, Some(resolved)))
    }

    /// The context a prompt (or a text template input) is rendered in: `vars`, where optional inputs
    /// that were omitted (no default, not given: null in the state) are
    /// undefined as in Jinja2, so they print as empty text while
    /// `is defined`, `default(..)` and `if` treat them as missing.
    pub fn prompt_context(&self, vars: Value) -> Value {
        let omitted: HashSet<String> = self
            .recipe
            .user_inputs
            .iter()
            .filter(|i| !i.required && i.default.is_none())
            .filter(|i| vars.get_attr(&i.id).is_ok_and(|v| v.is_none()))
            .map(|i| i.id.clone())
            .collect();
        if omitted.is_empty() {
            return vars;
        }
        Value::from_object(Omitted {
            names: omitted,
            base: vars,
        })
    }

    /// A file name stem for outputs written by this node, unique per node
    /// path within the run's output folder.
    pub fn file_stem(&self) -> std::path::PathBuf {
        let safe: String = self
            .path
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.run.out_dir.join(safe.trim_matches('_'))
    }
}

/// A context in which some names are Jinja2's silent undefined.
#[derive(Debug)]
struct Omitted {
    names: HashSet<String>,
    base: Value,
}

impl minijinja::value::Object for Omitted {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if key.as_str().is_some_and(|k| self.names.contains(k)) {
            return Some(silent_undefined());
        }
        self.base.get_item(key).ok().filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        let keys: Vec<Value> = self
            .base
            .try_iter()
            .map(|it| it.collect())
            .unwrap_or_default();
        minijinja::value::Enumerator::Values(keys)
    }
}

/// The undefined value Jinja2 prints as empty text (minijinja makes it for
/// an `if` expression without `else`; it cannot be built directly).
fn silent_undefined() -> Value {
    static SILENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SILENT
        .get_or_init(|| {
            minijinja::Environment::new()
                .compile_expression("none if false")
                .and_then(|e| e.eval(()))
                .unwrap_or_else(|_| Value::from(""))
        })
        .clone()
}

/// Runs one node (or map item): restores its result when an earlier
/// attempt of the run finished it, checks the tenant's budget before a
/// provider call and charges it after, and checkpoints the result before
/// returning, so nothing that depends on it starts before it is durable.
pub async fn run(ctx: &NodeCtx, node: &Node) -> Result<NodeOutput, NodeError> {
    let journal = ctx.run.journal.clone();
    if let Some(stored) = journal.as_ref().and_then(|j| j.restored(&ctx.key)) {
        return Ok(stored.into_output());
    }
    let budget = ctx.run.budget.as_ref().filter(|_| node.kind.uses_model());
    if let Some(b) = budget {
        b.check().await?;
    }
    let out = dispatch(ctx, node).await?;
    if let Some(b) = budget {
        b.record(&out.stats);
    }
    if let Some(j) = journal {
        j.checkpoint(
            ctx.key.clone(),
            crate::engine::durable::StoredOutput::from_output(&out),
        )
        .await;
    }
    Ok(out)
}

async fn dispatch(ctx: &NodeCtx, node: &Node) -> Result<NodeOutput, NodeError> {
    match &node.kind {
        NodeKind::LanguageTask { .. } => language_task::run(ctx, node).await,
        NodeKind::TextToSpeechTask => text_to_speech_task::run(ctx, node).await,
        NodeKind::SpeechToTextTask { .. } => speech_to_text_task::run(ctx, node).await,
        NodeKind::FunctionTask {
            function_identifier,
        }
        | NodeKind::Reduce {
            function_identifier,
        } => function_task::run(ctx, node, function_identifier).await,
        NodeKind::Map(spec) => map::run(ctx, node, spec).await,
        NodeKind::Recipe(sub) => recipe::run(ctx, node, sub).await,
        NodeKind::Hitl(spec) => hitl::run(ctx, node, spec).await,
    }
}

/// Retries and rate-limit waits seen by a `counting_observer`.
#[derive(Clone, Default)]
pub struct CallTally {
    retries: std::sync::Arc<std::sync::atomic::AtomicU32>,
    waited_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CallTally {
    fn note(&self, note: &crate::providers::CallNote) {
        use std::sync::atomic::Ordering::Relaxed;
        match note {
            crate::providers::CallNote::Retry { .. } => {
                self.retries.fetch_add(1, Relaxed);
            }
            crate::providers::CallNote::RateLimitWait { waited_ms, .. } => {
                self.waited_ms.fetch_add(*waited_ms, Relaxed);
            }
            crate::providers::CallNote::Fallback { .. } => {}
        }
    }

    /// The calls made: none when the result came from the cache, else the
    /// first attempt and every retry.
    pub fn stats(&self, called: bool) -> crate::providers::CallStats {
        use std::sync::atomic::Ordering::Relaxed;
        if !called {
            return crate::providers::CallStats::default();
        }
        let retries = self.retries.load(Relaxed);
        crate::providers::CallStats {
            calls: 1 + retries,
            retries,
            rate_limit_wait_ms: self.waited_ms.load(Relaxed),
            ..Default::default()
        }
    }
}
