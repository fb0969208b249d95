//! The result cache in Redis: one key per result (`composer:cache:<key>`),
//! expiring with the result. Writes are queued and sent in pipelines by the
//! cache's writer thread; a Redis that cannot be reached is a cache miss
//! and an unstored result (the cache fails open), reported once.

use super::Redis;
use crate::cache::backend::{BatchWriter, CacheBackend, CacheRow};
use crate::store::{unix_now, StoreError};
use async_trait::async_trait;

const PREFIX: &str = "composer:cache:";

pub struct RedisCache {
    redis: Redis,
    writer: BatchWriter,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    kind: String,
    value: String,
    expires_at: Option<i64>,
}

impl RedisCache {
    /// Needs a tokio runtime (its writer sends through it).
    pub fn new(redis: Redis) -> Result<RedisCache, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| redis.error(e))?;
        let writer_redis = redis.clone();
        let writer =
            BatchWriter::start(move |rows| runtime.block_on(store_rows(&writer_redis, rows)));
        Ok(RedisCache { redis, writer })
    }
}

async fn store_rows(redis: &Redis, rows: &[&CacheRow]) -> Result<(), String> {
    let now = unix_now() as i64;
    let mut pipe = redis::pipe();
    for r in rows {
        let stored = Stored {
            kind: r.kind.clone(),
            value: r.value.clone(),
            expires_at: r.expires_at,
        };
        let Ok(text) = serde_json::to_string(&stored) else {
            continue;
        };
        let key = format!("{PREFIX}{}", r.key);
        match r.expires_at {
            Some(at) if at <= now => {}
            Some(at) => {
                pipe.set_ex(key, text, u64::try_from(at - now).unwrap_or(1))
                    .ignore();
            }
            None => {
                pipe.set(key, text).ignore();
            }
        }
    }
    redis
        .guarded(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
        .await
        .map_err(|e| e.to_string())
}

#[async_trait]
impl CacheBackend for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<(String, Option<i64>)>, StoreError> {
        let key = format!("{PREFIX}{key}");
        let text: Option<String> = self
            .redis
            .guarded(
                |mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await },
            )
            .await?;
        Ok(text
            .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
            .map(|s| (s.value, s.expires_at)))
    }

    fn put(&self, row: CacheRow) {
        self.writer.put(row);
    }

    async fn flush(&self) {
        self.writer.flush().await;
    }

    fn flush_now(&self) {
        self.writer.flush_now();
    }

    fn failure(&self) -> Option<String> {
        self.writer.failure()
    }
}
