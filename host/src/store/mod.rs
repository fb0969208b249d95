//! The embedded database: one SQLite file (default `.composer/composer.db`)
//! holding the result cache and the run store. WAL mode, so readers (a
//! `composer runs` in another terminal) do not block a run that writes.

pub mod runs;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use runs::{RunFilter, RunRecord, RunStore};

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
";

/// The open database. Every operation is short; the connection is shared
/// behind a mutex.
pub struct Database {
    pub path: PathBuf,
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (creating if needed) the database. A corrupted, locked or
    /// unwritable file is an error the caller reports as a warning and runs
    /// without a cache or store: it never stops a run.
    pub fn open(path: &Path) -> Result<Database, String> {
        let describe = |e: rusqlite::Error| format!("database `{}`: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(describe)?;
        conn.busy_timeout(Duration::from_millis(2_000))
            .map_err(describe)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(describe)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(describe)?;
        conn.execute_batch(SCHEMA).map_err(describe)?;
        Ok(Database {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` with the connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| "the database connection is unusable after a crash".to_string())?;
        f(&mut conn).map_err(|e| format!("database `{}`: {e}", self.path.display()))
    }
}

/// Seconds since the Unix epoch, as the stores record time.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
