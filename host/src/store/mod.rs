//! Storage behind traits. The engine, the CLI and the server reach runs,
//! events, checkpoints and the work queue only through `RunStore` and
//! `WorkQueue`; the embedded default is one SQLite file (default
//! `.composer/composer.db`, WAL mode, so readers such as `composer runs` in
//! another terminal do not block a run that writes), which also holds the
//! result cache. `postgres` implements the same traits for many
//! processes; `redis` the shared cache, rate limits and quotas.

pub mod blobs;
pub mod error;
pub mod postgres;
pub mod queue;
pub mod redis;
pub mod runs;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use error::StoreError;
pub use queue::{Claim, SqliteQueue, WorkQueue};
pub use runs::{
    Created, Lease, NewRun, NodeRecord, RunFilter, RunRecord, RunStore, SqliteStore, StoredEvent,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    size INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    recipe TEXT NOT NULL,
    recipe_path TEXT,
    inputs TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outputs TEXT,
    error TEXT,
    metrics TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_recipe ON runs (recipe, started_at);
CREATE TABLE IF NOT EXISTS run_nodes (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    duration REAL,
    output TEXT,
    error TEXT,
    stats TEXT,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS run_checkpoints (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS run_replies (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    reply TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS run_queue (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    lease_token INTEGER
);
";

/// What other processes announce through a shared store.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A run was queued (or put back): idle workers look.
    Queued,
    /// This run has new committed events.
    Events(String),
}

/// Columns added to `runs` after the first release: a database written by
/// an older composer gains them on open.
const RUN_COLUMNS: [(&str, &str); 7] = [
    ("tenant", "TEXT NOT NULL DEFAULT ''"),
    ("created_at", "REAL"),
    ("began_at", "REAL"),
    ("spec", "TEXT"),
    ("idempotency_key", "TEXT"),
    ("error_kind", "TEXT"),
    ("failure", "TEXT"),
];

/// The open database. Every operation is short; the connection is shared
/// behind a mutex, and async callers reach it through `spawn_blocking`.
pub struct Database {
    pub path: PathBuf,
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (creating if needed) the database. A corrupted, locked or
    /// unwritable file is an error the caller reports as a warning and runs
    /// without a cache or store: it never stops a run.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        let describe = |e: rusqlite::Error| StoreError::sqlite(path, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let mut conn = Connection::open(path).map_err(describe)?;
        conn.busy_timeout(Duration::from_millis(2_000))
            .map_err(describe)?;
        // SQLite answers BUSY without waiting on its busy handler in a few
        // cases (two connections switching a fresh file to WAL, or one
        // recovering the WAL while another begins): those are retried
        // whole, for a bounded time, before the file counts as locked.
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        let mut pause = Duration::from_millis(5);
        loop {
            match prepare(&mut conn) {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(describe(e)),
            }
        }
        Ok(Database {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` on the blocking pool (async callers: SQLite work never runs
    /// on the async workers).
    pub async fn blocking<T: Send + 'static>(
        db: &std::sync::Arc<Database>,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Stopped(e.to_string()))?
    }

    /// Runs `f` with the connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned {
            path: self.path.clone(),
        })?;
        f(&mut conn).map_err(|e| StoreError::sqlite(&self.path, e))
    }
}

/// WAL mode, then the schema and its migrations in one IMMEDIATE
/// transaction: one process at a time creates and migrates, since two
/// opening a fresh file together (a server and a CLI run) would otherwise
/// both add the same column and the second would fail.
fn prepare(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    migrate(&tx)?;
    tx.commit()
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA table_info(runs)")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, decl) in RUN_COLUMNS {
        if !have.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {name} {decl}"))?;
        }
    }
    let mut stmt = conn.prepare("PRAGMA table_info(run_queue)")?;
    let queue: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<_>>()?;
    if !queue.iter().any(|c| c == "lease_token") {
        conn.execute_batch("ALTER TABLE run_queue ADD COLUMN lease_token INTEGER")?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS run_queue_next ON run_queue (tenant, enqueued_at);
         CREATE INDEX IF NOT EXISTS run_queue_leases ON run_queue (tenant, lease_until);
         CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, started_at);
         CREATE UNIQUE INDEX IF NOT EXISTS runs_by_idempotency ON runs (tenant, idempotency_key)
           WHERE idempotency_key IS NOT NULL;",
    )
}

/// Seconds since the Unix epoch, as the stores record time.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
