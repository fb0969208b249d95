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
        /// What kind of failure (provider, plugin_limit, template, ...).
        kind: super::error::ErrorKind,
        #[serde(with = "secs")]
        duration: Duration,
        /// `on_error: continue` kept the run going.
        continued: bool,
    },
    NodeCancelled {
        node: String,
    },
    /// A `hitl` node waits for a reply; the run will stop in `waiting`.
    NodeWaiting {
        node: String,
        prompt: Option<String>,
        shown: serde_json::Value,
        required_fields: Vec<String>,
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
    /// An outbound HTTP request a plugin call made, when it ended (its
    /// span is `[at - request.secs, at]`).
    PluginHttp {
        node: String,
        request: crate::plugins::outbound::HttpRequestRecord,
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
        /// `succeeded`, `failed`, `waiting`, `cancelled` or `queued`
        /// (interrupted by a shutdown, to be continued).
        status: RunStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<super::error::Failure>,
    },
}

/// A run's status, as stored and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        Some(match text {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    /// The run will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// What plugin calls used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
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
    /// 1, 2, 3, ... per run, in the order events were emitted; 0 for
    /// events that are not stored or streamed (per-item map spans).
    pub seq: u64,
    pub run_id: Arc<str>,
    /// Time since the run started.
    #[serde(with = "secs")]
    pub at: Duration,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event outside any run's sequence (tests, tools).
    pub fn new(at: Duration, kind: EventKind) -> Event {
        Event {
            seq: 0,
            run_id: Arc::from(""),
            at,
            kind,
        }
    }

    /// Whether the event gets a sequence number, is stored and streamed.
    /// Per-item spans of big maps would flood the store and the stream;
    /// their node's progress events are enough there.
    pub fn sequenced(kind: &EventKind) -> bool {
        !matches!(kind, EventKind::MapItem { .. })
    }
}

/// Numbers a run's events and hands them to its sink one at a time, so
/// every consumer sees them in sequence order even when parallel nodes
/// emit at once.
pub struct Emitter {
    run_id: Arc<str>,
    started: std::time::Instant,
    next: Mutex<u64>,
    sink: Arc<dyn EventSink>,
}

impl Emitter {
    /// `last_seq`: the last sequence number already used by this run (0 for
    /// a new run; the stored maximum when a run is continued).
    pub fn new(run_id: &str, last_seq: u64, sink: Arc<dyn EventSink>) -> Emitter {
        Emitter {
            run_id: Arc::from(run_id),
            started: std::time::Instant::now(),
            next: Mutex::new(last_seq + 1),
            sink,
        }
    }

    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    pub fn emit(&self, kind: EventKind) {
        let at = self.started.elapsed();
        if !Event::sequenced(&kind) {
            self.sink.emit(Event {
                seq: 0,
                run_id: self.run_id.clone(),
                at,
                kind,
            });
            return;
        }
        // A poisoned lock only means a sink panicked: keep numbering.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        *next += 1;
        self.sink.emit(Event {
            seq,
            run_id: self.run_id.clone(),
            at,
            kind,
        });
    }
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
