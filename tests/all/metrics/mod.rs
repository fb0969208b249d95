//! Metrics, traces and reports (`host/src/metrics`): the trace file of a
//! real run, the figures of known runs, the critical path of a diamond,
//! report figures over hand-made records, and `composer run --metrics` /
//! `--trace` / `composer report` through the real binary.
//!
//! Real runs go through the engine tests' `Setup` (mock provider, native
//! functions) and their events feed `RunMetrics::compute` and
//! `chrome_trace`, exactly as the `MetricsCollector` sink does.

mod cli;
mod model;
mod report;
mod trace;

use crate::engine::{Ran, Setup};
use async_trait::async_trait;
use composer::engine::plan::Plan;
use composer::metrics::RunMetrics;
use composer::providers::{
    CallNote, CallStats, LanguageProvider, LanguageRequest, LanguageResponse, ProviderError, Usage,
};
use composer::recipe::model::Recipe;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long `Flaky` waits for its pretend rate limiter, and its retry delay.
pub const WAIT_MS: u64 = 30;
pub const RETRY_MS: u64 = 40;

/// A language provider that behaves like an HTTP provider behind the call
/// policy: it waits `WAIT_MS` for the rate limiter, its first attempt gets
/// a 429, and it succeeds after a `RETRY_MS` delay. It reports both through
/// the request's observer, as the policy does.
pub struct Flaky;

#[async_trait]
impl LanguageProvider for Flaky {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError> {
        let note = |n: CallNote| {
            if let Some(o) = &request.observer {
                o(n);
            }
        };
        tokio::time::sleep(Duration::from_millis(WAIT_MS)).await;
        note(CallNote::RateLimitWait {
            provider: "flaky".into(),
            waited_ms: WAIT_MS,
        });
        note(CallNote::Retry {
            provider: "flaky".into(),
            attempt: 1,
            delay_ms: RETRY_MS,
            reason: "HTTP 429 rate limited: slow down".into(),
        });
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
        let text = format!("flaky: {}", request.prompt);
        Ok(LanguageResponse {
            stats: CallStats {
                calls: 2,
                retries: 1,
                rate_limit_wait_ms: WAIT_MS,
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: Some(0.25),
            },
            usage: Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
            }),
            text,
            mock: false,
        })
    }
}

/// `Setup` with the `flaky` provider added.
pub fn with_flaky(mut setup: Setup) -> Setup {
    setup
        .services
        .providers
        .add_language("flaky", Arc::new(Flaky));
    setup
}

pub fn plan_of(recipe: &Arc<Recipe>) -> Plan {
    match Plan::build(recipe.clone()) {
        Ok(p) => p,
        Err(d) => panic!("no plan: {d:?}"),
    }
}

/// Runs `setup` and computes its metrics from the events.
pub async fn run_with_metrics(setup: Setup) -> (Ran, RunMetrics) {
    let plan = plan_of(&setup.recipe);
    let ran = setup.run().await;
    let metrics = RunMetrics::compute(&ran.events, &plan, &HashMap::new(), None);
    (ran, metrics)
}

/// The metrics of one node, which must be there.
pub fn node<'a>(m: &'a RunMetrics, path: &str) -> &'a composer::metrics::NodeMetrics {
    m.nodes
        .iter()
        .find(|n| n.node == path)
        .unwrap_or_else(|| panic!("no metrics for `{path}` in {:#?}", m.nodes))
}
