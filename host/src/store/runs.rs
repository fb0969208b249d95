//! The run store: every run (recipe, inputs, status, final outputs, error,
//! metrics) and its nodes and events, written as the run goes. Events go
//! through a writer thread that commits whenever it has caught up, so a
//! process killed mid-run loses no finished node's result.

use super::{unix_now, Database};
use crate::engine::events::{Event, EventKind, EventSink};
use rusqlite::params;
use serde::Serialize;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One stored run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub recipe: String,
    pub recipe_path: Option<String>,
    pub inputs: serde_json::Value,
    /// `running`, `succeeded` or `failed` (a `running` run whose process
    /// died stays `running`).
    pub status: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub outputs: Option<serde_json::Value>,
    pub error: Option<String>,
    pub metrics: Option<serde_json::Value>,
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

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub recipe: Option<String>,
    /// Unix seconds.
    pub since: Option<f64>,
    pub limit: Option<usize>,
}

enum Write {
    Event(Event),
    Output {
        node: String,
        output: serde_json::Value,
    },
    Finish {
        status: String,
        outputs: Option<serde_json::Value>,
        error: Option<String>,
        metrics: Option<serde_json::Value>,
    },
}

pub struct RunStore {
    db: Arc<Database>,
}

impl RunStore {
    pub fn new(db: Arc<Database>) -> RunStore {
        RunStore { db }
    }

    /// Records a run's start and returns the recorder that writes the rest.
    pub fn begin(
        &self,
        run_id: &str,
        recipe: &str,
        recipe_path: Option<&str>,
        inputs: &serde_json::Value,
    ) -> Result<Arc<RunRecorder>, String> {
        self.db.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO runs (id, recipe, recipe_path, inputs, status, started_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![run_id, recipe, recipe_path, inputs.to_string(), unix_now()],
            )
        })?;
        let (tx, rx) = mpsc::channel::<Write>();
        let db = self.db.clone();
        let id = run_id.to_string();
        let writer = std::thread::Builder::new()
            .name("composer-run-store".into())
            .spawn(move || write_loop(&db, &id, &rx))
            .map_err(|e| format!("cannot start the run store writer: {e}"))?;
        Ok(Arc::new(RunRecorder {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }))
    }

    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, String> {
        self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, recipe, recipe_path, inputs, status, started_at, finished_at, outputs, error, metrics
                 FROM runs WHERE (?1 IS NULL OR recipe = ?1) AND (?2 IS NULL OR started_at >= ?2)
                 ORDER BY started_at DESC LIMIT ?3",
            )?;
            let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
            let rows = stmt.query_map(params![filter.recipe, filter.since, limit], |r| {
                let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
                    Ok(r.get::<_, Option<String>>(i)?.and_then(|t| serde_json::from_str(&t).ok()))
                };
                Ok(RunRecord {
                    id: r.get(0)?,
                    recipe: r.get(1)?,
                    recipe_path: r.get(2)?,
                    inputs: json(3)?.unwrap_or(serde_json::Value::Null),
                    status: r.get(4)?,
                    started_at: r.get(5)?,
                    finished_at: r.get(6)?,
                    outputs: json(7)?,
                    error: r.get(8)?,
                    metrics: json(9)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn get(&self, run_id: &str) -> Result<Option<(RunRecord, Vec<NodeRecord>)>, String> {
        let Some(run) = self
            .list(&RunFilter::default())?
            .into_iter()
            .find(|r| r.id == run_id)
        else {
            return Ok(None);
        };
        let nodes = self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT node, status, at, duration, output, error, stats FROM run_nodes WHERE run_id = ?1 ORDER BY at",
            )?;
            let rows = stmt.query_map(params![run_id], |r| {
                let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
                    Ok(r.get::<_, Option<String>>(i)?.and_then(|t| serde_json::from_str(&t).ok()))
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
        })?;
        Ok(Some((run, nodes)))
    }

    /// A run's events, in order.
    pub fn events(&self, run_id: &str) -> Result<Vec<serde_json::Value>, String> {
        self.db.with(|c| {
            let mut stmt =
                c.prepare("SELECT event FROM run_events WHERE run_id = ?1 ORDER BY seq")?;
            let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0))?;
            Ok(rows
                .filter_map(|r| r.ok())
                .filter_map(|t| serde_json::from_str(&t).ok())
                .collect())
        })
    }
}

/// Writes one run's events and node outputs; `finish` waits for the writer.
pub struct RunRecorder {
    tx: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl RunRecorder {
    fn send(&self, w: Write) {
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(w);
            }
        }
    }

    /// A node's output (written with its node record).
    pub fn node_output(&self, node: &str, output: serde_json::Value) {
        self.send(Write::Output {
            node: node.to_string(),
            output,
        });
    }

    /// Records the end of the run and waits until everything is written.
    pub fn finish(
        &self,
        success: bool,
        outputs: Option<serde_json::Value>,
        error: Option<String>,
        metrics: Option<serde_json::Value>,
    ) {
        self.send(Write::Finish {
            status: if success { "succeeded" } else { "failed" }.to_string(),
            outputs,
            error,
            metrics,
        });
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

impl EventSink for RunRecorder {
    fn emit(&self, event: Event) {
        // Per-item events of big maps would flood the store; their node's
        // record and progress are enough.
        if matches!(
            event.kind,
            EventKind::MapItem { .. } | EventKind::MapProgress { .. }
        ) {
            return;
        }
        self.send(Write::Event(event));
    }
}

fn write_loop(db: &Database, run_id: &str, rx: &mpsc::Receiver<Write>) {
    let mut seq: i64 = 0;
    while let Ok(first) = rx.recv() {
        // Everything already queued goes into one transaction; committing
        // when the queue is empty keeps finished nodes on disk within
        // moments of finishing.
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let _ = db.with(|c| {
            let tx = c.transaction()?;
            for w in &batch {
                write_one(&tx, run_id, &mut seq, w)?;
            }
            tx.commit()
        });
    }
}

fn write_one(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    seq: &mut i64,
    w: &Write,
) -> rusqlite::Result<()> {
    let now = unix_now();
    match w {
        Write::Event(event) => {
            *seq += 1;
            let text = serde_json::to_string(event).unwrap_or_default();
            tx.execute(
                "INSERT OR REPLACE INTO run_events (run_id, seq, at, event) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, *seq, event.at.as_secs_f64(), text],
            )?;
            let node_row = match &event.kind {
                EventKind::NodeStarted { node, .. } => Some((node, "running", None, None, None)),
                EventKind::NodeFinished {
                    node,
                    duration,
                    stats,
                    cached,
                    ..
                } => Some((
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
                } => Some((
                    node,
                    "failed",
                    Some(duration.as_secs_f64()),
                    Some(error.clone()),
                    None,
                )),
                EventKind::NodeSkipped { node } => Some((node, "skipped", None, None, None)),
                EventKind::NodeCancelled { node } => Some((node, "cancelled", None, None, None)),
                _ => None,
            };
            if let Some((node, status, duration, error, stats)) = node_row {
                tx.execute(
                    "INSERT INTO run_nodes (run_id, node, status, at, duration, error, stats) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (run_id, node) DO UPDATE SET status = ?3, duration = COALESCE(?5, duration),
                       error = COALESCE(?6, error), stats = COALESCE(?7, stats)",
                    params![run_id, node, status, now, duration, error, stats],
                )?;
            }
        }
        Write::Output { node, output } => {
            tx.execute(
                "INSERT INTO run_nodes (run_id, node, status, at, output) VALUES (?1, ?2, 'completed', ?3, ?4)
                 ON CONFLICT (run_id, node) DO UPDATE SET output = ?4",
                params![run_id, node, now, output.to_string()],
            )?;
        }
        Write::Finish {
            status,
            outputs,
            error,
            metrics,
        } => {
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, outputs = ?4, error = ?5, metrics = ?6 WHERE id = ?1",
                params![
                    run_id,
                    status,
                    now,
                    outputs.as_ref().map(|o| o.to_string()),
                    error,
                    metrics.as_ref().map(|m| m.to_string())
                ],
            )?;
        }
    }
    Ok(())
}
