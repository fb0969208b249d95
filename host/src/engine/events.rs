//! The run's event stream. The scheduler reports here and never prints;
//! CLI progress, logs, the run store and API streams all consume events.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        run_id: String,
        recipe: String,
    },
    NodeStarted {
        node: String,
        node_type: &'static str,
    },
    NodeFinished {
        node: String,
        #[serde(with = "secs")]
        duration: Duration,
        /// Produced by the mock provider rather than a real model.
        mock: bool,
        /// Provider calls, retries, tokens and cost of this node.
        stats: crate::providers::CallStats,
        /// The result came from the cache (no provider or plugin call).
        cached: bool,
        /// Fuel and peak linear memory of the plugin calls this node made.
        plugin: Option<PluginUsage>,
    },
    NodeSkipped {
        node: String,
    },
    NodeFailed {
        node: String,
        error: String,
        #[serde(with = "secs")]
        duration: Duration,
        /// `on_error: continue` kept the run going.
        continued: bool,
    },
    NodeCancelled {
        node: String,
    },
    /// One map item ran (for traces: one span per item).
    MapItem {
        node: String,
        index: usize,
        /// When the item started, since the run started.
        #[serde(with = "secs")]
        started: Duration,
        #[serde(with = "secs")]
        duration: Duration,
        ok: bool,
    },
    MapProgress {
        node: String,
        done: usize,
        failed: usize,
        total: usize,
    },
    /// A provider call waited for the rate limiter, was retried, or fell
    /// back to another model.
    Provider {
        node: String,
        note: crate::providers::CallNote,
    },
    /// Progress a node reports by itself (a plugin reading a large file).
    NodeProgress {
        node: String,
        done: u64,
        total: u64,
    },
    LoopIteration {
        nodes: Vec<String>,
        iteration: u32,
    },
    Log {
        node: String,
        level: String,
        message: String,
    },
    RunFinished {
        success: bool,
        #[serde(with = "secs")]
        duration: Duration,
    },
}

/// What plugin calls used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PluginUsage {
    pub calls: u32,
    pub fuel: u64,
    pub peak_memory_bytes: u64,
}

impl PluginUsage {
    pub fn add(&mut self, other: &PluginUsage) {
        self.calls += other.calls;
        self.fuel += other.fuel;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Time since the run started.
    #[serde(with = "secs")]
    pub at: Duration,
    #[serde(flatten)]
    pub kind: EventKind,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Receives a run's events. Implementations must be cheap: the scheduler
/// calls them inline.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

/// Keeps every event in memory (tests, run results).
#[derive(Default)]
pub struct CollectEvents {
    events: Mutex<Vec<Event>>,
}

impl CollectEvents {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for CollectEvents {
    fn emit(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// Sends every event to several sinks.
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOut {
    fn emit(&self, event: Event) {
        for sink in &self.0 {
            sink.emit(event.clone());
        }
    }
}
