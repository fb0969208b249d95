//! The result cache: content-addressed results of provider calls (by
//! default) and function calls (when the function is pure or the node says
//! `cache: true`), in a bounded in-memory layer (moka, weighed in bytes) in
//! front of the SQLite store. Identical calls in flight at the same time
//! are made once (single flight). Audio is kept by content hash in a blob
//! folder beside the database and copied into each run that reuses it.

pub mod backend;
pub mod key;

use crate::store::Database;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `[cache]` in composer.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    pub enabled: bool,
    /// The database (cache and run store).
    pub path: PathBuf,
    /// Bytes the in-memory layer may hold.
    pub memory_bytes: u64,
    /// How long results stay valid unless a node says otherwise
    /// (`"7d"`, `"12h"`; empty: forever).
    pub ttl: String,
    /// `redis://host:port/`: results, provider rate limits and tenant
    /// quotas shared by every `serve`/`worker` process through Redis.
    pub redis_url: Option<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            path: PathBuf::from(".composer/composer.db"),
            memory_bytes: 64 * 1024 * 1024,
            ttl: "7d".into(),
            redis_url: None,
        }
    }
}

/// What a run does with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Read and write (default).
    #[default]
    Use,
    /// Do not read; write fresh results (`--refresh`).
    Refresh,
    /// Neither read nor write (`--no-cache`).
    Off,
}

/// A node's `cache:` setting, parsed when the recipe loaded.
pub use crate::recipe::policy::CachePolicy;

/// Seconds since the epoch; injectable so tests can expire entries.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::store::unix_now() as u64
    }
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at: Option<u64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
}

pub struct ResultCache {
    memory: moka::future::Cache<String, Arc<Entry>>,
    db: Option<Arc<Database>>,
    blobs: Option<PathBuf>,
    default_ttl: Option<Duration>,
    /// Where results live behind the memory layer (None: memory only).
    backend: Option<Arc<dyn backend::CacheBackend>>,
    clock: Arc<dyn Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The first failure to read or write the store, reported by the CLI.
    failure: std::sync::Mutex<Option<String>>,
    /// Keys computed afresh under `--refresh` by this process: computed
    /// once, then shared like any result (and identical calls meanwhile
    /// wait for that one).
    refreshed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl ResultCache {
    /// A cache over `db` (None: memory only).
    pub fn new(settings: &CacheSettings, db: Option<Arc<Database>>) -> Result<ResultCache, String> {
        let default_ttl = if settings.ttl.trim().is_empty() {
            None
        } else {
            Some(
                crate::providers::retry::parse_duration_text(&settings.ttl)
                    .map_err(|e| format!("`cache.ttl`: {e}"))?,
            )
        };
        let blobs = db
            .as_ref()
            .and_then(|d| d.path.parent().map(|p| p.join("blobs")));
        Ok(ResultCache {
            memory: moka::future::Cache::builder()
                .max_capacity(settings.memory_bytes)
                .weigher(|k: &String, v: &Arc<Entry>| {
                    let size = k.len() + v.value.to_string().len();
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .build(),
            backend: db.clone().map(|d| {
                Arc::new(backend::SqliteBackend::new(d)) as Arc<dyn backend::CacheBackend>
            }),
            db,
            blobs,
            default_ttl,
            clock: Arc::new(SystemClock),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            failure: std::sync::Mutex::new(None),
            refreshed: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Results live in `backend` (Redis) instead of the database.
    pub fn with_backend(mut self, backend: Arc<dyn backend::CacheBackend>) -> ResultCache {
        self.backend = Some(backend);
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ResultCache {
        self.clock = clock;
        self
    }

    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The first store failure seen (the cache then works from memory).
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .or_else(|| self.backend.as_ref().and_then(|b| b.failure()))
    }

    fn note_failure(&self, e: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
    }

    fn expired(&self, e: &Entry) -> bool {
        e.expires_at.is_some_and(|t| t <= self.clock.now())
    }

    async fn db_get(&self, key: &str) -> Option<Entry> {
        let backend = self.backend.as_ref()?;
        let (text, expires_at) = match backend.get(key).await {
            Ok(row) => row?,
            Err(e) => {
                self.note_failure(e.to_string());
                return None;
            }
        };
        let entry = Entry {
            value: serde_json::from_str(&text).ok()?,
            expires_at: expires_at.and_then(|t| u64::try_from(t).ok()),
        };
        (!self.expired(&entry)).then_some(entry)
    }

    fn db_put(&self, key: &str, kind: &str, e: &Entry) {
        if let Some(backend) = &self.backend {
            backend.put(backend::CacheRow {
                key: key.to_string(),
                kind: kind.to_string(),
                value: e.value.to_string(),
                created_at: self.clock.now() as i64,
                expires_at: e.expires_at.map(|t| t as i64),
            });
        }
    }

    /// Waits until every result so far is in the store.
    pub async fn flush(&self) {
        if let Some(backend) = &self.backend {
            backend.flush().await;
        }
    }

    /// The cached result for `key`, or `compute`'s (then stored). Returns
    /// whether the value came from the cache (or from an identical call
    /// made at the same time).
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &str,
        kind: &str,
        ttl: Option<Duration>,
        mode: CacheMode,
        compute: F,
    ) -> Result<(Value, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let ttl = ttl.or(self.default_ttl);
        let expires_at = |now: u64| ttl.map(|t| now + t.as_secs().max(1));
        match mode {
            CacheMode::Off => return compute().await.map(|v| (v, false)),
            CacheMode::Refresh => {}
            CacheMode::Use => {
                if let Some(e) = self.memory.get(key).await {
                    if self.expired(&e) {
                        self.memory.invalidate(key).await;
                    }
                }
            }
        }
        // Refreshing: what an earlier process stored is not read, and what
        // memory held before this process refreshed the key is dropped;
        // identical calls still make one call between them.
        let refresh = mode == CacheMode::Refresh;
        if refresh {
            let first = self
                .refreshed
                .lock()
                .map(|mut keys| keys.insert(key.to_string()))
                .unwrap_or(true);
            if first {
                self.memory.invalidate(key).await;
            }
        }
        let computed = Arc::new(AtomicBool::new(false));
        let ran = computed.clone();
        let entry = self
            .memory
            .try_get_with(key.to_string(), async move {
                if !refresh {
                    if let Some(e) = self.db_get(key).await {
                        return Ok(Arc::new(e));
                    }
                }
                ran.store(true, Ordering::Relaxed);
                let value = compute().await?;
                let e = Entry {
                    value,
                    expires_at: expires_at(self.clock.now()),
                };
                self.db_put(key, kind, &e);
                Ok::<_, E>(Arc::new(e))
            })
            .await
            .map_err(|e: Arc<E>| (*e).clone())?;
        let hit = !computed.load(Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        Ok((entry.value.clone(), hit))
    }

    /// Keeps a file (audio) by content hash; returns its blob name.
    pub fn put_blob(&self, file: &Path) -> Option<String> {
        let dir = self.blobs.as_ref()?;
        let bytes = std::fs::read(file).ok()?;
        let hash = crate::plugins::runtime::content_hash(&bytes);
        let ext = file
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if ext.is_empty() {
            hash
        } else {
            format!("{hash}.{ext}")
        };
        let dest = dir.join(&name);
        if !dest.exists() {
            std::fs::create_dir_all(dir).ok()?;
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&tmp, &bytes).ok()?;
            std::fs::rename(&tmp, &dest).ok()?;
        }
        Some(name)
    }

    /// Puts a blob into a run's folder as `stem.<ext>`; returns the path.
    pub fn restore_blob(&self, name: &str, stem: &Path) -> Option<PathBuf> {
        let src = self.blobs.as_ref()?.join(name);
        let ext = Path::new(name)
            .extension()
            .map(|e| e.to_string_lossy().into_owned());
        let dest = match ext {
            Some(ext) => stem.with_extension(ext),
            None => stem.to_path_buf(),
        };
        if std::fs::hard_link(&src, &dest).is_err() {
            std::fs::copy(&src, &dest).ok()?;
        }
        Some(dest)
    }

    /// Entries, bytes and expired entries by kind, from the store.
    pub fn stats(&self) -> Result<Vec<(String, u64, u64, u64)>, String> {
        if let Some(b) = &self.backend {
            b.flush_now();
        }
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        let now = self.clock.now() as i64;
        db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, COUNT(*), COALESCE(SUM(size), 0), SUM(CASE WHEN expires_at IS NOT NULL AND expires_at <= ?1 THEN 1 ELSE 0 END)
                 FROM cache GROUP BY kind ORDER BY kind",
            )?;
            let rows = stmt.query_map([now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64))
            })?;
            rows.collect()
        })
        .map_err(|e| e.to_string())
    }

    /// Removes every entry (and blob). Returns how many entries went.
    pub async fn clear(&self) -> Result<u64, String> {
        self.flush().await;
        self.memory.invalidate_all();
        let n = match &self.db {
            Some(db) => db
                .with(|c| c.execute("DELETE FROM cache", []))
                .map_err(|e| e.to_string())? as u64,
            None => 0,
        };
        if let Some(dir) = &self.blobs {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(n)
    }

    /// Removes expired entries and blobs no entry names. Returns how many
    /// entries went.
    pub fn prune(&self) -> Result<u64, String> {
        if let Some(b) = &self.backend {
            b.flush_now();
        }
        let Some(db) = &self.db else {
            return Ok(0);
        };
        let now = self.clock.now() as i64;
        let n = db
            .with(|c| {
                c.execute(
                    "DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                    [now],
                )
            })
            .map_err(|e| e.to_string())? as u64;
        if let Some(dir) = &self.blobs {
            let used: Vec<String> = db
                .with(|c| {
                    let mut stmt =
                        c.prepare("SELECT value FROM cache WHERE value LIKE '%\"blob\"%'")?;
                    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                    rows.collect()
                })
                .map_err(|e| e.to_string())?;
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !used.iter().any(|v| v.contains(&name)) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Ok(n)
    }
}
