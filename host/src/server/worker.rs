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
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs until the process drains, then waits for running attempts.
pub async fn work(state: Arc<ServerState>) {
    let lease = Duration::from_secs(state.settings.lease_secs.max(2));
    let mut running = tokio::task::JoinSet::new();
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
        let skip = state.tenants_at_cap();
        let claim = match state.queue.claim(&state.worker_id, lease, skip).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the work queue");
                None
            }
        };
        match claim {
            Some(claim) => {
                let state = state.clone();
                running.spawn(async move { execute(state, claim.run_id, claim.tenant).await });
            }
            None => {
                // Woken by new work; a slow poll catches expired leases.
                tokio::select! {
                    () = state.wake.notified() => {}
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

async fn execute(state: Arc<ServerState>, run_id: String, tenant_id: String) {
    let Some(tenant) = state.tenant(&tenant_id) else {
        tracing::error!(run = %run_id, tenant = %tenant_id, "queued run of an unknown tenant");
        let _ = state.queue.remove(&run_id).await;
        return;
    };
    let cancel = CancellationToken::new();
    if let Ok(mut active) = state.active.lock() {
        active.insert(run_id.clone(), cancel.clone());
    }
    state.count_running(&tenant_id, 1);
    state.hub.open(&run_id);
    // Renew the lease while the attempt runs.
    let renew = {
        let (state, run_id) = (state.clone(), run_id.clone());
        let lease = Duration::from_secs(state.settings.lease_secs.max(2));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if !matches!(
                    state.queue.renew(&run_id, &state.worker_id, lease).await,
                    Ok(true)
                ) {
                    break;
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
        drain: state.drain.clone(),
        plugin_caps: Some(caps),
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
    let settled = if status == RunStatus::Queued {
        state.queue.release(&run_id).await
    } else {
        state.queue.remove(&run_id).await
    };
    if let Err(e) = settled {
        tracing::error!(run = %run_id, error = %e, "cannot update the work queue");
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
