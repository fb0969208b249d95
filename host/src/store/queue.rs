//! The work queue: runs waiting for a worker. A worker claims a run with a
//! lease it renews while the run goes; a lease that runs out (the worker
//! died) makes the run claimable again. Claims are fair across tenants:
//! the next run comes from the tenant with the fewest runs leased now, its
//! oldest first, so one tenant's burst never starves another.
//!
//! Only unfinished runs are in the queue table: finished ones leave it, so
//! it stays small however many runs the store holds.

use super::{unix_now, Database, StoreError};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;

/// A claimed run.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub run_id: String,
    pub tenant: String,
    /// Drawn at random for this claim: the queue row holds the token of the
    /// newest claim, so an attempt whose lease another worker has since
    /// taken over can tell (its renewals, its journal's writes and its
    /// release then change nothing).
    pub token: i64,
}

/// A fresh lease token.
pub(crate) fn new_token() -> i64 {
    rand::random::<i64>()
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, run_id: &str, tenant: &str) -> Result<(), StoreError>;
    /// The next run to execute, leased to `worker` for `lease`; tenants in
    /// `skip` (at their concurrency cap) are passed over.
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Option<Claim>, StoreError>;
    /// Extends a lease; false when the claim no longer holds it.
    async fn renew(&self, claim: &Claim, worker: &str, lease: Duration)
        -> Result<bool, StoreError>;
    /// Puts a claimed run back (shutdown, or a run that cannot start here);
    /// false (and nothing changed) when the claim no longer holds it.
    async fn release(&self, claim: &Claim) -> Result<bool, StoreError>;
    /// Takes a claimed run off the queue (finished, waiting or cancelled);
    /// false (and nothing changed) when the claim no longer holds it.
    async fn complete(&self, claim: &Claim) -> Result<bool, StoreError>;
    /// Removes a run from the queue whoever holds it (cancelled by a user).
    async fn remove(&self, run_id: &str) -> Result<(), StoreError>;
    /// Expires every lease (one process owns an embedded store: after a
    /// restart, whatever it had leased is its to continue).
    async fn release_all(&self) -> Result<usize, StoreError>;
    /// Runs queued and not leased, by tenant.
    async fn depth(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Runs leased now, by tenant.
    async fn leased(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

pub struct SqliteQueue {
    db: Arc<Database>,
}

impl SqliteQueue {
    pub fn new(db: Arc<Database>) -> SqliteQueue {
        SqliteQueue { db }
    }

    /// Runs `f` on a blocking thread: SQLite work never runs on the async
    /// workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Database::blocking(&self.db, f).await
    }
}

fn counts(db: &Database, sql: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let now = unix_now();
    db.with(|c| {
        let mut stmt = c.prepare(sql)?;
        let rows = stmt.query_map(params![now], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect()
    })
}

#[async_trait]
impl WorkQueue for SqliteQueue {
    async fn enqueue(&self, run_id: &str, tenant: &str) -> Result<(), StoreError> {
        let (run_id, tenant) = (run_id.to_string(), tenant.to_string());
        self.blocking(move |db| {
            db.with(|c| {
                c.execute(
                    "INSERT INTO run_queue (run_id, tenant, enqueued_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (run_id) DO UPDATE SET lease_owner = NULL, lease_until = NULL",
                    params![run_id, tenant, unix_now()],
                )
            })
            .map(|_| ())
        })
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Option<Claim>, StoreError> {
        let worker = worker.to_string();
        self.blocking(move |db| {
            let now = unix_now();
            db.with(|c| {
                // IMMEDIATE: the claim reads, then writes; taking the write
                // lock first waits for another connection instead of
                // failing at once when it wrote in between.
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let skip_json = serde_json::to_string(&skip).unwrap_or_else(|_| "[]".into());
                let found = tx
                    .query_row(
                        // Each tenant's oldest waiting run and its leased
                        // count come from the indexes, and the tenants from
                        // a skip scan of them: a claim never sorts the
                        // queue, whatever its depth.
                        "WITH RECURSIVE tenants(tenant) AS (
                             SELECT MIN(tenant) FROM run_queue
                             UNION ALL
                             SELECT (SELECT MIN(q.tenant) FROM run_queue q WHERE q.tenant > tenants.tenant)
                             FROM tenants WHERE tenants.tenant IS NOT NULL),
                         candidates AS (
                             SELECT
                               (SELECT q.rowid FROM run_queue q
                                WHERE q.tenant = t.tenant
                                  AND (q.lease_until IS NULL OR q.lease_until < ?1)
                                ORDER BY q.enqueued_at, q.rowid LIMIT 1) AS next,
                               (SELECT COUNT(*) FROM run_queue l
                                WHERE l.tenant = t.tenant AND l.lease_until >= ?1) AS leased
                             FROM tenants t
                             WHERE t.tenant IS NOT NULL
                               AND t.tenant NOT IN (SELECT value FROM json_each(?2)))
                         SELECT q.run_id, q.tenant FROM candidates c
                         JOIN run_queue q ON q.rowid = c.next
                         ORDER BY c.leased, q.enqueued_at, q.rowid
                         LIMIT 1",
                        params![now, skip_json],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                    .optional()?;
                let Some((run_id, tenant)) = found else {
                    return Ok(None);
                };
                let token = new_token();
                tx.execute(
                    "UPDATE run_queue SET lease_owner = ?2, lease_until = ?3, lease_token = ?4 WHERE run_id = ?1",
                    params![run_id, worker, now + lease.as_secs_f64(), token],
                )?;
                tx.commit()?;
                Ok(Some(Claim {
                    run_id,
                    tenant,
                    token,
                }))
            })
        })
        .await
    }

    async fn renew(
        &self,
        claim: &Claim,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (run_id, token, worker) = (claim.run_id.clone(), claim.token, worker.to_string());
        self.blocking(move |db| {
            db.with(|c| {
                c.execute(
                    "UPDATE run_queue SET lease_until = ?4
                     WHERE run_id = ?1 AND lease_owner = ?2 AND lease_token = ?3",
                    params![run_id, worker, token, unix_now() + lease.as_secs_f64()],
                )
            })
            .map(|n| n == 1)
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<bool, StoreError> {
        let (run_id, token) = (claim.run_id.clone(), claim.token);
        self.blocking(move |db| {
            db.with(|c| {
                c.execute(
                    "UPDATE run_queue SET lease_owner = NULL, lease_until = NULL
                     WHERE run_id = ?1 AND lease_token = ?2",
                    params![run_id, token],
                )
            })
            .map(|n| n == 1)
        })
        .await
    }

    async fn complete(&self, claim: &Claim) -> Result<bool, StoreError> {
        let (run_id, token) = (claim.run_id.clone(), claim.token);
        self.blocking(move |db| {
            db.with(|c| {
                c.execute(
                    "DELETE FROM run_queue WHERE run_id = ?1 AND lease_token = ?2",
                    params![run_id, token],
                )
            })
            .map(|n| n == 1)
        })
        .await
    }

    async fn remove(&self, run_id: &str) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.blocking(move |db| {
            db.with(|c| c.execute("DELETE FROM run_queue WHERE run_id = ?1", params![run_id]))
                .map(|_| ())
        })
        .await
    }

    async fn release_all(&self) -> Result<usize, StoreError> {
        self.blocking(|db| {
            db.with(|c| {
                c.execute(
                    "UPDATE run_queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
                    [],
                )
            })
        })
        .await
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.blocking(|db| {
            counts(
                db,
                "SELECT tenant, COUNT(*) FROM run_queue WHERE lease_until IS NULL OR lease_until < ?1 GROUP BY tenant",
            )
        })
        .await
    }

    async fn leased(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.blocking(|db| {
            counts(
                db,
                "SELECT tenant, COUNT(*) FROM run_queue WHERE lease_until >= ?1 GROUP BY tenant",
            )
        })
        .await
    }
}
