//! `RunTally`: the event sink of one load-test run. It keeps only counters
//! (no events), so thousands of runs in flight cost little, and counts
//! like `metrics::model` does: provider calls, tokens and cost over
//! top-level nodes (whose figures include their sub-recipe's and items'),
//! cache hits over nodes at any depth that call a provider or a function.

use super::target::Sample;
use crate::engine::events::{Event, EventKind, EventSink};
use crate::metrics::model::{calls_out, find_node, parent_of};
use crate::recipe::model::Recipe;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
    cache_hits: u64,
    cache_eligible: u64,
}

pub struct RunTally {
    recipe: Arc<Recipe>,
    counts: Mutex<Counts>,
}

impl RunTally {
    pub fn new(recipe: Arc<Recipe>) -> Arc<RunTally> {
        Arc::new(RunTally {
            recipe,
            counts: Mutex::default(),
        })
    }

    /// Copies the counts into a sample.
    pub fn fill(&self, sample: &mut Sample) {
        let c = self.counts.lock().map(|c| *c).unwrap_or_default();
        sample.provider_calls = c.calls;
        sample.input_tokens = c.input_tokens;
        sample.output_tokens = c.output_tokens;
        sample.cost_usd = c.cost_usd;
        sample.cache_hits = c.cache_hits;
        sample.cache_eligible = c.cache_eligible;
    }
}

impl EventSink for RunTally {
    fn emit(&self, event: Event) {
        let EventKind::NodeFinished {
            node,
            stats,
            cached,
            ..
        } = &event.kind
        else {
            return;
        };
        let eligible = find_node(&self.recipe, node).is_some_and(|n| calls_out(&n.kind));
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        if parent_of(node).is_none() {
            c.calls += u64::from(stats.calls);
            c.input_tokens += stats.input_tokens;
            c.output_tokens += stats.output_tokens;
            c.cost_usd = match (c.cost_usd, stats.cost_usd) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
        }
        if eligible {
            c.cache_eligible += 1;
            c.cache_hits += u64::from(*cached);
        }
    }
}
