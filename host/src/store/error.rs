//! What can go wrong with storage: always names the database and the cause.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("database `{}`: {message}", path.display())]
    Database { path: PathBuf, message: String },
    #[error("cannot create `{}`: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("database `{}`: the connection is unusable after a crash", path.display())]
    Poisoned { path: PathBuf },
    #[error("the run store stopped: {0}")]
    Stopped(String),
    #[error("run `{0}` is not in the store")]
    UnknownRun(String),
    /// A server-backed store (PostgreSQL, Redis); `target` is its address
    /// without credentials.
    #[error("{service} at {target}: {message}")]
    Service {
        service: &'static str,
        target: String,
        message: String,
    },
}

impl StoreError {
    pub fn sqlite(path: &Path, e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
