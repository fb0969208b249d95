//! Where cached results live behind the in-memory layer. The embedded
//! default is the `cache` table of the SQLite file; its writes go through a
//! writer thread that commits whatever has queued up in one transaction, so
//! the first run of a 100,000-item map is not 100,000 transactions, and its
//! reads run on the blocking pool, never on the async workers. A Redis
//! backend implements the same trait.

use crate::store::{Database, StoreError};
use async_trait::async_trait;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// One stored result.
#[derive(Debug, Clone)]
pub struct CacheRow {
    pub key: String,
    pub kind: String,
    pub value: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

#[async_trait]
pub trait CacheBackend: Send + Sync {
    /// The stored value and its expiry (unix seconds) for `key`.
    async fn get(&self, key: &str) -> Result<Option<(String, Option<i64>)>, StoreError>;
    /// Queues a result to store.
    fn put(&self, row: CacheRow);
    /// Waits until every queued result is stored.
    async fn flush(&self);
    /// The same, from synchronous code (admin commands).
    fn flush_now(&self);
    /// The first failure to store, if any.
    fn failure(&self) -> Option<String>;
}

enum Write {
    Row(CacheRow),
    Flush(mpsc::Sender<()>),
}

/// A writer thread that stores queued results in batches (whatever has
/// queued up at once); a backend says how a batch is stored. Failures are
/// kept, the first one reported: the cache goes on from memory.
pub(crate) struct BatchWriter {
    tx: Mutex<Option<mpsc::Sender<Write>>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl BatchWriter {
    pub(crate) fn start(
        mut store: impl FnMut(&[&CacheRow]) -> Result<(), String> + Send + 'static,
    ) -> BatchWriter {
        let (tx, rx) = mpsc::channel::<Write>();
        let failure = Arc::new(Mutex::new(None));
        let writer_failure = failure.clone();
        let started = std::thread::Builder::new()
            .name("composer-cache-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let rows: Vec<&CacheRow> = batch
                        .iter()
                        .filter_map(|w| match w {
                            Write::Row(r) => Some(r),
                            Write::Flush(_) => None,
                        })
                        .collect();
                    if !rows.is_empty() {
                        if let Err(e) = store(&rows) {
                            if let Ok(mut f) = writer_failure.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                    for w in batch {
                        if let Write::Flush(done) = w {
                            let _ = done.send(());
                        }
                    }
                }
            });
        let tx = match started {
            Ok(_) => Some(tx),
            Err(e) => {
                if let Ok(mut f) = failure.lock() {
                    *f = Some(format!("cannot start the cache writer: {e}"));
                }
                None
            }
        };
        BatchWriter {
            tx: Mutex::new(tx),
            failure,
        }
    }

    fn send(&self, w: Write) -> bool {
        self.tx
            .lock()
            .ok()
            .and_then(|tx| tx.as_ref().map(|tx| tx.send(w).is_ok()))
            .unwrap_or(false)
    }

    pub(crate) fn put(&self, row: CacheRow) {
        if !self.send(Write::Row(row)) {
            if let Ok(mut f) = self.failure.lock() {
                f.get_or_insert("the cache writer stopped".into());
            }
        }
    }

    pub(crate) async fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.send(Write::Flush(done)) {
            let _ = tokio::task::spawn_blocking(move || wait.recv()).await;
        }
    }

    pub(crate) fn flush_now(&self) {
        let (done, wait) = mpsc::channel();
        if self.send(Write::Flush(done)) {
            let _ = wait.recv();
        }
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

pub struct SqliteBackend {
    db: Arc<Database>,
    writer: BatchWriter,
}

impl SqliteBackend {
    pub fn new(db: Arc<Database>) -> SqliteBackend {
        let writer_db = db.clone();
        let writer = BatchWriter::start(move |rows| store_rows(&writer_db, rows));
        SqliteBackend { db, writer }
    }
}

fn store_rows(db: &Database, rows: &[&CacheRow]) -> Result<(), String> {
    db.with(|c| {
        let tx = c.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO cache (key, kind, value, created_at, expires_at, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                stmt.execute(rusqlite::params![
                    r.key,
                    r.kind,
                    r.value,
                    r.created_at,
                    r.expires_at,
                    r.value.len() as i64
                ])?;
            }
        }
        tx.commit()
    })
    .map_err(|e| e.to_string())
}

#[async_trait]
impl CacheBackend for SqliteBackend {
    async fn get(&self, key: &str) -> Result<Option<(String, Option<i64>)>, StoreError> {
        let (db, key) = (self.db.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            db.with(|c| {
                let mut stmt =
                    c.prepare_cached("SELECT value, expires_at FROM cache WHERE key = ?1")?;
                let mut rows = stmt.query([key])?;
                match rows.next()? {
                    Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(|e| StoreError::Stopped(e.to_string()))?
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
