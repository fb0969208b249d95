//! Redis, shared by every process of one service (SERVER.md sections 1
//! and 5): the result cache (`cache`), provider rate limits (`limits`) and
//! tenant quotas (`quotas`). Everything that must hold under races is one
//! Lua script, run atomically by Redis, timed by Redis's own clock.
//!
//! When Redis cannot be reached, each part follows the policy written in
//! docs/decisions.md: quotas fail closed, the cache fails open, rate limits
//! fall back to each process's own limiter.

pub mod cache;
pub mod limits;
pub mod quotas;

use super::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a failure to reach Redis, calls fail at once for this long
/// instead of each waiting on a connection attempt.
const BACKOFF: Duration = Duration::from_millis(500);

/// One process's connection to Redis. Cloning shares the connection, which
/// reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    target: String,
    breaker: Arc<Breaker>,
}

/// When Redis last failed to answer, and why.
struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls fail at once.
    open_until: AtomicU64,
    last_error: Mutex<String>,
}

impl Redis {
    /// Prepares the connection; it is made on first use, so a process can
    /// start while Redis is down (it says so, and follows the policy).
    pub fn open(url: &str) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Service {
            service: "Redis",
            target: "[cache] redis_url".into(),
            message: format!("not a Redis URL: {e}"),
        })?;
        let info = client.get_connection_info();
        let target = format!("{}", info.addr());
        // Fail fast while Redis is away: callers have a policy for that,
        // and a call must not hang on reconnect attempts.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            StoreError::Service {
                service: "Redis",
                target: target.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Redis {
            conn,
            target,
            breaker: Arc::new(Breaker {
                epoch: Instant::now(),
                open_until: AtomicU64::new(0),
                last_error: Mutex::new(String::new()),
            }),
        })
    }

    /// `host:port` of the server.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Service {
            service: "Redis",
            target: self.target.clone(),
            message: e.to_string(),
        }
    }

    /// Runs one command (or script, or pipeline) on the connection. A
    /// failure to reach Redis fails the calls of the next moments at once,
    /// so a Redis that is down costs callers no waiting.
    pub(crate) async fn guarded<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = self.breaker.epoch.elapsed().as_millis() as u64;
        if now < self.breaker.open_until.load(Ordering::Relaxed) {
            let last = self
                .breaker
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            return Err(self.error(format!("unreachable ({last})")));
        }
        match call(self.conn.clone()).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    let until = self.breaker.epoch.elapsed() + BACKOFF;
                    self.breaker
                        .open_until
                        .store(until.as_millis() as u64, Ordering::Relaxed);
                    if let Ok(mut last) = self.breaker.last_error.lock() {
                        *last = e.to_string();
                    }
                }
                Err(self.error(e))
            }
        }
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.guarded(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }
}
