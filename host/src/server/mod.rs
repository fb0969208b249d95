//! `composer serve` and `composer worker` (SERVER.md): the multi-tenant
//! HTTP API over the same `Composer` the CLI uses, runs queued in the store
//! before they are answered, executed by a worker that claims them fairly,
//! live events over SSE.

pub mod config;
pub mod error;
pub mod hub;
pub mod quota;
pub mod routes;
pub mod tenants;
pub mod web;
pub mod worker;

use crate::app::Composer;
use crate::engine::events::RunStatus;
use crate::store::{RunStore, WorkQueue};
use hub::Hub;
use quota::{QuotaState, QuotaStore, SharedQuotas};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tenants::Tenant;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// Everything the routes and the worker share.
pub struct ServerState {
    pub app: Arc<Composer>,
    pub store: Arc<dyn RunStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub tenants: Vec<Arc<Tenant>>,
    pub hub: Arc<Hub>,
    pub quotas: Arc<dyn QuotaStore>,
    /// Run files, `<tenant>/runs/<run id>/` under the data folder.
    pub blobs: Arc<dyn crate::store::blobs::BlobStore>,
    pub settings: config::ServerSettings,
    /// New work for the worker.
    pub wake: Notify,
    /// Runs whose attempt ended here, with how it ended.
    pub finished: broadcast::Sender<(String, RunStatus)>,
    /// Cancel tokens of the runs executing here.
    pub active: Mutex<HashMap<String, CancellationToken>>,
    running: Mutex<HashMap<String, u64>>,
    /// Shutting down: take no runs, start no nodes.
    pub drain: CancellationToken,
    pub worker_id: String,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the server needs a run store, and the database could not be opened: {0}")]
    NoStore(String),
    #[error("tenant `{0}` is configured twice")]
    DuplicateTenant(String),
    #[error("tenant `{0}` has no usable `key_sha256` (64 hex digits each)")]
    NoKey(String),
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: String, message: String },
    #[error(transparent)]
    App(#[from] crate::app::AppError),
}

/// The process-wide Prometheus recorder (installed once).
fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone()
}

impl ServerState {
    /// Opens storage, reads the tenants, and continues whatever the last
    /// process left: runs it had leased go back to the queue.
    pub async fn open(settings: crate::config::Settings) -> Result<Arc<ServerState>, ServeError> {
        let mut settings = settings;
        // The operator's plugins are found as the command line finds them
        // (environment, config, the user folder, beside the binary).
        settings.plugins.paths =
            crate::plugins::discovery::search_path(&settings.plugins.paths, None);
        let server = settings.server.clone();
        let mut tenants: Vec<Arc<Tenant>> = Vec::new();
        for t in &settings.tenants {
            if tenants.iter().any(|x| x.id() == t.id) {
                return Err(ServeError::DuplicateTenant(t.id.clone()));
            }
            let tenant = Tenant::new(t.clone(), &server.data_dir);
            if !t.key_sha256.iter().any(|h| h.trim().len() == 64) {
                return Err(ServeError::NoKey(t.id.clone()));
            }
            tenants.push(Arc::new(tenant));
        }
        let app = Arc::new(Composer::connect(settings, &[std::path::Path::new(".")]).await?);
        for w in app.warnings() {
            tracing::warn!("{w}");
        }
        let (Some(store), Some(queue)) = (app.store(), app.queue()) else {
            return Err(ServeError::NoStore(app.warnings().join("; ")));
        };
        for t in &tenants {
            for w in t.reload_plugins(app.plugin_host()).await {
                tracing::warn!(tenant = t.id(), "{w}");
            }
        }
        // One process owns an embedded store: what it had leased before a
        // restart is its own to continue (a shared queue releases nothing:
        // leases of dead processes run out).
        if let Err(e) = queue.release_all().await {
            tracing::warn!(error = %e, "cannot release old leases");
        }
        // Daily usage lives beside the runs, whether or not results are
        // cached: a restart must not hand out a fresh budget.
        let quotas: Arc<dyn QuotaStore> = match app.redis() {
            Some(redis) => SharedQuotas::new(redis.clone()),
            // The app's own connection: a second one on the same file
            // would make every transaction contend with it.
            None => QuotaState::new(app.database().cloned()),
        };
        let (finished, _) = broadcast::channel(4096);
        Ok(Arc::new(ServerState {
            store,
            queue,
            tenants,
            hub: Arc::new(Hub::default()),
            quotas,
            blobs: Arc::new(crate::store::blobs::FsBlobs {
                root: server.data_dir.clone(),
            }),
            settings: server,
            wake: Notify::new(),
            finished,
            active: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            drain: CancellationToken::new(),
            worker_id: format!("{}-{}", std::process::id(), rand::random::<u32>()),
            metrics: prometheus(),
            app,
        }))
    }

    /// What other processes announce through a shared store (None: the
    /// embedded store, which this process alone writes).
    pub fn changes(&self) -> Option<broadcast::Receiver<crate::store::Change>> {
        self.app.postgres().map(|pg| pg.subscribe())
    }

    /// Whether storage and the shared quota store answer, for `/readyz`.
    pub async fn readiness(&self) -> Result<(), String> {
        if let Some(pg) = self.app.postgres() {
            pg.ping().await.map_err(|e| format!("database: {e}"))?;
        } else {
            let probe = crate::store::RunFilter {
                limit: Some(1),
                ..Default::default()
            };
            self.store
                .runs(probe)
                .await
                .map_err(|e| format!("database: {e}"))?;
        }
        self.quotas.ready().await.map_err(|e| format!("redis: {e}"))
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.tenants.iter().find(|t| t.id() == id).cloned()
    }

    /// The tenant a bearer key belongs to.
    pub fn authenticate(&self, header: Option<&str>) -> Option<Arc<Tenant>> {
        let hash = tenants::bearer_hash(header)?;
        // Every tenant is tried, so timing does not tell which one matched.
        let mut found = None;
        for t in &self.tenants {
            if t.accepts(&hash) && found.is_none() {
                found = Some(t.clone());
            }
        }
        found
    }

    fn count_running(&self, tenant: &str, delta: i64) {
        if let Ok(mut r) = self.running.lock() {
            let n = r.entry(tenant.to_string()).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }

    /// Tenants whose runs executing here reach their concurrency cap.
    fn tenants_at_cap(&self) -> Vec<String> {
        let running = self.running.lock().map(|r| r.clone()).unwrap_or_default();
        self.tenants
            .iter()
            .filter(|t| {
                t.settings
                    .quotas
                    .concurrent_runs
                    .is_some_and(|cap| running.get(t.id()).copied().unwrap_or(0) >= cap)
            })
            .map(|t| t.id().to_string())
            .collect()
    }
}

/// Serves the API (and, with `worker`, executes runs) until SIGTERM or
/// Ctrl-C; then drains: no new runs, running nodes get the grace period,
/// the rest stays queued for the next start.
/// `on_listen` is told the bound address (port 0 picks a free one).
pub async fn serve(
    state: Arc<ServerState>,
    addr: &str,
    worker: bool,
    on_listen: impl FnOnce(&str),
) -> Result<(), ServeError> {
    let (listener, local) = bind(addr).await?;
    tracing::info!(addr = %local, worker, "composer serve listening");
    on_listen(&local);
    let work = worker.then(|| tokio::spawn(worker::work(state.clone())));
    let drain = state.drain.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining runs");
        drain.cancel();
    });
    let router = routes::router(state.clone());
    let stop = state.drain.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Some(w) = work {
        let _ = w.await;
    }
    served.map_err(|e| ServeError::Listen {
        addr: local,
        message: e.to_string(),
    })
}

/// A listener on `addr`, and the address it got (a port 0 is chosen here).
async fn bind(addr: &str) -> Result<(tokio::net::TcpListener, String), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Listen {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    Ok((listener, local))
}

/// Executes runs and serves no API; with `probes_addr`, answers
/// `/healthz`, `/readyz` and `/metrics` there (for Prometheus and the
/// orchestrator's probes).
pub async fn work_only(
    state: Arc<ServerState>,
    probes_addr: Option<&str>,
    on_listen: impl FnOnce(&str),
) -> Result<(), ServeError> {
    let probes = match probes_addr {
        Some(addr) => {
            let (listener, local) = bind(addr).await?;
            tracing::info!(addr = %local, "composer worker: metrics and probes listening");
            on_listen(&local);
            let router = routes::probes(state.clone());
            let stop = state.drain.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }))
        }
        None => None,
    };
    let drain = state.drain.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        drain.cancel();
    });
    worker::work(state).await;
    if let Some(probes) = probes {
        let _ = probes.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
