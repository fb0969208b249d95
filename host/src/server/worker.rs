//! Executing queued runs: claim fairly across tenants (tenants at their
//! concurrency cap are passed over), keep the lease alive while the run
//! goes, and put the run back, or take it off the queue, when the attempt
//! ends. A run that waits for a human leaves the queue and holds nothing.

use super::hub::HubSink;
use super::quota::TenantBudget;
use super::ServerState;
use crate::app::RunOptions;
use crate::engine::events::RunStatus;
use crate::engine::runner::RunScope;
use crate::store::Claim;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs until the process drains, then waits for running attempts.
pub async fn work(state: Arc<ServerState>) {
    let lease = Duration::from_secs(state.settings.lease_secs.max(2));
    let mut running = tokio::task::JoinSet::new();
    let mut changes = state.changes();
    // Tenants whose runs cannot start here for a moment (every running
    // slot taken elsewhere, or an unknown tenant), until when.
    let mut paused: HashMap<String, Instant> = HashMap::new();
    loop {
        if state.drain.is_cancelled() {
            break;
        }
        while running.try_join_next().is_some() {}
        if running.len() >= state.settings.max_running.max(1) {
            tokio::select! {
                _ = running.join_next() => {}
                () = state.drain.cancelled() => break,
            }
            continue;
        }
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        let mut skip = state.tenants_at_cap();
        skip.extend(paused.keys().cloned());
        let claim = match state.queue.claim(&state.worker_id, lease, skip).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the work queue");
                None
            }
        };
        match claim {
            Some(claim) => {
                if let Some(pause) = cannot_start(&state, &claim, lease).await {
                    if let Err(e) = state.queue.release(&claim).await {
                        tracing::error!(run = %claim.run_id, error = %e, "cannot put a run back on the queue");
                    }
                    paused.insert(claim.tenant, Instant::now() + pause);
                    continue;
                }
                let state = state.clone();
                running.spawn(async move { execute(state, claim).await });
            }
            None => {
                // Woken by new work (here, or announced by another process);
                // a slow poll catches expired leases.
                let announced = async {
                    match changes.as_mut() {
                        Some(rx) => loop {
                            match rx.recv().await {
                                Ok(crate::store::Change::Queued)
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                                Ok(_) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    std::future::pending::<()>().await;
                                }
                            }
                        },
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = state.wake.notified() => {}
                    () = announced => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = state.drain.cancelled() => break,
                }
            }
        }
    }
    // Draining: running attempts stop starting nodes; give them the grace
    // period, then leave what is left for the next start.
    let grace = Duration::from_secs(state.settings.grace_secs);
    let _ = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
}

/// Why a claimed run cannot start here now, as how long to pass over its
/// tenant: a tenant this process does not know (another process's newer
/// config may: the run stays queued), or a `concurrent_runs` cap whose
/// slots other processes hold (or that cannot be checked: quotas fail
/// closed). `None`: it may start, and holds a running slot.
async fn cannot_start(state: &ServerState, claim: &Claim, lease: Duration) -> Option<Duration> {
    let Some(tenant) = state.tenant(&claim.tenant) else {
        tracing::warn!(run = %claim.run_id, tenant = %claim.tenant,
            "a queued run of a tenant this process does not know; leaving it queued");
        return Some(Duration::from_secs(30));
    };
    let cap = tenant.settings.quotas.concurrent_runs?;
    match state
        .quotas
        .acquire_run(&claim.tenant, &claim.run_id, cap, lease)
        .await
    {
        Ok(true) => None,
        Ok(false) => Some(Duration::from_millis(200)),
        Err(e) => {
            tracing::warn!(tenant = %claim.tenant, error = %e,
                "cannot check concurrent_runs; the run stays queued (quotas fail closed)");
            Some(Duration::from_secs(1))
        }
    }
}

async fn execute(state: Arc<ServerState>, claim: Claim) {
    let (run_id, tenant_id) = (claim.run_id.clone(), claim.tenant.clone());
    let Some(tenant) = state.tenant(&tenant_id) else {
        let _ = state.queue.release(&claim).await;
        return;
    };
    let cap = tenant.settings.quotas.concurrent_runs;
    let cancel = CancellationToken::new();
    if let Ok(mut active) = state.active.lock() {
        active.insert(run_id.clone(), cancel.clone());
    }
    state.count_running(&tenant_id, 1);
    state.hub.open(&run_id);
    // Renew the lease while the attempt runs. The attempt stops starting
    // nodes when the process drains, or when its lease is lost (another
    // worker may have taken the run over) or cannot be renewed for as long
    // as it lasts.
    let attempt_drain = state.drain.child_token();
    let renew = {
        let (state, claim, tenant_id) = (state.clone(), claim.clone(), tenant_id.clone());
        let run_id = claim.run_id.clone();
        let lost = attempt_drain.clone();
        let lease = Duration::from_secs(state.settings.lease_secs.max(2));
        tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(lease / 3).await;
                match state.queue.renew(&claim, &state.worker_id, lease).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(run = %run_id, "lost the run's lease; starting no more of its nodes");
                        lost.cancel();
                        break;
                    }
                    Err(e) if renewed.elapsed() >= lease => {
                        tracing::warn!(run = %run_id, error = %e, "cannot renew the run's lease; starting no more of its nodes");
                        lost.cancel();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(run = %run_id, error = %e, "cannot renew the run's lease; retrying")
                    }
                }
                if let Some(cap) = cap {
                    let _ = state
                        .quotas
                        .acquire_run(&tenant_id, &run_id, cap, lease)
                        .await;
                }
            }
        })
    };
    let quotas = tenant.settings.quotas.clone();
    let caps = tenant.plugin_caps();
    let scope = RunScope {
        tenant: tenant_id.clone(),
        cache_namespace: format!("tenant:{tenant_id}"),
        budget: Some(Arc::new(TenantBudget {
            state: state.quotas.clone(),
            tenant: tenant_id.clone(),
            quotas: quotas.clone(),
        })),
        cancel: cancel.clone(),
        drain: attempt_drain.clone(),
        plugin_caps: Some(caps),
        lease: Some(crate::store::Lease {
            token: claim.token,
            lost: attempt_drain,
        }),
        ..RunScope::default()
    };
    let options = RunOptions {
        model_override: None,
        out_root: tenant.runs_dir(),
        replies: HashMap::new(),
        events: Arc::new(HubSink {
            hub: state.hub.clone(),
            run_id: run_id.clone(),
            tenant: tenant_id.clone(),
        }),
        allow_extra_inputs: true,
        cache_mode: crate::cache::CacheMode::Use,
        human: None,
        local_functions: Some(tenant.local_functions()),
        plugin_policy: tenant.plugin_policy(),
    };
    let status = match state.app.resume(&run_id, options, scope).await {
        Ok(outcome) => outcome.status,
        Err(crate::app::ResumeError::Ended { .. }) => RunStatus::Cancelled,
        Err(e) => {
            tracing::error!(run = %run_id, error = %e, "run cannot continue");
            let _ = state.store.set_status(&run_id, RunStatus::Failed).await;
            RunStatus::Failed
        }
    };
    renew.abort();
    if cap.is_some() {
        state.quotas.release_run(&tenant_id, &run_id).await;
    }
    // Only while this claim still holds the run: once another worker has
    // taken it over, the queue row is that worker's.
    let settled = if status == RunStatus::Queued {
        state.queue.release(&claim).await
    } else {
        state.queue.complete(&claim).await
    };
    match settled {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(run = %run_id, "the run's lease had passed to another worker; leaving the run to it")
        }
        Err(e) => tracing::error!(run = %run_id, error = %e, "cannot update the work queue"),
    }
    state.hub.close(&run_id);
    if let Ok(mut active) = state.active.lock() {
        active.remove(&run_id);
    }
    state.count_running(&tenant_id, -1);
    metrics::counter!("composer_runs_total", "tenant" => tenant_id.clone(), "status" => status.as_str())
        .increment(1);
    let _ = state.finished.send((run_id, status));
    state.wake.notify_one();
}
