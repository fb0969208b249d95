//! `MetricsCollector`: an event sink that keeps a run's events and samples
//! the process's resident memory (RSS) when nodes start and end.
//!
//! `emit` is called inline by the scheduler, so it only pushes the event
//! (and, at node boundaries, reads one line of `/proc/self/status`); every
//! figure is computed afterwards from the events (`model`, `trace`).

use super::model::RunMetrics;
use crate::engine::events::{Event, EventKind, EventSink};
use crate::engine::plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The resident memory of the process around one node (its first start,
/// its last end), in bytes; None where it cannot be read (off Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRss {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// What a collector holds once the run is over.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub events: Vec<Event>,
    /// By node path (`parent/child` for sub-recipe nodes).
    pub rss: HashMap<String, NodeRss>,
    /// The largest RSS sampled during the run (node boundaries, run start
    /// and end).
    pub peak_rss: Option<u64>,
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    rss: HashMap<String, NodeRss>,
    peak_rss: Option<u64>,
}

/// Collects a run's events for metrics and traces. Wire it in with
/// `FanOut` next to the other sinks.
#[derive(Default)]
pub struct MetricsCollector {
    inner: Mutex<Inner>,
    /// Read `/proc/self/status` at node boundaries.
    sample_rss: bool,
}

enum Sample<'a> {
    Start(&'a str),
    End(&'a str),
    Run,
}

impl MetricsCollector {
    /// A collector that samples RSS at node boundaries.
    pub fn new() -> Arc<Self> {
        Arc::new(MetricsCollector {
            inner: Mutex::default(),
            sample_rss: true,
        })
    }

    /// A collector that only keeps events (no memory sampling).
    pub fn without_rss() -> Arc<Self> {
        Arc::new(MetricsCollector::default())
    }

    /// A copy of everything collected so far.
    pub fn collected(&self) -> Collected {
        match self.inner.lock() {
            Ok(inner) => Collected {
                events: inner.events.clone(),
                rss: inner.rss.clone(),
                peak_rss: inner.peak_rss,
            },
            Err(_) => Collected::default(),
        }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .lock()
            .map(|i| i.events.clone())
            .unwrap_or_default()
    }

    /// The run's metrics, from the events so far and the run's plan.
    pub fn metrics(&self, plan: &Plan) -> RunMetrics {
        let c = self.collected();
        RunMetrics::compute(&c.events, plan, &c.rss, c.peak_rss)
    }

    /// The Chrome trace-event document of the events so far.
    pub fn trace(&self) -> serde_json::Value {
        super::trace::chrome_trace(&self.events())
    }
}

impl EventSink for MetricsCollector {
    fn emit(&self, event: Event) {
        let sample = match &event.kind {
            EventKind::NodeStarted { node, .. } => Some(Sample::Start(node)),
            EventKind::NodeFinished { node, .. } | EventKind::NodeFailed { node, .. } => {
                Some(Sample::End(node))
            }
            EventKind::RunStarted { .. } | EventKind::RunFinished { .. } => Some(Sample::Run),
            _ => None,
        };
        // Read before taking the lock: the lock is only held to push.
        let rss = match &sample {
            Some(_) if self.sample_rss => read_rss(),
            _ => None,
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(bytes) = rss {
            inner.peak_rss = Some(inner.peak_rss.map_or(bytes, |p| p.max(bytes)));
        }
        match sample {
            Some(Sample::Start(node)) if self.sample_rss => {
                let entry = inner.rss.entry(node.to_string()).or_default();
                // The first start counts (a loop runs a node again).
                if entry.before.is_none() {
                    entry.before = rss;
                }
            }
            Some(Sample::End(node)) if self.sample_rss => {
                inner.rss.entry(node.to_string()).or_default().after = rss;
            }
            _ => {}
        }
        inner.events.push(event);
    }
}

/// The process's resident memory now (`VmRSS`), in bytes.
pub fn read_rss() -> Option<u64> {
    status_field("VmRSS:")
}

/// The process's peak resident memory so far (`VmHWM`), in bytes.
pub fn read_peak_rss() -> Option<u64> {
    status_field("VmHWM:")
}

#[cfg(target_os = "linux")]
fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&text, name)
}

#[cfg(not(target_os = "linux"))]
fn status_field(_name: &str) -> Option<u64> {
    None
}

/// `VmRSS:  12345 kB` → 12345 × 1024.
fn parse_status_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut parts = line[name.len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("kB") | Some("KB") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        _ => 1,
    };
    value.checked_mul(scale)
}

/// Memory the system can still give out (`MemAvailable`), in bytes; None
/// off Linux.
pub fn read_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_lines_parse() {
        let text = "Name:\tcomposer\nVmHWM:\t  2048 kB\nVmRSS:\t    1500 kB\n";
        assert_eq!(parse_status_field(text, "VmRSS:"), Some(1500 * 1024));
        assert_eq!(parse_status_field(text, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_status_field(text, "VmSwap:"), None);
        assert_eq!(parse_status_field("VmRSS: lots", "VmRSS:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn rss_is_sampled_by_node() {
        let c = MetricsCollector::new();
        let at = Duration::ZERO;
        c.emit(Event::new(
            at,
            EventKind::NodeStarted {
                node: "a".into(),
                node_type: "function_task",
            },
        ));
        c.emit(Event::new(
            at,
            EventKind::NodeFailed {
                node: "a".into(),
                error: "boom".into(),
                kind: crate::engine::error::ErrorKind::Internal,
                duration: at,
                continued: false,
            },
        ));
        let got = c.collected();
        assert_eq!(got.events.len(), 2);
        let rss = got.rss.get("a").copied().unwrap_or_default();
        assert!(rss.before.is_some_and(|b| b > 0));
        assert!(rss.after.is_some_and(|b| b > 0));
        assert!(got.peak_rss.is_some());
        assert!(read_peak_rss().is_some());
    }
}
