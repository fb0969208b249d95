//! The work queue in PostgreSQL, shared by every worker process. A claim
//! locks the chosen row with `FOR UPDATE SKIP LOCKED`, so workers claiming
//! at once each get a different run and never wait on each other; leases
//! are timed by the database's clock, so workers on machines whose clocks
//! differ agree on when a lease has run out. Only unfinished runs are in
//! the table, so it stays small however many runs the store holds.

use super::{PgDatabase, QUEUE_CHANNEL};
use crate::store::queue::new_token;
use crate::store::{unix_now, Claim, StoreError, WorkQueue};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct PgQueue {
    db: Arc<PgDatabase>,
}

impl PgQueue {
    pub fn new(db: Arc<PgDatabase>) -> PgQueue {
        PgQueue { db }
    }

    /// Runs `sql` and, in the same transaction, wakes idle workers; the
    /// rows it changed.
    async fn execute_and_wake(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let e = |e: tokio_postgres::Error| self.db.error(e);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(e)?;
        let stmt = tx.prepare_cached(sql).await.map_err(e)?;
        let changed = tx.execute(&stmt, params).await.map_err(e)?;
        tx.execute("SELECT pg_notify($1, '')", &[&QUEUE_CHANNEL])
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(changed)
    }

    async fn counts(&self, sql: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.db.client().await?;
        let rows = client.query(sql, &[]).await.map_err(|e| self.db.error(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let tenant: String = r.try_get(0).ok()?;
                let n: i64 = r.try_get(1).ok()?;
                Some((tenant, u64::try_from(n).unwrap_or(0)))
            })
            .collect())
    }
}

// Leases are timed by the database's clock (`clock_timestamp()`), in the
// store's unit (Unix seconds).

/// The tenant with the fewest leased runs first, its oldest run first;
/// tenants at their cap (`$2`) are skipped. Each tenant's oldest waiting run
/// and leased count come from the indexes (`run_queue_next`,
/// `run_queue_leases`), and the tenants from a skip scan of them, so a claim
/// costs the same with millions of runs queued as with ten: it never sorts
/// the queue. The tenants' candidates are locked (`SKIP LOCKED`: claims at
/// once each get a different run) for the moment the statement runs.
const CLAIM: &str =
    "WITH RECURSIVE now AS (SELECT extract(epoch from clock_timestamp())::float8 AS t),
     tenants AS (
         SELECT min(tenant) AS tenant FROM run_queue
         UNION ALL
         SELECT (SELECT min(q.tenant) FROM run_queue q WHERE q.tenant > tenants.tenant)
         FROM tenants WHERE tenants.tenant IS NOT NULL),
     candidates AS (
         SELECT c.run_id, c.enqueued_at, c.ord,
             (SELECT count(*) FROM run_queue l
              WHERE l.tenant = tenants.tenant AND l.lease_until >= (SELECT t FROM now)) AS leased
         FROM tenants
         CROSS JOIN LATERAL (
             SELECT q.run_id, q.enqueued_at, q.ord FROM run_queue q
             WHERE q.tenant = tenants.tenant
               AND NOT (q.tenant = ANY($2))
               AND (q.lease_until IS NULL OR q.lease_until < (SELECT t FROM now))
             ORDER BY q.enqueued_at, q.ord
             LIMIT 1
             FOR UPDATE SKIP LOCKED) c
         WHERE tenants.tenant IS NOT NULL),
     next AS (SELECT run_id FROM candidates ORDER BY leased, enqueued_at, ord LIMIT 1)
     UPDATE run_queue SET lease_owner = $1, lease_until = (SELECT t FROM now) + $3,
       lease_token = $4
     FROM next WHERE run_queue.run_id = next.run_id
     RETURNING run_queue.run_id, run_queue.tenant";

const RENEW: &str =
    "UPDATE run_queue SET lease_until = extract(epoch from clock_timestamp())::float8 + $3
     WHERE run_id = $1 AND lease_owner = $2 AND lease_token = $4";

const DEPTH: &str = "SELECT tenant, count(*) FROM run_queue
     WHERE lease_until IS NULL OR lease_until < extract(epoch from clock_timestamp())::float8
     GROUP BY tenant";

const LEASED: &str = "SELECT tenant, count(*) FROM run_queue
     WHERE lease_until >= extract(epoch from clock_timestamp())::float8 GROUP BY tenant";

#[async_trait]
impl WorkQueue for PgQueue {
    async fn enqueue(&self, run_id: &str, tenant: &str) -> Result<(), StoreError> {
        self.execute_and_wake(
            "INSERT INTO run_queue (run_id, tenant, enqueued_at) VALUES ($1, $2, $3)
             ON CONFLICT (run_id) DO UPDATE SET lease_owner = NULL, lease_until = NULL",
            &[&run_id, &tenant, &unix_now()],
        )
        .await
        .map(|_| ())
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Option<Claim>, StoreError> {
        let (client, stmt) = self.db.prepared(CLAIM).await?;
        let token = new_token();
        let rows = client
            .query(&stmt, &[&worker, &skip, &lease.as_secs_f64(), &token])
            .await
            .map_err(|e| self.db.error(e))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let claim = Claim {
            run_id: row.try_get(0).map_err(|e| self.db.error(e))?,
            tenant: row.try_get(1).map_err(|e| self.db.error(e))?,
            token,
        };
        Ok(Some(claim))
    }

    async fn renew(
        &self,
        claim: &Claim,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (client, stmt) = self.db.prepared(RENEW).await?;
        let n = client
            .execute(
                &stmt,
                &[&claim.run_id, &worker, &lease.as_secs_f64(), &claim.token],
            )
            .await
            .map_err(|e| self.db.error(e))?;
        Ok(n == 1)
    }

    async fn release(&self, claim: &Claim) -> Result<bool, StoreError> {
        self.execute_and_wake(
            "UPDATE run_queue SET lease_owner = NULL, lease_until = NULL
             WHERE run_id = $1 AND lease_token = $2",
            &[&claim.run_id, &claim.token],
        )
        .await
        .map(|n| n == 1)
    }

    async fn complete(&self, claim: &Claim) -> Result<bool, StoreError> {
        let client = self.db.client().await?;
        client
            .execute(
                "DELETE FROM run_queue WHERE run_id = $1 AND lease_token = $2",
                &[&claim.run_id, &claim.token],
            )
            .await
            .map(|n| n == 1)
            .map_err(|e| self.db.error(e))
    }

    async fn remove(&self, run_id: &str) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        client
            .execute("DELETE FROM run_queue WHERE run_id = $1", &[&run_id])
            .await
            .map(|_| ())
            .map_err(|e| self.db.error(e))
    }

    /// Nothing: other processes hold leases in a shared queue, and a
    /// restarted process has a new worker id. What a dead process held
    /// comes back when its leases run out.
    async fn release_all(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.counts(DEPTH).await
    }

    async fn leased(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.counts(LEASED).await
    }
}
