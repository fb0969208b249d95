//! Tenant quotas shared by every process through Redis: runs per minute
//! (a sliding window, the same script as provider limits), tokens and cost
//! per day (counters that expire after their day), concurrent runs (a set
//! of leased run slots per tenant), and the lock that makes "count the
//! tenant's unfinished runs, then record the new one" one step across
//! processes. Every check that must hold under races is one script.

use super::limits::{take_window, TAKE};
use super::Redis;
use crate::store::StoreError;
use std::time::Duration;

/// Takes a slot among `ARGV[2]` for run `ARGV[1]` (or renews the one it
/// holds) for `ARGV[3]` milliseconds; slots of dead workers run out.
const RUN_SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
";

/// Deletes a lock only if this holder still has it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub struct RedisQuotas {
    redis: Redis,
    take: redis::Script,
    run_slot: redis::Script,
    unlock: redis::Script,
}

/// A held admission lock; `RedisQuotas::unlock` gives it back (it also
/// runs out by itself).
pub struct AdmissionLock {
    key: String,
    token: String,
}

fn usage_key(tenant: &str, day: i64) -> String {
    format!("composer:quota:{tenant}:usage:{day}")
}

impl RedisQuotas {
    pub fn new(redis: Redis) -> RedisQuotas {
        RedisQuotas {
            redis,
            take: redis::Script::new(TAKE),
            run_slot: redis::Script::new(RUN_SLOT),
            unlock: redis::Script::new(UNLOCK),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Counts one run in the tenant's minute if `cap` allows it; else how
    /// long until it will.
    pub async fn take_run(&self, tenant: &str, cap: u64) -> Result<Option<Duration>, StoreError> {
        let keys = [
            format!("composer:quota:{tenant}:runs"),
            format!("composer:quota:{tenant}:unused"),
        ];
        take_window(&self.redis, &self.take, &keys, cap, 0, 0).await
    }

    /// Tokens and dollars the tenant used on `day`.
    pub async fn usage(&self, tenant: &str, day: i64) -> Result<(u64, f64), StoreError> {
        let key = usage_key(tenant, day);
        let (tokens, cost): (Option<u64>, Option<f64>) = self
            .redis
            .guarded(|mut conn| async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("tokens")
                    .arg("cost")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok((tokens.unwrap_or(0), cost.unwrap_or(0.0)))
    }

    /// Adds a call's usage to the tenant's day.
    pub async fn charge(
        &self,
        tenant: &str,
        day: i64,
        tokens: u64,
        cost: f64,
    ) -> Result<(), StoreError> {
        let key = usage_key(tenant, day);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hincr(&key, "tokens", tokens)
            .ignore()
            .cmd("HINCRBYFLOAT")
            .arg(&key)
            .arg("cost")
            .arg(cost)
            .ignore()
            .expire(&key, 2 * 86_400)
            .ignore();
        self.redis
            .guarded(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// A slot among the tenant's `cap` running runs, for `lease`; false
    /// when every slot is held.
    pub async fn acquire_run(
        &self,
        tenant: &str,
        run_id: &str,
        cap: u64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.run_slot.prepare_invoke();
        invocation
            .key(format!("composer:quota:{tenant}:running"))
            .arg(run_id)
            .arg(cap)
            .arg(lease.as_millis() as u64);
        let taken: i64 = self
            .redis
            .guarded(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(taken == 1)
    }

    pub async fn release_run(&self, tenant: &str, run_id: &str) -> Result<(), StoreError> {
        let key = format!("composer:quota:{tenant}:running");
        let run_id = run_id.to_string();
        self.redis
            .guarded(|mut conn| async move {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&run_id)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Waits (up to `wait`) for the tenant's admission lock.
    pub async fn lock(&self, tenant: &str, wait: Duration) -> Result<AdmissionLock, StoreError> {
        let key = format!("composer:quota:{tenant}:admission");
        let token = format!("{:016x}", rand::random::<u64>());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (k, t) = (key.clone(), token.clone());
            let got: Option<String> = self
                .redis
                .guarded(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(&k)
                        .arg(&t)
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if got.is_some() {
                return Ok(AdmissionLock { key, token });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.redis.error(format!(
                    "tenant `{tenant}`: another process held the admission lock for {wait:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn unlock(&self, lock: AdmissionLock) {
        let mut invocation = self.unlock.prepare_invoke();
        invocation.key(&lock.key).arg(&lock.token);
        let _ = self
            .redis
            .guarded(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await;
    }
}
