//! PostgreSQL behind the same traits as the embedded store (SERVER.md
//! section 1): runs, events, checkpoints, replies and the work queue,
//! shared by any number of `serve` and `worker` processes. Every process
//! applies the schema on start under an advisory lock, so two starting at
//! once do not race. One extra connection per process LISTENs: queued runs
//! wake idle workers, and committed events reach the process serving an
//! SSE stream for a run another process executes.

pub mod queue;
pub mod runs;

pub use queue::PgQueue;
pub use runs::PgStore;

use super::{Change, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

/// Where notifications of queued runs go.
pub(crate) const QUEUE_CHANNEL: &str = "composer_queue";
/// Where notifications of committed events go (payload: the run id).
pub(crate) const EVENTS_CHANNEL: &str = "composer_events";

/// Any fixed number: the key of the advisory lock that serialises schema
/// changes between processes starting together.
const SCHEMA_LOCK: i64 = 0x636f_6d70_6f73_6572;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT '',
    recipe TEXT NOT NULL,
    recipe_path TEXT,
    inputs TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION,
    began_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    outputs TEXT,
    error TEXT,
    error_kind TEXT,
    failure TEXT,
    metrics TEXT,
    spec TEXT,
    idempotency_key TEXT,
    ord BIGSERIAL
);
CREATE INDEX IF NOT EXISTS runs_by_recipe ON runs (recipe, started_at);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, started_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (tenant, status);
CREATE UNIQUE INDEX IF NOT EXISTS runs_by_idempotency ON runs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS run_nodes (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    status TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    duration DOUBLE PRECISION,
    output TEXT,
    error TEXT,
    stats TEXT,
    ord BIGSERIAL,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
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
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS run_queue (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    ord BIGSERIAL
);
ALTER TABLE run_queue ADD COLUMN IF NOT EXISTS lease_token BIGINT;
CREATE INDEX IF NOT EXISTS run_queue_next ON run_queue (tenant, enqueued_at, ord);
CREATE INDEX IF NOT EXISTS run_queue_leases ON run_queue (tenant, lease_until);
";

/// The shared database: a connection pool, and the notifications the
/// listening connection receives.
pub struct PgDatabase {
    pool: Pool,
    target: String,
    changes: broadcast::Sender<Change>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// `host:port/database` of a URL, without the user and password.
fn target_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{db}")
}

impl PgDatabase {
    /// `host:port/database`, without credentials (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connects, applies the schema, and starts listening. `pool_size`
    /// connections at most are open at once (plus the listening one).
    pub async fn connect(url: &str, pool_size: usize) -> Result<Arc<PgDatabase>, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Service {
            service: "PostgreSQL",
            target: "[storage] url".into(),
            message: format!("not a PostgreSQL URL: {e}"),
        })?;
        let target = target_of(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Service {
                service: "PostgreSQL",
                target: target.clone(),
                message: format!("cannot make a connection pool: {e}"),
            })?;
        let (changes, _) = broadcast::channel(4096);
        let listener = tokio::spawn(listen(config, target.clone(), changes.clone()));
        let db = Arc::new(PgDatabase {
            pool,
            target,
            changes,
            listener,
        });
        db.migrate().await?;
        Ok(db)
    }

    /// A PostgreSQL failure, naming the server.
    pub(crate) fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Service {
            service: "PostgreSQL",
            target: self.target.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.error(e))
    }

    /// A pooled connection and `sql` prepared on it (cached per
    /// connection: prepared once, then reused).
    pub(crate) async fn prepared(
        &self,
        sql: &str,
    ) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(e))?;
        Ok((client, statement))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(|e| self.error(format!("cannot apply the schema: {e}")))?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Whether the server answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Queued runs and committed events, as other processes announce them.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// The listening connection: reconnects (with backoff) whenever it drops,
/// for as long as the process lives. Pollers back it up, so a
/// notification lost while reconnecting delays, never loses, anything.
async fn listen(
    config: tokio_postgres::Config,
    target: String,
    changes: broadcast::Sender<Change>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = message {
                            if tx.send(n).is_err() {
                                break;
                            }
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!("LISTEN {QUEUE_CHANNEL}; LISTEN {EVENTS_CHANNEL}"))
                    .await;
                match listening {
                    Ok(()) => {
                        pause = Duration::from_millis(100);
                        while let Some(n) = rx.recv().await {
                            let change = if n.channel() == EVENTS_CHANNEL {
                                Change::Events(n.payload().to_string())
                            } else {
                                Change::Queued
                            };
                            let _ = changes.send(change);
                        }
                        tracing::warn!(%target, "the PostgreSQL notification connection dropped; reconnecting");
                    }
                    Err(e) => tracing::warn!(%target, error = %e, "cannot LISTEN"),
                }
                driver.abort();
            }
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot open the PostgreSQL notification connection");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
