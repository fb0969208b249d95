//! The run store in PostgreSQL: the same records as the embedded store,
//! and a journal whose batches are one transaction each. A batch that
//! wrote events also notifies `composer_events` inside its transaction, so
//! other processes hear of the events once they are committed.

use super::{PgDatabase, EVENTS_CHANNEL};
use crate::engine::durable::{Journal, StoredOutput};
use crate::engine::events::RunStatus;
use crate::store::runs::{
    checkpoint_value, node_update, Created, Fencing, Lease, NewRun, NodeRecord, NodeUpdate,
    QueuedJournal, RunFilter, RunRecord, RunStore, StoredEvent, Write,
};
use crate::store::{unix_now, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

const RUN_COLUMNS: &str = "id, tenant, recipe, recipe_path, inputs, status, started_at, began_at, finished_at, outputs, error, failure, metrics, spec, idempotency_key";

pub struct PgStore {
    db: Arc<PgDatabase>,
}

fn json(r: &Row, i: usize) -> Result<Option<serde_json::Value>, tokio_postgres::Error> {
    Ok(r.try_get::<_, Option<String>>(i)?
        .and_then(|t| serde_json::from_str(&t).ok()))
}

fn run_row(r: &Row) -> Result<RunRecord, tokio_postgres::Error> {
    Ok(RunRecord {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        recipe: r.try_get(2)?,
        recipe_path: r.try_get(3)?,
        inputs: json(r, 4)?.unwrap_or(serde_json::Value::Null),
        status: r.try_get(5)?,
        started_at: r.try_get(6)?,
        began_at: r.try_get(7)?,
        finished_at: r.try_get(8)?,
        outputs: json(r, 9)?,
        error: r.try_get(10)?,
        failure: json(r, 11)?.and_then(|v| serde_json::from_value(v).ok()),
        metrics: json(r, 12)?,
        spec: json(r, 13)?,
        idempotency_key: r.try_get(14)?,
    })
}

impl PgStore {
    pub fn new(db: Arc<PgDatabase>) -> PgStore {
        PgStore { db }
    }

    pub fn database(&self) -> &Arc<PgDatabase> {
        &self.db
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let (client, stmt) = self.db.prepared(sql).await?;
        client
            .query(&stmt, params)
            .await
            .map_err(|e| self.db.error(e))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let (client, stmt) = self.db.prepared(sql).await?;
        client
            .execute(&stmt, params)
            .await
            .map_err(|e| self.db.error(e))
    }

    fn runs_of(&self, rows: &[Row]) -> Result<Vec<RunRecord>, StoreError> {
        rows.iter()
            .map(|r| run_row(r).map_err(|e| self.db.error(e)))
            .collect()
    }

    async fn run_by_key(&self, tenant: &str, key: &str) -> Result<Option<RunRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE tenant = $1 AND idempotency_key = $2"
                ),
                &[&tenant, &key],
            )
            .await?;
        Ok(self.runs_of(&rows)?.into_iter().next())
    }
}

/// Text pairs of a two-column query, the second parsed as JSON.
fn json_pairs<T: serde::de::DeserializeOwned>(rows: &[Row]) -> HashMap<String, T> {
    rows.iter()
        .filter_map(|r| {
            let key: String = r.try_get(0).ok()?;
            let text: String = r.try_get(1).ok()?;
            Some((key, serde_json::from_str(&text).ok()?))
        })
        .collect()
}

#[async_trait]
impl RunStore for PgStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        if let Some(key) = &run.idempotency_key {
            if let Some(r) = self.run_by_key(&run.tenant, key).await? {
                return Ok(Created::Existing(r));
            }
        }
        let now = unix_now();
        let began = (run.status == RunStatus::Running).then_some(now);
        let (inputs, spec) = (run.inputs.to_string(), run.spec.to_string());
        // Two requests with one idempotency key race to here: the unique
        // index lets one insert, and the other returns the first's run.
        let rows = self
            .query(
                &format!(
                    "INSERT INTO runs (id, tenant, recipe, recipe_path, inputs, status, started_at, created_at, began_at, spec, idempotency_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)
                     ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                     RETURNING {RUN_COLUMNS}"
                ),
                &[
                    &run.id,
                    &run.tenant,
                    &run.recipe,
                    &run.recipe_path,
                    &inputs,
                    &run.status.as_str(),
                    &now,
                    &began,
                    &spec,
                    &run.idempotency_key,
                ],
            )
            .await?;
        if let Some(r) = self.runs_of(&rows)?.into_iter().next() {
            return Ok(Created::New(r));
        }
        let key = run.idempotency_key.as_deref().unwrap_or_default();
        self.run_by_key(&run.tenant, key)
            .await?
            .map(Created::Existing)
            .ok_or_else(|| StoreError::UnknownRun(run.id.clone()))
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(self.runs_of(&rows)?.into_iter().next())
    }

    async fn nodes(&self, id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT node, status, at, duration, output, error, stats FROM run_nodes
                 WHERE run_id = $1 ORDER BY at, ord",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRecord {
                    node: r.try_get(0)?,
                    status: r.try_get(1)?,
                    at: r.try_get(2)?,
                    duration: r.try_get(3)?,
                    output: json(r, 4)?,
                    error: r.try_get(5)?,
                    stats: json(r, 6)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| self.db.error(e))
    }

    async fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = self
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs
                     WHERE ($1::text IS NULL OR recipe = $1) AND ($2::float8 IS NULL OR started_at >= $2)
                       AND ($3::text IS NULL OR tenant = $3) AND ($4::text IS NULL OR status = $4)
                     ORDER BY started_at DESC, ord DESC LIMIT $5::bigint"
                ),
                &[
                    &filter.recipe,
                    &filter.since,
                    &filter.tenant,
                    &filter.status,
                    &limit,
                ],
            )
            .await?;
        self.runs_of(&rows)
    }

    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT seq, event FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                &[&id, &after],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let seq: i64 = r.try_get(0).ok()?;
                let text: String = r.try_get(1).ok()?;
                Some(StoredEvent {
                    seq: u64::try_from(seq).ok()?,
                    event: serde_json::from_str(&text).ok()?,
                })
            })
            .collect())
    }

    async fn last_seq(&self, id: &str) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = $1",
                &[&id],
            )
            .await?;
        let seq: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.db.error(e))?
            .unwrap_or(0);
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn checkpoints(&self, id: &str) -> Result<HashMap<String, StoredOutput>, StoreError> {
        let rows = self
            .query(
                "SELECT key, output FROM run_checkpoints WHERE run_id = $1",
                &[&id],
            )
            .await?;
        Ok(json_pairs(&rows))
    }

    async fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        let finished = status.is_final().then(unix_now);
        self.execute(
            "UPDATE runs SET status = $2, finished_at = COALESCE($3, finished_at) WHERE id = $1",
            &[&id, &status.as_str(), &finished],
        )
        .await
        .map(|_| ())
    }

    async fn add_reply(
        &self,
        id: &str,
        node: &str,
        reply: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let reply = reply.to_string();
        self.execute(
            "INSERT INTO run_replies (run_id, node, reply, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id, node) DO UPDATE SET reply = EXCLUDED.reply, at = EXCLUDED.at",
            &[&id, &node, &reply, &unix_now()],
        )
        .await
        .map(|_| ())
    }

    async fn replies(&self, id: &str) -> Result<HashMap<String, serde_json::Value>, StoreError> {
        let rows = self
            .query(
                "SELECT node, reply FROM run_replies WHERE run_id = $1",
                &[&id],
            )
            .await?;
        Ok(json_pairs(&rows))
    }

    fn journal(
        &self,
        id: &str,
        restored: HashMap<String, StoredOutput>,
        lease: Option<Lease>,
    ) -> Result<Arc<dyn Journal>, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Stopped(format!("the PostgreSQL journal needs tokio: {e}")))?;
        let (db, run_id) = (self.db.clone(), id.to_string());
        // The run is marked as running by the first batch (its first
        // events follow at once): `journal` itself cannot wait on the
        // database.
        let mut began = false;
        let mut fencing = Fencing::new(lease);
        let journal = QueuedJournal::start(restored, move |batch| {
            if fencing.is_lost() {
                return;
            }
            if !store_batch(&runtime, &db, &run_id, batch, !began, fencing.token()) {
                fencing.lose(&run_id);
            }
            began = true;
        })?;
        Ok(journal)
    }
}

/// Stores one batch of a run's writes in one transaction, retrying a
/// failed batch for a while (a restarting server, a dropped connection):
/// a checkpoint is acknowledged only after this returns. False: the queue
/// no longer holds `token` for the run, and nothing was stored.
fn store_batch(
    runtime: &tokio::runtime::Handle,
    db: &PgDatabase,
    run_id: &str,
    batch: &[Write],
    first: bool,
    token: Option<i64>,
) -> bool {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=12 {
        match runtime.block_on(write_batch(db, run_id, batch, first, token)) {
            Ok(held) => return held,
            Err(e) if attempt < 12 => {
                tracing::warn!(run = %run_id, error = %e, attempt, "cannot store the run's progress; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(run = %run_id, error = %e, "cannot store the run's progress; giving up on this batch");
            }
        }
    }
    true
}

/// One statement of a batch, with its parameters owned.
type Op = (&'static str, Vec<Box<dyn ToSql + Sync + Send>>);

const INSERT_EVENT: &str = "INSERT INTO run_events (run_id, seq, at, event) VALUES ($1, $2, $3, $4)
     ON CONFLICT (run_id, seq) DO UPDATE SET at = EXCLUDED.at, event = EXCLUDED.event";
const UPSERT_NODE: &str = "INSERT INTO run_nodes (run_id, node, status, at, duration, error, stats)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (run_id, node) DO UPDATE SET status = EXCLUDED.status,
       duration = COALESCE(EXCLUDED.duration, run_nodes.duration),
       error = COALESCE(EXCLUDED.error, run_nodes.error),
       stats = COALESCE(EXCLUDED.stats, run_nodes.stats)";
const UPSERT_CHECKPOINT: &str =
    "INSERT INTO run_checkpoints (run_id, key, output) VALUES ($1, $2, $3)
     ON CONFLICT (run_id, key) DO UPDATE SET output = EXCLUDED.output";
const NODE_OUTPUT: &str = "INSERT INTO run_nodes (run_id, node, status, at, output)
     VALUES ($1, $2, 'completed', $3, $4)
     ON CONFLICT (run_id, node) DO UPDATE SET output = EXCLUDED.output";
const FINISH: &str = "UPDATE runs SET status = $2, finished_at = $3, outputs = $4, error = $5,
     metrics = COALESCE($6, metrics), error_kind = $7, failure = $8 WHERE id = $1";
const BEGAN: &str =
    "UPDATE runs SET status = 'running', began_at = COALESCE(began_at, $2) WHERE id = $1";
/// One row while the claim holds the run; the row stays locked until the
/// batch commits, so no claim can take the run over in between.
const LEASE_HELD: &str = "SELECT 1 FROM run_queue WHERE run_id = $1 AND lease_token = $2 FOR SHARE";

/// The statements that store a batch, in order (the lease check first).
fn batch_ops(run_id: &str, batch: &[Write], first: bool, token: Option<i64>) -> Vec<Op> {
    let id = || Box::new(run_id.to_string()) as Box<dyn ToSql + Sync + Send>;
    let now = unix_now();
    let mut ops: Vec<Op> = Vec::with_capacity(batch.len() * 2 + 3);
    if let Some(token) = token {
        ops.push((LEASE_HELD, vec![id(), Box::new(token)]));
    }
    if first {
        ops.push((BEGAN, vec![id(), Box::new(now)]));
    }
    let mut events = false;
    for w in batch {
        match w {
            Write::Event(event) => {
                events = true;
                let text = serde_json::to_string(event).unwrap_or_default();
                let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
                ops.push((
                    INSERT_EVENT,
                    vec![
                        id(),
                        Box::new(seq),
                        Box::new(event.at.as_secs_f64()),
                        Box::new(text),
                    ],
                ));
                if let Some(NodeUpdate {
                    node,
                    status,
                    duration,
                    error,
                    stats,
                }) = node_update(event)
                {
                    ops.push((
                        UPSERT_NODE,
                        vec![
                            id(),
                            Box::new(node.to_string()),
                            Box::new(status),
                            Box::new(now),
                            Box::new(duration),
                            Box::new(error),
                            Box::new(stats),
                        ],
                    ));
                }
            }
            Write::Checkpoint {
                key, node, output, ..
            } => {
                ops.push((
                    UPSERT_CHECKPOINT,
                    vec![id(), Box::new(key.clone()), Box::new(output.clone())],
                ));
                if let Some(value) = checkpoint_value(node, output) {
                    ops.push((
                        NODE_OUTPUT,
                        vec![id(), Box::new(node.clone()), Box::new(now), Box::new(value)],
                    ));
                }
            }
            Write::Finish { end, .. } => {
                let finished = end.status.is_final().then_some(now);
                ops.push((
                    FINISH,
                    vec![
                        id(),
                        Box::new(end.status.as_str()),
                        Box::new(finished),
                        Box::new(end.outputs.as_ref().map(|o| o.to_string())),
                        Box::new(end.failure.as_ref().map(|f| f.message.clone())),
                        Box::new(end.metrics.as_ref().map(|m| m.to_string())),
                        Box::new(end.failure.as_ref().map(|f| f.kind.as_str())),
                        Box::new(
                            end.failure
                                .as_ref()
                                .and_then(|f| serde_json::to_string(f).ok()),
                        ),
                    ],
                ));
                if end.status.is_final() {
                    // A finished run needs its checkpoints no more.
                    ops.push(("DELETE FROM run_checkpoints WHERE run_id = $1", vec![id()]));
                }
            }
        }
    }
    if events {
        ops.push((
            "SELECT pg_notify($1, $2)",
            vec![Box::new(EVENTS_CHANNEL), id()],
        ));
    }
    ops
}

/// Stores a batch in one transaction. Its statements are pipelined (sent
/// without waiting for each answer, executed in order), so a batch costs
/// about three round trips (begin, the statements, commit) however many
/// statements it has. False: the lease check found no row, and the
/// transaction is rolled back.
async fn write_batch(
    db: &PgDatabase,
    run_id: &str,
    batch: &[Write],
    first: bool,
    token: Option<i64>,
) -> Result<bool, StoreError> {
    let e = |e: tokio_postgres::Error| db.error(e);
    let ops = batch_ops(run_id, batch, first, token);
    let mut client = db.client().await?;
    let tx = client.transaction().await.map_err(e)?;
    let mut statements = Vec::with_capacity(ops.len());
    for (sql, _) in &ops {
        statements.push(tx.prepare_cached(sql).await.map_err(e)?);
    }
    let pipelined = &tx;
    let executions = ops.iter().zip(statements).map(|((_, params), statement)| {
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        async move { pipelined.execute(&statement, &params).await }
    });
    let changed = futures::future::try_join_all(executions).await.map_err(e)?;
    if token.is_some() && changed.first() != Some(&1) {
        // Dropping the transaction rolls it back.
        return Ok(false);
    }
    tx.commit().await.map_err(e)?;
    Ok(true)
}
