//! What every real provider call goes through, in order: the rate limiter
//! (waiting is reported), the call itself, retries with backoff on
//! retryable failures (each reported), AIMD feedback to the limiter, and
//! usage and cost accounting.

use super::limiter::headers::LimitReport;
use super::limiter::{Cost, Limiter, RateLimiter};
use super::pricing::PriceTable;
use super::retry::RetryPolicy;
use super::settings::ProviderSettings;
use super::{CallNote, CallObserver, CallStats, ProviderError, Usage};
use std::future::Future;
use std::sync::Arc;

pub struct CallPolicy {
    pub provider: String,
    /// The provider's limiter: in this process, or shared by every process.
    pub limiter: Arc<dyn Limiter>,
    /// Limits of single models (`rate_limits."provider/model"`), applied on
    /// top of the provider's.
    pub model_limiters: std::collections::HashMap<String, Arc<dyn Limiter>>,
    pub retry: RetryPolicy,
    pub prices: Arc<PriceTable>,
}

/// One successful call's result with what it used.
pub struct Answer<T> {
    pub value: T,
    pub usage: Option<Usage>,
    /// The reply's rate-limit headers (`None`: not an HTTP reply).
    pub limits: Option<LimitReport>,
}

impl<T> Answer<T> {
    pub fn new(value: T, usage: Option<Usage>) -> Answer<T> {
        Answer {
            value,
            usage,
            limits: None,
        }
    }
}

/// What one limiter limits: a provider (`key` = its name) or one of its
/// models (`provider/model`), with the configured per-minute budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterSpec {
    pub key: String,
    pub calls_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub max_concurrency: usize,
    /// The first calls go in a cold wave until a reply is seen.
    pub cold: bool,
}

/// Makes the limiter of a provider or model: in this process by default,
/// shared by every process with Redis.
pub type MakeLimiter = dyn Fn(LimiterSpec) -> Arc<dyn Limiter> + Send + Sync;

/// This process's own limiter.
pub fn local_limiter(spec: LimiterSpec) -> Arc<dyn Limiter> {
    Arc::new(RateLimiter::new(
        spec.calls_per_minute,
        spec.tokens_per_minute,
        spec.max_concurrency,
        spec.cold,
    ))
}

impl CallPolicy {
    pub fn new(provider: &str, settings: &ProviderSettings) -> Result<CallPolicy, String> {
        Self::with_limiters(provider, settings, &local_limiter)
    }

    pub fn with_limiters(
        provider: &str,
        settings: &ProviderSettings,
        make: &MakeLimiter,
    ) -> Result<CallPolicy, String> {
        let limit = settings.rate_limits.get(provider);
        Ok(CallPolicy {
            provider: provider.to_string(),
            limiter: make(LimiterSpec {
                key: provider.to_string(),
                calls_per_minute: limit.map(|l| l.calls_per_minute),
                tokens_per_minute: limit.map(|l| l.tokens_per_minute),
                max_concurrency: settings.max_concurrency,
                cold: true,
            }),
            model_limiters: settings
                .rate_limits
                .iter()
                .filter_map(|(key, l)| {
                    let model = key.strip_prefix(provider)?.strip_prefix('/')?;
                    let limiter = make(LimiterSpec {
                        key: key.clone(),
                        calls_per_minute: Some(l.calls_per_minute),
                        tokens_per_minute: Some(l.tokens_per_minute),
                        max_concurrency: settings.max_concurrency,
                        cold: false,
                    });
                    Some((model.to_string(), limiter))
                })
                .collect(),
            retry: RetryPolicy::from_settings(&settings.retry),
            prices: Arc::new(PriceTable::new(&settings.prices)),
        })
    }

    /// Runs `attempt` under the limiter with retries. `cost` is what the
    /// call is expected to use (prompt and `max_tokens`).
    pub async fn execute<T, F, Fut>(
        &self,
        model: &str,
        cost: Cost,
        retry: Option<&crate::recipe::policy::RetryPolicy>,
        observer: Option<&CallObserver>,
        mut attempt: F,
    ) -> Result<(T, CallStats), ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer<T>, ProviderError>>,
    {
        // The node's settings were parsed when the recipe loaded.
        let policy = retry.map_or(self.retry, |r| self.retry.with_node(r));
        let estimate = cost.total();
        let mut stats = CallStats::default();
        let note = |n: CallNote| {
            if let Some(o) = observer {
                o(n);
            }
        };
        let mut tries = 0u32;
        loop {
            tries += 1;
            let model_limiter = self.model_limiters.get(model);
            let (permit, mut waited) = self.limiter.acquire(model, cost).await;
            let model_permit = match model_limiter {
                Some(l) => {
                    let (p, w) = l.acquire(model, cost).await;
                    waited += w;
                    Some(p)
                }
                None => None,
            };
            if waited.as_millis() > 0 {
                stats.rate_limit_wait_ms += waited.as_millis() as u64;
                note(CallNote::RateLimitWait {
                    provider: self.provider.clone(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            stats.calls += 1;
            let result = attempt().await;
            // What the reply said about the limits, before the slot is freed
            // (it counts as in flight until then).
            match &result {
                Ok(answer) => self.limiter.observe(&permit, answer.limits.as_ref()),
                Err(e) if e.limits.is_some() => {
                    self.limiter.observe(&permit, e.limits.as_deref());
                }
                Err(_) => {}
            }
            drop(model_permit);
            drop(permit);
            match result {
                Ok(answer) => {
                    self.limiter.on_success();
                    if let Some(l) = model_limiter {
                        l.on_success();
                        l.settle_tokens(estimate, usage_total(&answer.usage));
                    }
                    let usage = answer.usage.clone().unwrap_or_default();
                    self.limiter
                        .settle_tokens(estimate, usage.input_tokens + usage.output_tokens);
                    stats.input_tokens += usage.input_tokens;
                    stats.output_tokens += usage.output_tokens;
                    stats.cost_usd = self.prices.cost(
                        &self.provider,
                        model,
                        usage.input_tokens,
                        usage.output_tokens,
                    );
                    return Ok((answer.value, stats));
                }
                Err(e) => {
                    // The estimate was not spent.
                    self.limiter.settle_tokens(estimate, 0);
                    if let Some(l) = model_limiter {
                        l.settle_tokens(estimate, 0);
                    }
                    if e.is_rate_limited() {
                        self.limiter.on_rate_limited();
                        if let Some(l) = model_limiter {
                            l.on_rate_limited();
                        }
                        // Every call waits out what the provider asked for,
                        // not only this one: no storm of 429s meanwhile.
                        if let Some(wait) = e.retry_after {
                            self.limiter.block_for(wait.min(policy.max_retry_after));
                        }
                    }
                    let Some(delay) = policy.next_delay(tries, &e) else {
                        let message = if tries > 1 {
                            format!("{} (after {tries} attempts)", e.message)
                        } else {
                            e.message.clone()
                        };
                        return Err(ProviderError {
                            message,
                            attempts: tries,
                            ..e
                        });
                    };
                    stats.retries += 1;
                    note(CallNote::Retry {
                        provider: self.provider.clone(),
                        attempt: tries,
                        delay_ms: delay.as_millis() as u64,
                        reason: e.message.clone(),
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

fn usage_total(usage: &Option<Usage>) -> u64 {
    usage
        .as_ref()
        .map(|u| u.input_tokens + u.output_tokens)
        .unwrap_or(0)
}

/// What a call is expected to use before it is made: about four
/// characters a token for the prompt, and the reply's `max_tokens` (or a
/// modest default).
pub fn estimate_tokens(prompt: &str, max_tokens: Option<u64>) -> Cost {
    Cost {
        input_tokens: (prompt.len() as u64).div_ceil(4),
        output_tokens: max_tokens.unwrap_or(512),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::settings::RateLimit;
    use std::time::Duration;

    async fn calls(policy: &CallPolicy, model: &str, n: usize) -> Duration {
        let start = tokio::time::Instant::now();
        for _ in 0..n {
            let done = policy
                .execute(model, Cost::default(), None, None, || async {
                    Ok::<_, ProviderError>(Answer::new((), None))
                })
                .await;
            assert!(done.is_ok());
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_limit_applies_on_top_of_its_provider() {
        let mut settings = ProviderSettings::default();
        settings.rate_limits.clear();
        settings.rate_limits.insert(
            "p/slow".into(),
            RateLimit {
                calls_per_minute: 60.0,
                tokens_per_minute: 1e9,
            },
        );
        let policy = CallPolicy::new("p", &settings).unwrap();
        // A burst of 60, then one a second: 70 calls take ten seconds.
        assert_eq!(calls(&policy, "slow", 70).await, Duration::from_secs(10));
        assert_eq!(calls(&policy, "fast", 100).await, Duration::ZERO);
    }
}
