//! Durable runs: what the scheduler needs from storage to continue a run
//! whose process died, without repeating finished work.
//!
//! Every finished node (and map item) leaves a checkpoint keyed by where it
//! ran: `node#1` for a node's first execution, `node#2` for its second loop
//! pass, `map#1[3]` for an item, `parent#1/child#1` inside a sub-recipe. The
//! scheduler is deterministic given node outputs, so continuing a run is
//! running it again from the start while restoring every checkpointed
//! result instead of executing it: conditions, skips and loop passes come
//! out the same, and only what had not finished runs again.

use super::events::{EventSink, PluginUsage};
use crate::nodes::NodeOutput;
use crate::providers::CallStats;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A finished node's result as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOutput {
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, serde_json::Value)>,
    #[serde(default)]
    pub mock: bool,
    #[serde(default)]
    pub stats: CallStats,
    #[serde(default)]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginUsage>,
}

impl StoredOutput {
    pub fn from_output(out: &NodeOutput) -> StoredOutput {
        StoredOutput {
            value: super::state::to_json(&out.value),
            extra: out
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), super::state::to_json(v)))
                .collect(),
            mock: out.mock,
            stats: out.stats.clone(),
            cached: out.cached,
            plugin: out.plugin,
        }
    }

    pub fn into_output(self) -> NodeOutput {
        NodeOutput {
            value: super::state::from_json(&self.value),
            extra: self
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), super::state::from_json(v)))
                .collect(),
            mock: self.mock,
            stats: self.stats,
            cached: self.cached,
            plugin: self.plugin,
        }
    }
}

/// One run's durable record, written as the run goes. It receives the
/// run's events (as a sink) and its checkpoints.
pub trait Journal: EventSink {
    /// The result a previous attempt of this run left under `key`.
    fn restored(&self, key: &str) -> Option<StoredOutput>;

    /// Stores a finished node's result; the future resolves once it is
    /// durable, so dependents start only after it is.
    fn checkpoint(&self, key: String, output: StoredOutput) -> BoxFuture<'static, ()>;

    /// Records how the run ended (or stopped, for `waiting` and `queued`)
    /// and resolves once everything before it is durable.
    fn finish(&self, end: RunEnd) -> BoxFuture<'static, ()>;
}

/// How a run attempt ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: super::events::RunStatus,
    pub outputs: Option<serde_json::Value>,
    pub failure: Option<super::error::Failure>,
    pub metrics: Option<serde_json::Value>,
}

/// Restored results of an earlier attempt, looked up by key.
#[derive(Default)]
pub struct Restored(pub HashMap<String, StoredOutput>);

impl Restored {
    pub fn get(&self, key: &str) -> Option<StoredOutput> {
        self.0.get(key).cloned()
    }
}

pub type SharedJournal = Arc<dyn Journal>;
