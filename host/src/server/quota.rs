//! Tenant quotas (SERVER.md section 5): runs per minute and concurrent
//! runs are checked when a run is asked for; tokens and cost per day when
//! a run is asked for and before each provider call (a run that would pass
//! the budget fails naming the quota). Daily usage is kept in the store so
//! a restart does not hand out a fresh budget; the per-minute window is
//! per process. With Redis (the scale-out issue) the same trait is shared.

use super::config::Quotas;
use crate::engine::budget::Budget;
use crate::engine::error::QuotaError;
use crate::providers::CallStats;
use crate::store::{unix_now, Database};
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

/// Counters of every tenant.
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

    /// Whether a new run may be taken now; counts it when it may.
    pub fn admit(&self, tenant: &str, quotas: &Quotas, unfinished: u64) -> Result<(), QuotaError> {
        let fail = |quota: &str, message: String, retry: Duration| QuotaError {
            tenant: tenant.to_string(),
            quota: quota.to_string(),
            message,
            retry_after: Some(retry),
        };
        if let Some(cap) = quotas.concurrent_runs {
            if unfinished >= cap {
                return Err(fail(
                    "concurrent_runs",
                    format!("{unfinished} runs are queued or running (limit {cap})"),
                    Duration::from_secs(5),
                ));
            }
        }
        self.check_budget(tenant, quotas)?;
        if let Some(cap) = quotas.runs_per_minute {
            let now = unix_now();
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let window = recent.entry(tenant.to_string()).or_default();
            while window.front().is_some_and(|t| now - t >= 60.0) {
                window.pop_front();
            }
            if window.len() as u64 >= cap {
                let wait = window.front().map(|t| 60.0 - (now - t)).unwrap_or(1.0);
                return Err(fail(
                    "runs_per_minute",
                    format!("{} runs in the last minute (limit {cap})", window.len()),
                    Duration::from_secs_f64(wait.max(1.0)),
                ));
            }
            window.push_back(now);
        }
        Ok(())
    }

    pub fn check_budget(&self, tenant: &str, quotas: &Quotas) -> Result<(), QuotaError> {
        let usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, cost) = match usage.get(tenant) {
            Some(u) if u.day == today() => (u.tokens, u.cost),
            _ => (0, 0.0),
        };
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

    pub fn charge(&self, tenant: &str, stats: &CallStats) {
        let tokens = stats.input_tokens + stats.output_tokens;
        let cost = stats.cost_usd.unwrap_or(0.0);
        if tokens == 0 && cost == 0.0 {
            return;
        }
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

/// One tenant's budget, as the engine checks it.
pub struct TenantBudget {
    pub state: Arc<QuotaState>,
    pub tenant: String,
    pub quotas: Quotas,
}

impl Budget for TenantBudget {
    fn check(&self) -> Result<(), QuotaError> {
        self.state.check_budget(&self.tenant, &self.quotas)
    }

    fn record(&self, stats: &CallStats) {
        self.state.charge(&self.tenant, stats);
    }
}
