//! The run store: every run (tenant, recipe, inputs, status, final
//! outputs, failure, metrics), its nodes, events, checkpoints and human
//! replies. `RunStore` is the seam; `SqliteStore` the embedded default.
//!
//! A run's writes go through a journal whose writer thread commits
//! whatever has queued up in one transaction (group commit), so a
//! 100,000-item map is not 100,000 transactions, and a checkpoint's future
//! resolves only once its transaction is on disk.

use super::{unix_now, Database, StoreError};
use crate::engine::durable::{Journal, RunEnd, StoredOutput};
use crate::engine::error::Failure;
use crate::engine::events::{Event, EventKind, EventSink, RunStatus};
use async_trait::async_trait;
use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One stored run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    /// Empty for runs of the command line.
    pub tenant: String,
    pub recipe: String,
    pub recipe_path: Option<String>,
    pub inputs: serde_json::Value,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed`, `cancelled`
    /// (a `running` run whose process died stays `running` until it is
    /// continued).
    pub status: String,
    /// When the run was created (queued or started).
    pub started_at: f64,
    /// When it first began executing.
    pub began_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub outputs: Option<serde_json::Value>,
    /// The failure's message.
    pub error: Option<String>,
    /// The failure with its kind, node, limit or quota.
    pub failure: Option<Failure>,
    pub metrics: Option<serde_json::Value>,
    /// What continuing the run needs (recipe source, model override, ...).
    pub spec: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
}

impl RunRecord {
    pub fn run_status(&self) -> RunStatus {
        RunStatus::parse(&self.status).unwrap_or(RunStatus::Failed)
    }
}

/// One node of a stored run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub node: String,
    pub status: String,
    pub at: f64,
    pub duration: Option<f64>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub stats: Option<serde_json::Value>,
}

/// One stored event: its sequence number and its JSON (as emitted).
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this tenant's runs (None: every run).
    pub tenant: Option<String>,
    pub recipe: Option<String>,
    pub status: Option<String>,
    /// Unix seconds.
    pub since: Option<f64>,
    pub limit: Option<usize>,
}

/// A run to record.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub tenant: String,
    pub recipe: String,
    pub recipe_path: Option<String>,
    pub inputs: serde_json::Value,
    pub spec: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub status: RunStatus,
}

/// `create_run`'s answer: a new run, or the one an idempotency key named.
#[derive(Debug, Clone)]
pub enum Created {
    New(RunRecord),
    Existing(RunRecord),
}

/// Runs, their events, checkpoints and replies.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Records a new run, unless the tenant already has one with the same
    /// idempotency key (then that one is returned).
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError>;
    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;
    async fn nodes(&self, id: &str) -> Result<Vec<NodeRecord>, StoreError>;
    async fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// Events with a sequence number above `after`, in order.
    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError>;
    async fn last_seq(&self, id: &str) -> Result<u64, StoreError>;
    /// The results finished nodes left, by checkpoint key.
    async fn checkpoints(&self, id: &str) -> Result<HashMap<String, StoredOutput>, StoreError>;
    async fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError>;
    async fn add_reply(
        &self,
        id: &str,
        node: &str,
        reply: &serde_json::Value,
    ) -> Result<(), StoreError>;
    async fn replies(&self, id: &str) -> Result<HashMap<String, serde_json::Value>, StoreError>;
    /// Opens the journal an attempt of run `id` writes through.
    /// `restored` are the checkpoints of earlier attempts; `lease`, the
    /// claim a worker's attempt runs under (None: a run nobody else can
    /// take over).
    fn journal(
        &self,
        id: &str,
        restored: HashMap<String, StoredOutput>,
        lease: Option<Lease>,
    ) -> Result<Arc<dyn Journal>, StoreError>;
}

/// The claim a worker's attempt runs under. Its journal stores a batch
/// only while the queue still holds `token` for the run (checked in the
/// batch's own transaction); once another worker has taken the run over,
/// the attempt's writes are dropped, so a late attempt can neither
/// overwrite the new one's progress nor its end, and `lost` is cancelled
/// so it starts no more nodes.
#[derive(Clone)]
pub struct Lease {
    pub token: i64,
    pub lost: tokio_util::sync::CancellationToken,
}

/// A journal's side of its lease.
pub(crate) struct Fencing {
    lease: Option<Lease>,
    lost: bool,
}

impl Fencing {
    pub(crate) fn new(lease: Option<Lease>) -> Fencing {
        Fencing { lease, lost: false }
    }

    /// The token a batch must find in the queue (None: no check).
    pub(crate) fn token(&self) -> Option<i64> {
        self.lease.as_ref().map(|l| l.token)
    }

    /// The lease has passed to another attempt: store nothing more.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    pub(crate) fn lose(&mut self, run_id: &str) {
        if self.lost {
            return;
        }
        self.lost = true;
        tracing::warn!(run = %run_id,
            "another worker has taken this run over; this attempt stores nothing more and starts no more nodes");
        if let Some(lease) = &self.lease {
            lease.lost.cancel();
        }
    }
}

/// The embedded run store.
pub struct SqliteStore {
    db: Arc<Database>,
}

const RUN_COLUMNS: &str = "id, tenant, recipe, recipe_path, inputs, status, started_at, began_at, finished_at, outputs, error, failure, metrics, spec, idempotency_key";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    };
    Ok(RunRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        recipe: r.get(2)?,
        recipe_path: r.get(3)?,
        inputs: json(4)?.unwrap_or(serde_json::Value::Null),
        status: r.get(5)?,
        started_at: r.get(6)?,
        began_at: r.get(7)?,
        finished_at: r.get(8)?,
        outputs: json(9)?,
        error: r.get(10)?,
        failure: json(11)?.and_then(|v| serde_json::from_value(v).ok()),
        metrics: json(12)?,
        spec: json(13)?,
        idempotency_key: r.get(14)?,
    })
}

impl SqliteStore {
    pub fn new(db: Arc<Database>) -> SqliteStore {
        SqliteStore { db }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Runs `f` on a blocking thread: SQLite work never runs on the async
    /// workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Database::blocking(&self.db, f).await
    }

    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        list_runs(&self.db, filter)
    }

    pub fn get(&self, run_id: &str) -> Result<Option<(RunRecord, Vec<NodeRecord>)>, StoreError> {
        let Some(run) = get_run(&self.db, run_id)? else {
            return Ok(None);
        };
        Ok(Some((run, node_rows(&self.db, run_id)?)))
    }

    /// A run's events, in order.
    pub fn events(&self, run_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        Ok(event_rows(&self.db, run_id, 0)?
            .into_iter()
            .map(|e| e.event)
            .collect())
    }
}

fn list_runs(db: &Database, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
    db.with(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR recipe = ?1) AND (?2 IS NULL OR started_at >= ?2)
               AND (?3 IS NULL OR tenant = ?3) AND (?4 IS NULL OR status = ?4)
             ORDER BY started_at DESC, rowid DESC LIMIT ?5"
        ))?;
        let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
        let rows = stmt.query_map(
            params![
                filter.recipe,
                filter.since,
                filter.tenant,
                filter.status,
                limit
            ],
            run_row,
        )?;
        rows.collect()
    })
}

fn get_run(db: &Database, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
    db.with(|c| {
        c.query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            params![run_id],
            run_row,
        )
        .optional()
    })
}

fn node_rows(db: &Database, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
    db.with(|c| {
        let mut stmt = c.prepare(
            "SELECT node, status, at, duration, output, error, stats FROM run_nodes WHERE run_id = ?1 ORDER BY at, rowid",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
                Ok(r.get::<_, Option<String>>(i)?
                    .and_then(|t| serde_json::from_str(&t).ok()))
            };
            Ok(NodeRecord {
                node: r.get(0)?,
                status: r.get(1)?,
                at: r.get(2)?,
                duration: r.get(3)?,
                output: json(4)?,
                error: r.get(5)?,
                stats: json(6)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })
}

fn event_rows(db: &Database, run_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
    db.with(|c| {
        let mut stmt = c.prepare(
            "SELECT seq, event FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![run_id, after as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|(seq, text)| {
                Some(StoredEvent {
                    seq: seq as u64,
                    event: serde_json::from_str(&text).ok()?,
                })
            })
            .collect())
    })
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        self.blocking(move |db| {
            if let Some(key) = &run.idempotency_key {
                let existing = db.with(|c| {
                    c.query_row(
                        &format!(
                            "SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND idempotency_key = ?2"
                        ),
                        params![run.tenant, key],
                        run_row,
                    )
                    .optional()
                })?;
                if let Some(r) = existing {
                    return Ok(Created::Existing(r));
                }
            }
            let now = unix_now();
            let began = (run.status == RunStatus::Running).then_some(now);
            db.with(|c| {
                c.execute(
                    "INSERT INTO runs (id, tenant, recipe, recipe_path, inputs, status, started_at, created_at, began_at, spec, idempotency_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
                    params![
                        run.id,
                        run.tenant,
                        run.recipe,
                        run.recipe_path,
                        run.inputs.to_string(),
                        run.status.as_str(),
                        now,
                        began,
                        run.spec.to_string(),
                        run.idempotency_key
                    ],
                )
            })?;
            get_run(db, &run.id)?
                .map(Created::New)
                .ok_or_else(|| StoreError::UnknownRun(run.id.clone()))
        })
        .await
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| get_run(db, &id)).await
    }

    async fn nodes(&self, id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| node_rows(db, &id)).await
    }

    async fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.blocking(move |db| list_runs(db, &filter)).await
    }

    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| event_rows(db, &id, after)).await
    }

    async fn last_seq(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            db.with(|c| {
                c.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?1",
                    params![id],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map(|n| n as u64)
        })
        .await
    }

    async fn checkpoints(&self, id: &str) -> Result<HashMap<String, StoredOutput>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            db.with(|c| {
                let mut stmt =
                    c.prepare("SELECT key, output FROM run_checkpoints WHERE run_id = ?1")?;
                let rows = stmt.query_map(params![id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                Ok(rows
                    .filter_map(Result::ok)
                    .filter_map(|(k, text)| Some((k, serde_json::from_str(&text).ok()?)))
                    .collect())
            })
        })
        .await
    }

    async fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            db.with(|c| {
                let finished = status.is_final().then(unix_now);
                c.execute(
                    "UPDATE runs SET status = ?2, finished_at = COALESCE(?3, finished_at) WHERE id = ?1",
                    params![id, status.as_str(), finished],
                )
            })
            .map(|_| ())
        })
        .await
    }

    async fn add_reply(
        &self,
        id: &str,
        node: &str,
        reply: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (id, node, reply) = (id.to_string(), node.to_string(), reply.to_string());
        self.blocking(move |db| {
            db.with(|c| {
                c.execute(
                    "INSERT OR REPLACE INTO run_replies (run_id, node, reply, at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, node, reply, unix_now()],
                )
            })
            .map(|_| ())
        })
        .await
    }

    async fn replies(&self, id: &str) -> Result<HashMap<String, serde_json::Value>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            db.with(|c| {
                let mut stmt =
                    c.prepare("SELECT node, reply FROM run_replies WHERE run_id = ?1")?;
                let rows = stmt.query_map(params![id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                Ok(rows
                    .filter_map(Result::ok)
                    .filter_map(|(n, text)| Some((n, serde_json::from_str(&text).ok()?)))
                    .collect())
            })
        })
        .await
    }

    fn journal(
        &self,
        id: &str,
        restored: HashMap<String, StoredOutput>,
        lease: Option<Lease>,
    ) -> Result<Arc<dyn Journal>, StoreError> {
        let db = self.db.clone();
        let run_id = id.to_string();
        db.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'running', began_at = COALESCE(began_at, ?2) WHERE id = ?1",
                params![run_id, unix_now()],
            )
        })?;
        let mut fencing = Fencing::new(lease);
        let journal = QueuedJournal::start(restored, move |batch| {
            if fencing.is_lost() {
                return;
            }
            let token = fencing.token();
            let store = || {
                db.with(|c| {
                    // IMMEDIATE: the write lock is taken (waiting on the
                    // busy handler) before the lease check reads; a read
                    // that later upgrades fails at once when another
                    // connection wrote in between.
                    let tx =
                        c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    if let Some(token) = token {
                        let held: Option<Option<i64>> = tx
                            .query_row(
                                "SELECT lease_token FROM run_queue WHERE run_id = ?1",
                                params![run_id],
                                |r| r.get(0),
                            )
                            .optional()?;
                        if held.flatten() != Some(token) {
                            return Ok(false); // rolled back
                        }
                    }
                    for w in batch {
                        write_one(&tx, &run_id, w)?;
                    }
                    tx.commit().map(|()| true)
                })
            };
            // A batch that cannot be stored (the file locked for longer
            // than the busy timeout, a full disk) is retried for a while,
            // then given up with an error: the run goes on.
            let mut pause = std::time::Duration::from_millis(20);
            for attempt in 1..=5 {
                match store() {
                    Ok(true) => return,
                    Ok(false) => return fencing.lose(&run_id),
                    Err(e) if attempt < 5 => {
                        tracing::warn!(run = %run_id, error = %e, attempt, "cannot store the run's progress; retrying");
                        std::thread::sleep(pause);
                        pause *= 4;
                    }
                    Err(e) => {
                        tracing::error!(run = %run_id, error = %e, "cannot store the run's progress; giving up on this batch");
                    }
                }
            }
        })?;
        Ok(journal)
    }
}

/// One write of a run attempt, in the order the run made it.
pub(crate) enum Write {
    Event(Event),
    Checkpoint {
        key: String,
        node: String,
        output: String,
        done: oneshot::Sender<()>,
    },
    Finish {
        end: RunEnd,
        done: oneshot::Sender<()>,
    },
}

/// One run attempt's journal: writes queue up in order and a writer
/// thread stores whatever has queued up as one batch (one transaction),
/// acknowledging checkpoints and the end only once their batch is stored.
/// The store decides how a batch is written.
pub(crate) struct QueuedJournal {
    tx: Mutex<Option<mpsc::Sender<Write>>>,
    restored: HashMap<String, StoredOutput>,
}

impl QueuedJournal {
    pub(crate) fn start(
        restored: HashMap<String, StoredOutput>,
        mut store_batch: impl FnMut(&[Write]) + Send + 'static,
    ) -> Result<Arc<QueuedJournal>, StoreError> {
        let (tx, rx) = mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("composer-run-store".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Everything already queued goes into one batch;
                    // storing when the queue is empty keeps finished nodes
                    // durable within moments of finishing.
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    store_batch(&batch);
                    // Acknowledged only after the batch is stored.
                    for w in batch {
                        match w {
                            Write::Checkpoint { done, .. } | Write::Finish { done, .. } => {
                                let _ = done.send(());
                            }
                            Write::Event(_) => {}
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Stopped(format!("cannot start the run store writer: {e}")))?;
        Ok(Arc::new(QueuedJournal {
            tx: Mutex::new(Some(tx)),
            restored,
        }))
    }

    fn send(&self, w: Write) {
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(w);
            }
        }
    }
}

impl EventSink for QueuedJournal {
    fn emit(&self, event: Event) {
        if event.seq == 0 {
            return;
        }
        self.send(Write::Event(event));
    }
}

impl Journal for QueuedJournal {
    fn restored(&self, key: &str) -> Option<StoredOutput> {
        self.restored.get(key).cloned()
    }

    fn checkpoint(&self, key: String, output: StoredOutput) -> BoxFuture<'static, ()> {
        let (done, wait) = oneshot::channel();
        // The node's record shows its output: the node path is the key
        // without its execution counters (`map#1[3]` → `map[3]`).
        let node = node_of_key(&key);
        let text = serde_json::to_string(&output).unwrap_or_else(|_| "null".into());
        self.send(Write::Checkpoint {
            key,
            node,
            output: text,
            done,
        });
        Box::pin(async move {
            let _ = wait.await;
        })
    }

    fn finish(&self, end: RunEnd) -> BoxFuture<'static, ()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Finish { end, done });
        // Nothing may follow the end: the writer stops once it is written.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

/// `a#1/b#2` → `a/b`, `map#1[3]` → `map[3]`.
pub(crate) fn node_of_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut skipping = false;
    for c in key.chars() {
        match c {
            '#' => skipping = true,
            '/' | '[' => {
                skipping = false;
                out.push(c);
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// What an event changes in its node's record.
pub(crate) struct NodeUpdate<'a> {
    pub node: &'a str,
    pub status: &'static str,
    pub duration: Option<f64>,
    pub error: Option<String>,
    pub stats: Option<String>,
}

pub(crate) fn node_update(event: &Event) -> Option<NodeUpdate<'_>> {
    fn row<'a>(
        node: &'a str,
        status: &'static str,
        duration: Option<f64>,
        error: Option<String>,
        stats: Option<String>,
    ) -> NodeUpdate<'a> {
        NodeUpdate {
            node,
            status,
            duration,
            error,
            stats,
        }
    }
    match &event.kind {
        EventKind::NodeStarted { node, .. } => Some(row(node, "running", None, None, None)),
        EventKind::NodeFinished {
            node,
            duration,
            stats,
            cached,
            ..
        } => Some(row(
            node,
            if *cached { "cached" } else { "completed" },
            Some(duration.as_secs_f64()),
            None,
            serde_json::to_string(stats).ok(),
        )),
        EventKind::NodeFailed {
            node,
            error,
            duration,
            ..
        } => Some(row(
            node,
            "failed",
            Some(duration.as_secs_f64()),
            Some(error.clone()),
            None,
        )),
        EventKind::NodeSkipped { node } => Some(row(node, "skipped", None, None, None)),
        EventKind::NodeCancelled { node } => Some(row(node, "cancelled", None, None, None)),
        EventKind::NodeWaiting { node, .. } => Some(row(node, "waiting", None, None, None)),
        _ => None,
    }
}

/// The checkpoint's value as its node's record shows it; `None` for map
/// items, which are checkpointed but have no record of their own.
pub(crate) fn checkpoint_value(node: &str, output: &str) -> Option<String> {
    if node.ends_with(']') {
        return None;
    }
    let value = serde_json::from_str::<serde_json::Value>(output)
        .ok()
        .and_then(|v| v.get("value").cloned())
        .unwrap_or(serde_json::Value::Null);
    Some(value.to_string())
}

fn write_one(tx: &rusqlite::Transaction<'_>, run_id: &str, w: &Write) -> rusqlite::Result<()> {
    let now = unix_now();
    match w {
        Write::Event(event) => {
            let text = serde_json::to_string(event).unwrap_or_default();
            tx.execute(
                "INSERT OR REPLACE INTO run_events (run_id, seq, at, event) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, event.seq as i64, event.at.as_secs_f64(), text],
            )?;
            let node_row = node_update(event);
            if let Some(NodeUpdate {
                node,
                status,
                duration,
                error,
                stats,
            }) = node_row
            {
                tx.execute(
                    "INSERT INTO run_nodes (run_id, node, status, at, duration, error, stats) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (run_id, node) DO UPDATE SET status = ?3, duration = COALESCE(?5, duration),
                       error = COALESCE(?6, error), stats = COALESCE(?7, stats)",
                    params![run_id, node, status, now, duration, error, stats],
                )?;
            }
        }
        Write::Checkpoint {
            key, node, output, ..
        } => {
            tx.execute(
                "INSERT OR REPLACE INTO run_checkpoints (run_id, key, output) VALUES (?1, ?2, ?3)",
                params![run_id, key, output],
            )?;
            if let Some(value) = checkpoint_value(node, output) {
                tx.execute(
                    "INSERT INTO run_nodes (run_id, node, status, at, output) VALUES (?1, ?2, 'completed', ?3, ?4)
                     ON CONFLICT (run_id, node) DO UPDATE SET output = ?4",
                    params![run_id, node, now, value],
                )?;
            }
        }
        Write::Finish { end, .. } => {
            let finished = end.status.is_final().then_some(now);
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, outputs = ?4, error = ?5, metrics = COALESCE(?6, metrics),
                   error_kind = ?7, failure = ?8 WHERE id = ?1",
                params![
                    run_id,
                    end.status.as_str(),
                    finished,
                    end.outputs.as_ref().map(|o| o.to_string()),
                    end.failure.as_ref().map(|f| f.message.clone()),
                    end.metrics.as_ref().map(|m| m.to_string()),
                    end.failure.as_ref().map(|f| f.kind.as_str()),
                    end.failure
                        .as_ref()
                        .and_then(|f| serde_json::to_string(f).ok()),
                ],
            )?;
            if end.status.is_final() {
                // A finished run needs its checkpoints no more.
                tx.execute(
                    "DELETE FROM run_checkpoints WHERE run_id = ?1",
                    params![run_id],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_paths_from_keys() {
        assert_eq!(super::node_of_key("a#1"), "a");
        assert_eq!(super::node_of_key("a#2/b#1"), "a/b");
        assert_eq!(super::node_of_key("map#1[3]"), "map[3]");
        assert_eq!(super::node_of_key("m#1[3]/x#1"), "m[3]/x");
    }
}
