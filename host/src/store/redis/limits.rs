//! Provider rate limits shared by every process through Redis. Configured
//! `calls_per_minute` and `tokens_per_minute` are sliding windows of one
//! minute kept in Redis (a sorted set of the calls made, by Redis's clock),
//! so the processes together never pass them: not a minute's worth per
//! process. What each process learns from replies (the provider's
//! rate-limit headers, `Retry-After`, the AIMD cap on calls in flight)
//! stays in its own limiter, since every process hears the provider.
//!
//! While Redis cannot be reached, calls go through a local limiter holding
//! the configured limits (each process alone), with one warning.

use super::Redis;
use crate::providers::limiter::headers::LimitReport;
use crate::providers::limiter::{Cost, Limiter, Slot};
use crate::providers::policy::{local_limiter, LimiterSpec};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Takes one call (and its tokens) from the windows if they have room;
/// else answers how many milliseconds until they will.
pub(crate) const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[5])
local calls_limit = tonumber(ARGV[1])
local tokens_limit = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local wait = 0
if calls_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= calls_limit then
    local oldest = redis.call('ZRANGE', KEYS[1], n - calls_limit, n - calls_limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if tokens_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], '^(%d+):'))
  end
  if used > 0 and used + tokens > tokens_limit then
    local need = used + tokens - tokens_limit
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
      if freed >= need then
        wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
        break
      end
    end
  end
end
if wait > 0 then
  return math.max(1, wait)
end
if calls_limit > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
end
if tokens_limit > 0 then
  redis.call('ZADD', KEYS[2], now, tokens .. ':' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[2], window)
end
return 0
";

const WINDOW_MS: u64 = 60_000;

/// The limiter of one provider or model, shared through Redis.
pub struct SharedLimiter {
    redis: Redis,
    script: redis::Script,
    spec: LimiterSpec,
    /// The windows' keys in Redis: calls, tokens.
    keys: [String; 2],
    /// What this process learns from replies.
    learned: Arc<dyn Limiter>,
    /// The configured limits in this process alone, while Redis is away.
    fallback: Arc<dyn Limiter>,
    warned: AtomicBool,
}

impl SharedLimiter {
    pub fn new(redis: Redis, spec: LimiterSpec) -> SharedLimiter {
        let learned = local_limiter(LimiterSpec {
            calls_per_minute: None,
            tokens_per_minute: None,
            ..spec.clone()
        });
        let fallback = local_limiter(LimiterSpec {
            cold: false,
            ..spec.clone()
        });
        let keys = [
            format!("composer:limit:{}:calls", spec.key),
            format!("composer:limit:{}:tokens", spec.key),
        ];
        SharedLimiter {
            redis,
            script: redis::Script::new(TAKE),
            keys,
            spec,
            learned,
            fallback,
            warned: AtomicBool::new(false),
        }
    }

    /// The limiter maker for `Providers`: shared windows for every
    /// provider and model that has configured limits.
    pub fn maker(redis: Redis) -> impl Fn(LimiterSpec) -> Arc<dyn Limiter> + Send + Sync {
        move |spec: LimiterSpec| {
            if spec.calls_per_minute.is_none() && spec.tokens_per_minute.is_none() {
                return local_limiter(spec);
            }
            Arc::new(SharedLimiter::new(redis.clone(), spec)) as Arc<dyn Limiter>
        }
    }

    /// `None`: taken; `Some(wait)`: the windows are full for that long.
    async fn take(&self, tokens: u64) -> Result<Option<Duration>, crate::store::StoreError> {
        let limit = |l: Option<f64>| l.filter(|l| l.is_finite() && *l >= 1.0).unwrap_or(0.0) as u64;
        take_window(
            &self.redis,
            &self.script,
            &self.keys,
            limit(self.spec.calls_per_minute),
            limit(self.spec.tokens_per_minute),
            tokens,
        )
        .await
    }
}

/// Runs `TAKE` (`script`) on the windows `keys` (calls, tokens): one entry
/// and `tokens` are taken if `calls_limit` and `tokens_limit` (0: none)
/// leave room; else answers how long until they will.
pub(crate) async fn take_window(
    redis: &Redis,
    script: &redis::Script,
    keys: &[String; 2],
    calls_limit: u64,
    tokens_limit: u64,
    tokens: u64,
) -> Result<Option<Duration>, crate::store::StoreError> {
    let member = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let [calls_key, tokens_key] = keys;
    let mut invocation = script.prepare_invoke();
    invocation
        .key(calls_key)
        .key(tokens_key)
        .arg(calls_limit)
        .arg(tokens_limit)
        .arg(tokens)
        .arg(member)
        .arg(WINDOW_MS);
    let wait_ms: u64 = redis
        .guarded(|mut conn| async move { invocation.invoke_async(&mut conn).await })
        .await?;
    Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
}

#[async_trait]
impl Limiter for SharedLimiter {
    async fn acquire(&self, model: &str, cost: Cost) -> (Slot, Duration) {
        let (slot, mut waited) = self.learned.acquire(model, cost).await;
        loop {
            match self.take(cost.total()).await {
                Ok(None) => return (slot, waited),
                Ok(Some(wait)) => {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(limits = %self.spec.key, error = %e,
                            "shared rate limits are unreachable; this process keeps the configured limits alone until Redis answers");
                    }
                    let (local, w) = self.fallback.acquire(model, cost).await;
                    let both = Slot::new(model, cost, move |_, _| {
                        drop(slot);
                        drop(local);
                    });
                    return (both, waited + w);
                }
            }
        }
    }

    fn observe(&self, slot: &Slot, report: Option<&LimitReport>) {
        self.learned.observe(slot, report);
    }

    fn block_for(&self, wait: Duration) {
        self.learned.block_for(wait);
    }

    fn settle_tokens(&self, estimated: u64, actual: u64) {
        self.fallback.settle_tokens(estimated, actual);
    }

    fn on_rate_limited(&self) {
        self.learned.on_rate_limited();
    }

    fn on_success(&self) {
        self.learned.on_success();
    }

    fn concurrency_limit(&self) -> usize {
        self.learned.concurrency_limit()
    }
}
