//! Live events of the runs this process executes, for SSE streams. Each
//! active run keeps the events of its current attempt in memory (so a
//! subscriber that arrives between an event's emission and its commit
//! misses nothing) and a broadcast channel for what comes next. When the
//! attempt ends, its events are all in the store and the channel closes.

use crate::engine::events::{Event, EventSink};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// One event as streamed: its sequence number, kind and JSON.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub seq: u64,
    pub kind: String,
    pub data: Arc<str>,
}

impl LiveEvent {
    pub fn from_json(seq: u64, event: &serde_json::Value) -> LiveEvent {
        LiveEvent {
            seq,
            kind: event
                .get("event")
                .and_then(|k| k.as_str())
                .unwrap_or("event")
                .to_string(),
            data: Arc::from(event.to_string()),
        }
    }
}

struct Channel {
    buffer: Vec<LiveEvent>,
    tx: broadcast::Sender<LiveEvent>,
}

#[derive(Default)]
pub struct Hub {
    runs: Mutex<HashMap<String, Channel>>,
}

impl Hub {
    /// Starts collecting a run attempt's events.
    pub fn open(&self, run_id: &str) {
        let (tx, _) = broadcast::channel(1024);
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(
                run_id.to_string(),
                Channel {
                    buffer: Vec::new(),
                    tx,
                },
            );
        }
    }

    /// The attempt ended and its events are stored: subscribers' channels
    /// close once they have read what was sent.
    pub fn close(&self, run_id: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(run_id);
        }
    }

    /// The current attempt's events after `after` and a receiver for the
    /// rest; None when the run is not executing in this process.
    pub fn subscribe(
        &self,
        run_id: &str,
        after: u64,
    ) -> Option<(Vec<LiveEvent>, broadcast::Receiver<LiveEvent>)> {
        let runs = self.runs.lock().ok()?;
        let channel = runs.get(run_id)?;
        let past = channel
            .buffer
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        Some((past, channel.tx.subscribe()))
    }

    pub fn is_active(&self, run_id: &str) -> bool {
        self.runs
            .lock()
            .map(|r| r.contains_key(run_id))
            .unwrap_or(false)
    }

    fn publish(&self, run_id: &str, event: LiveEvent) {
        if let Ok(mut runs) = self.runs.lock() {
            if let Some(channel) = runs.get_mut(run_id) {
                channel.buffer.push(event.clone());
                let _ = channel.tx.send(event);
            }
        }
    }
}

/// The event sink of one run executing here: live streams and the
/// Prometheus figures.
pub struct HubSink {
    pub hub: Arc<Hub>,
    pub run_id: String,
    pub tenant: String,
}

impl HubSink {
    fn record_metrics(&self, event: &Event) {
        use crate::engine::events::EventKind;
        let tenant = self.tenant.clone();
        match &event.kind {
            EventKind::NodeFinished {
                duration, stats, ..
            } => {
                metrics::histogram!("composer_node_duration_seconds", "tenant" => tenant.clone())
                    .record(duration.as_secs_f64());
                metrics::counter!("composer_provider_calls_total", "tenant" => tenant.clone())
                    .increment(u64::from(stats.calls));
                metrics::counter!("composer_provider_retries_total", "tenant" => tenant.clone())
                    .increment(u64::from(stats.retries));
                metrics::counter!("composer_provider_tokens_total", "tenant" => tenant.clone())
                    .increment(stats.input_tokens + stats.output_tokens);
                if let Some(cost) = stats.cost_usd {
                    metrics::counter!("composer_provider_cost_microusd_total", "tenant" => tenant)
                        .increment((cost * 1_000_000.0) as u64);
                }
            }
            EventKind::NodeFailed { kind, .. } => {
                metrics::counter!("composer_node_failures_total", "tenant" => tenant.clone(), "kind" => kind.as_str())
                    .increment(1);
                if *kind == crate::engine::error::ErrorKind::PluginLimit {
                    metrics::counter!("composer_plugin_limit_hits_total", "tenant" => tenant)
                        .increment(1);
                }
            }
            _ => {}
        }
    }
}

impl EventSink for HubSink {
    fn emit(&self, event: Event) {
        if event.seq == 0 {
            return;
        }
        self.record_metrics(&event);
        let Ok(json) = serde_json::to_value(&event) else {
            return;
        };
        self.hub
            .publish(&self.run_id, LiveEvent::from_json(event.seq, &json));
    }
}
