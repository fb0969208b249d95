//! One run of a load test, wherever it happens, and what it reports.

use super::LoadError;
use async_trait::async_trait;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed, with the kind of failure (`provider`, `plugin_limit`, ...,
    /// the engine's `ErrorKind` names; `http` for a server that did not
    /// answer with a run).
    Failed(String),
}

/// What one run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub outcome: Outcome,
    /// From asking for the run to having its result.
    pub latency: Duration,
    /// On a server: from the run being queued to a worker starting it.
    pub queue_wait: Option<Duration>,
    pub provider_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    /// Nodes served from the cache, over nodes that could have been.
    pub cache_hits: u64,
    pub cache_eligible: u64,
}

impl Sample {
    pub fn new(outcome: Outcome, latency: Duration) -> Sample {
        Sample {
            outcome,
            latency,
            queue_wait: None,
            provider_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            cache_hits: 0,
            cache_eligible: 0,
        }
    }
}

/// Where runs happen. `run_once` is called by many users at once.
#[async_trait]
pub trait Target: Send + Sync {
    /// One run with these inputs. An `Err` stops the whole test (the
    /// recipe cannot run at all, the server refuses the key); a run that
    /// fails is an `Ok` sample with `Outcome::Failed`.
    async fn run_once(
        &self,
        inputs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Sample, LoadError>;

    /// `local` or `server`.
    fn mode(&self) -> &'static str;

    /// The recipe's name, for the report.
    fn recipe(&self) -> String;
}
