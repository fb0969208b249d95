//! Tenant quotas (SERVER.md section 5): runs per minute and concurrent
//! runs are checked when a run is asked for; tokens and cost per day when
//! a run is asked for and before each provider call (a run that would pass
//! the budget fails naming the quota). Daily usage is kept in the store so
//! a restart does not hand out a fresh budget; the per-minute window is
//! per process. With Redis every quota is shared by all processes
//! (`SharedQuotas`), and fails closed when Redis cannot be reached.

use super::config::Quotas;
use crate::engine::budget::Budget;
use crate::engine::error::QuotaError;
use crate::providers::CallStats;
use crate::store::redis::quotas::{AdmissionLock, RedisQuotas};
use crate::store::{unix_now, Database, StoreError};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USAGE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant TEXT NOT NULL, day INTEGER NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, PRIMARY KEY (tenant, day))";

fn today() -> i64 {
    (unix_now() / 86_400.0) as i64
}

fn secs_to_midnight() -> Duration {
    let now = unix_now();
    Duration::from_secs_f64(((today() + 1) as f64 * 86_400.0 - now).max(1.0))
}

#[derive(Default)]
struct Usage {
    day: i64,
    tokens: u64,
    cost: f64,
}

/// Why a run was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// A quota would be passed.
    Over(QuotaError),
    /// The shared quota store cannot be reached: quotas fail closed.
    Unavailable(StoreError),
}

impl From<QuotaError> for Refusal {
    fn from(e: QuotaError) -> Refusal {
        Refusal::Over(e)
    }
}

/// Makes "count the tenant's unfinished runs, then record the new one"
/// one step; dropped (or given back) when the run is recorded.
pub enum Admission {
    Local(tokio::sync::OwnedMutexGuard<()>),
    Shared(AdmissionLock),
    None,
}

/// The quotas of every tenant: in this process, or shared through Redis.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Holds the tenant's admission step (with a `concurrent_runs` cap).
    async fn lock_admission(
        &self,
        tenant: &str,
        local: &Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Admission, Refusal>;
    async fn unlock_admission(&self, admission: Admission);
    /// Whether a new run may be taken now (the tenant has `unfinished`
    /// runs queued or running); counts it when it may.
    async fn admit(&self, tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), Refusal>;
    /// Fails when the tenant's day budget is spent (or cannot be read).
    async fn check_budget(&self, tenant: &str, quotas: &Quotas) -> Result<(), QuotaError>;
    /// Adds a finished call's usage.
    fn charge(&self, tenant: &str, stats: &CallStats);
    /// A slot among the tenant's `cap` running runs, held for `lease` and
    /// renewed by calling again. Only shared stores need it: one process
    /// counts its own running runs before it claims.
    async fn acquire_run(
        &self,
        tenant: &str,
        run_id: &str,
        cap: u64,
        lease: Duration,
    ) -> Result<bool, StoreError>;
    async fn release_run(&self, tenant: &str, run_id: &str);
    /// Whether the quota store answers (`/readyz`).
    async fn ready(&self) -> Result<(), StoreError>;
}

/// A call's tokens and dollars; `None` when it used nothing to count.
fn usage_of(stats: &CallStats) -> Option<(u64, f64)> {
    let tokens = stats.input_tokens + stats.output_tokens;
    let cost = stats.cost_usd.unwrap_or(0.0);
    (tokens > 0 || cost != 0.0).then_some((tokens, cost))
}

fn concurrency_check(tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), QuotaError> {
    match quotas.concurrent_runs {
        Some(cap) if unfinished >= cap => Err(QuotaError {
            tenant: tenant.to_string(),
            quota: "concurrent_runs".into(),
            message: format!("{unfinished} runs are queued or running (limit {cap})"),
            retry_after: Some(Duration::from_secs(5)),
        }),
        _ => Ok(()),
    }
}

fn budget_check(tenant: &str, quotas: &Quotas, tokens: u64, cost: f64) -> Result<(), QuotaError> {
    let fail = |quota: &str, message: String| QuotaError {
        tenant: tenant.to_string(),
        quota: quota.to_string(),
        message,
        retry_after: Some(secs_to_midnight()),
    };
    if let Some(cap) = quotas.tokens_per_day {
        if tokens >= cap {
            return Err(fail(
                "tokens_per_day",
                format!("{tokens} tokens used today (limit {cap})"),
            ));
        }
    }
    if let Some(cap) = quotas.cost_per_day_usd {
        if cost >= cap {
            return Err(fail(
                "cost_per_day_usd",
                format!("${cost:.4} spent today (limit ${cap})"),
            ));
        }
    }
    Ok(())
}

/// Counters of every tenant, in this process.
pub struct QuotaState {
    db: Option<Arc<Database>>,
    usage: Mutex<HashMap<String, Usage>>,
    recent: Mutex<HashMap<String, VecDeque<f64>>>,
}

impl QuotaState {
    pub fn new(db: Option<Arc<Database>>) -> Arc<QuotaState> {
        let mut usage = HashMap::new();
        if let Some(db) = &db {
            let day = today();
            let loaded = db.with(|c| {
                c.execute_batch(USAGE_SCHEMA)?;
                let mut stmt =
                    c.prepare("SELECT tenant, tokens, cost FROM tenant_usage WHERE day = ?1")?;
                let rows = stmt.query_map([day], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, f64>(2)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            });
            for (tenant, tokens, cost) in loaded.unwrap_or_default() {
                usage.insert(tenant, Usage { day, tokens, cost });
            }
        }
        Arc::new(QuotaState {
            db,
            usage: Mutex::new(usage),
            recent: Mutex::new(HashMap::new()),
        })
    }

    fn admit_now(&self, tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), QuotaError> {
        concurrency_check(tenant, quotas, unfinished)?;
        self.budget_now(tenant, quotas)?;
        if let Some(cap) = quotas.runs_per_minute {
            let now = unix_now();
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let window = recent.entry(tenant.to_string()).or_default();
            while window.front().is_some_and(|t| now - t >= 60.0) {
                window.pop_front();
            }
            if window.len() as u64 >= cap {
                let wait = window.front().map(|t| 60.0 - (now - t)).unwrap_or(1.0);
                return Err(QuotaError {
                    tenant: tenant.to_string(),
                    quota: "runs_per_minute".into(),
                    message: format!("{} runs in the last minute (limit {cap})", window.len()),
                    retry_after: Some(Duration::from_secs_f64(wait.max(1.0))),
                });
            }
            window.push_back(now);
        }
        Ok(())
    }

    fn budget_now(&self, tenant: &str, quotas: &Quotas) -> Result<(), QuotaError> {
        let usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, cost) = match usage.get(tenant) {
            Some(u) if u.day == today() => (u.tokens, u.cost),
            _ => (0, 0.0),
        };
        budget_check(tenant, quotas, tokens, cost)
    }

    fn charge_now(&self, tenant: &str, stats: &CallStats) {
        let Some((tokens, cost)) = usage_of(stats) else {
            return;
        };
        let day = today();
        {
            let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            let u = usage.entry(tenant.to_string()).or_default();
            if u.day != day {
                *u = Usage {
                    day,
                    ..Usage::default()
                };
            }
            u.tokens += tokens;
            u.cost += cost;
        }
        if let Some(db) = self.db.clone() {
            let tenant = tenant.to_string();
            // Off the async workers; a lost write costs at most this call.
            std::thread::spawn(move || {
                let _ = db.with(|c| {
                    c.execute(
                        "INSERT INTO tenant_usage (tenant, day, tokens, cost) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (tenant, day) DO UPDATE SET tokens = tokens + ?3, cost = cost + ?4",
                        rusqlite::params![tenant, day, tokens as i64, cost],
                    )
                });
            });
        }
    }
}

#[async_trait]
impl QuotaStore for QuotaState {
    async fn lock_admission(
        &self,
        _tenant: &str,
        local: &Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Admission, Refusal> {
        Ok(Admission::Local(local.clone().lock_owned().await))
    }

    async fn unlock_admission(&self, admission: Admission) {
        drop(admission);
    }

    async fn admit(&self, tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), Refusal> {
        Ok(self.admit_now(tenant, quotas, unfinished)?)
    }

    async fn check_budget(&self, tenant: &str, quotas: &Quotas) -> Result<(), QuotaError> {
        self.budget_now(tenant, quotas)
    }

    fn charge(&self, tenant: &str, stats: &CallStats) {
        self.charge_now(tenant, stats);
    }

    async fn acquire_run(&self, _: &str, _: &str, _: u64, _: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release_run(&self, _: &str, _: &str) {}

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Every quota in Redis, shared by all processes. Fails closed: while
/// Redis cannot be reached no run is admitted or started, and a running
/// run's next provider call fails its budget check.
pub struct SharedQuotas {
    redis: Arc<RedisQuotas>,
}

impl SharedQuotas {
    pub fn new(redis: crate::store::redis::Redis) -> Arc<SharedQuotas> {
        Arc::new(SharedQuotas {
            redis: Arc::new(RedisQuotas::new(redis)),
        })
    }

    fn unreachable(&self, tenant: &str, quota: &str, e: &StoreError) -> QuotaError {
        QuotaError {
            tenant: tenant.to_string(),
            quota: quota.to_string(),
            message: format!(
                "cannot check the quota, so the call is refused (quotas fail closed): {e}"
            ),
            retry_after: Some(Duration::from_secs(5)),
        }
    }
}

#[async_trait]
impl QuotaStore for SharedQuotas {
    async fn lock_admission(
        &self,
        tenant: &str,
        _local: &Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Admission, Refusal> {
        self.redis
            .lock(tenant, Duration::from_secs(10))
            .await
            .map(Admission::Shared)
            .map_err(Refusal::Unavailable)
    }

    async fn unlock_admission(&self, admission: Admission) {
        if let Admission::Shared(lock) = admission {
            self.redis.unlock(lock).await;
        }
    }

    async fn admit(&self, tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), Refusal> {
        concurrency_check(tenant, quotas, unfinished)?;
        if quotas.tokens_per_day.is_some() || quotas.cost_per_day_usd.is_some() {
            let (tokens, cost) = self
                .redis
                .usage(tenant, today())
                .await
                .map_err(Refusal::Unavailable)?;
            budget_check(tenant, quotas, tokens, cost)?;
        }
        if let Some(cap) = quotas.runs_per_minute {
            let wait = self
                .redis
                .take_run(tenant, cap)
                .await
                .map_err(Refusal::Unavailable)?;
            if let Some(wait) = wait {
                return Err(Refusal::Over(QuotaError {
                    tenant: tenant.to_string(),
                    quota: "runs_per_minute".into(),
                    message: format!("{cap} runs in the last minute (limit {cap})"),
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                }));
            }
        }
        Ok(())
    }

    async fn check_budget(&self, tenant: &str, quotas: &Quotas) -> Result<(), QuotaError> {
        if quotas.tokens_per_day.is_none() && quotas.cost_per_day_usd.is_none() {
            return Ok(());
        }
        let quota = if quotas.tokens_per_day.is_some() {
            "tokens_per_day"
        } else {
            "cost_per_day_usd"
        };
        let (tokens, cost) = self
            .redis
            .usage(tenant, today())
            .await
            .map_err(|e| self.unreachable(tenant, quota, &e))?;
        budget_check(tenant, quotas, tokens, cost)
    }

    fn charge(&self, tenant: &str, stats: &CallStats) {
        let Some((tokens, cost)) = usage_of(stats) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (redis, tenant) = (self.redis.clone(), tenant.to_string());
        runtime.spawn(async move {
            if let Err(e) = redis.charge(&tenant, today(), tokens, cost).await {
                tracing::error!(%tenant, tokens, cost, error = %e, "cannot count a call's usage");
            }
        });
    }

    async fn acquire_run(
        &self,
        tenant: &str,
        run_id: &str,
        cap: u64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.redis.acquire_run(tenant, run_id, cap, lease).await
    }

    async fn release_run(&self, tenant: &str, run_id: &str) {
        if let Err(e) = self.redis.release_run(tenant, run_id).await {
            tracing::warn!(%tenant, run = %run_id, error = %e, "cannot give back a running-run slot; it runs out with its lease");
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.redis.redis().ping().await
    }
}

/// One tenant's budget, as the engine checks it.
pub struct TenantBudget {
    pub state: Arc<dyn QuotaStore>,
    pub tenant: String,
    pub quotas: Quotas,
}

#[async_trait]
impl Budget for TenantBudget {
    async fn check(&self) -> Result<(), QuotaError> {
        self.state.check_budget(&self.tenant, &self.quotas).await
    }

    fn record(&self, stats: &CallStats) {
        self.state.charge(&self.tenant, stats);
    }
}
