//! Metrics, traces and reports of runs, all computed from the event stream.
//!
//! - `collector`: an event sink that keeps a run's events and samples the
//!   process's memory at node boundaries;
//! - `model`: per-node and per-run figures (`RunMetrics`), with the
//!   critical path through the plan;
//! - `render`: the `composer run --metrics` table;
//! - `trace`: Chrome trace-event files for Perfetto (`--trace`);
//! - `report`: figures over many stored runs (`composer report`).

pub mod collector;
pub mod model;
pub mod render;
pub mod report;
pub mod trace;

pub use collector::MetricsCollector;
pub use model::{NodeMetrics, NodeStatus, RunMetrics};
