//! Starting a run: check inputs and the plan before anything runs, record
//! the run, make its output folder, execute, and record the outcome. A run
//! recorded in a store can be continued (`drive` with the checkpoints of
//! its earlier attempts): only what had not finished runs again.

use super::budget::Budget;
use super::durable::{Journal, RunEnd};
use super::error::RunError;
use super::events::{EventKind, EventSink, RunStatus};
use super::inputs;
use super::plan::Plan;
use super::run::{execute, preflight, RunContext, Services};
use crate::recipe::model::{ModelSpec, Recipe};
use crate::store::{Created, NewRun};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub struct RunRequest {
    pub recipe: Arc<Recipe>,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub model_override: Option<ModelSpec>,
    /// Folder under which the run's own folder is made.
    pub out_root: PathBuf,
    pub replies: HashMap<String, serde_json::Value>,
    pub events: Arc<dyn EventSink>,
    /// Accept inputs the recipe does not declare.
    pub allow_extra_inputs: bool,
    /// `--no-cache` / `--refresh`.
    pub cache_mode: crate::cache::CacheMode,
}

/// What differs per tenant (or per run) beyond the request itself.
#[derive(Clone, Default)]
pub struct RunScope {
    /// Empty for the command line.
    pub tenant: String,
    /// Prefix of the run's cache keys.
    pub cache_namespace: String,
    pub budget: Option<Arc<dyn Budget>>,
    /// How to find the recipe again to continue the run (stored with it).
    pub source: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub cancel: CancellationToken,
    pub drain: CancellationToken,
    /// The tenant's caps over plugin limits.
    pub plugin_caps: Option<crate::plugins::limits::LimitCaps>,
    /// The work-queue claim a worker's attempt runs under (see
    /// `store::Lease`); None for runs no other process can take over.
    pub lease: Option<crate::store::Lease>,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub out_dir: PathBuf,
    pub duration: Duration,
    pub status: RunStatus,
    /// The final outputs (empty when the run failed).
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub error: Option<RunError>,
    /// Some output came from the mock provider.
    pub mock: bool,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.error.is_none()
    }
}

/// Problems found before anything ran (bad inputs, unknown functions or
/// providers). The run did not start.
#[derive(Debug)]
pub struct NotStarted(pub RunError);

/// A checked run, ready to record and execute.
pub struct Prepared {
    pub recipe: Arc<Recipe>,
    pub plan: Arc<Plan>,
    /// Inputs coerced to their types, defaults filled in.
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// Checks inputs, functions, providers and keys, and builds the plan.
pub fn prepare(
    services: &Services,
    recipe: &Arc<Recipe>,
    given: &serde_json::Map<String, serde_json::Value>,
    allow_extra_inputs: bool,
    model_override: Option<&ModelSpec>,
    files_base: Option<&std::path::Path>,
) -> Result<Prepared, NotStarted> {
    let values = match files_base {
        Some(base) => inputs::prepare_in(&recipe.user_inputs, given, allow_extra_inputs, base),
        None => inputs::prepare(&recipe.user_inputs, given, allow_extra_inputs),
    }
    .map_err(|p| NotStarted(RunError::Inputs(p)))?;
    let problems = preflight(recipe, services, model_override);
    if !problems.is_empty() {
        return Err(NotStarted(RunError::Preflight(problems)));
    }
    let plan = Plan::build(recipe.clone()).map_err(|d| {
        NotStarted(RunError::InvalidRecipe(
            d.iter().map(ToString::to_string).collect(),
        ))
    })?;
    Ok(Prepared {
        recipe: recipe.clone(),
        plan: Arc::new(plan),
        values,
    })
}

/// Runs a recipe to the end (recording it when the services have a store).
pub async fn run_recipe(
    services: Arc<Services>,
    request: RunRequest,
) -> Result<RunOutcome, NotStarted> {
    run_scoped(services, request, RunScope::default()).await
}

pub async fn run_scoped(
    services: Arc<Services>,
    request: RunRequest,
    scope: RunScope,
) -> Result<RunOutcome, NotStarted> {
    let prepared = prepare(
        &services,
        &request.recipe,
        &request.inputs,
        request.allow_extra_inputs,
        request.model_override.as_ref(),
        None,
    )?;
    let run_id = new_run_id();
    let out_dir = make_out_dir(&request.out_root, &run_id)?;
    // The run store records the run as it goes; a store that fails is
    // reported once and the run goes on without it.
    let mut journal = None;
    if let Some(store) = &services.store {
        let new = NewRun {
            id: run_id.clone(),
            tenant: scope.tenant.clone(),
            recipe: prepared.recipe.name.clone(),
            recipe_path: prepared
                .recipe
                .file
                .as_ref()
                .map(|f| f.display().to_string()),
            inputs: serde_json::Value::Object(prepared.values.clone()),
            spec: run_spec(&request, &scope, &out_dir),
            idempotency_key: scope.idempotency_key.clone(),
            status: RunStatus::Running,
        };
        let opened = match store.create_run(new).await {
            Ok(Created::New(_)) | Ok(Created::Existing(_)) => {
                store.journal(&run_id, HashMap::new(), scope.lease.clone())
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(j) => journal = Some(j),
            Err(e) => warn(
                &request.events,
                &run_id,
                format!("run store unavailable, run not recorded: {e}"),
            ),
        }
    }
    let attempt = Attempt {
        run_id,
        prepared,
        out_dir,
        model_override: request.model_override,
        replies: request.replies,
        events: request.events,
        cache_mode: request.cache_mode,
        journal,
        last_seq: 0,
        scope,
    };
    Ok(drive(services, attempt).await)
}

/// What continuing a run needs, stored with it.
pub fn run_spec(
    request: &RunRequest,
    scope: &RunScope,
    out_dir: &std::path::Path,
) -> serde_json::Value {
    serde_json::json!({
        "source": scope.source,
        "model_override": request.model_override.as_ref().map(|m| serde_json::json!({
            "provider": m.provider, "model": m.model, "params": m.params,
        })),
        "cache_mode": match request.cache_mode {
            crate::cache::CacheMode::Use => "use",
            crate::cache::CacheMode::Refresh => "refresh",
            crate::cache::CacheMode::Off => "off",
        },
        "out_dir": out_dir,
    })
}

pub fn make_out_dir(root: &std::path::Path, run_id: &str) -> Result<PathBuf, NotStarted> {
    let out_dir = root.join(run_id);
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        NotStarted(RunError::Preflight(vec![format!(
            "cannot create the run's output folder `{}`: {e}",
            out_dir.display()
        )]))
    })?;
    Ok(std::fs::canonicalize(&out_dir).unwrap_or(out_dir))
}

fn warn(events: &Arc<dyn EventSink>, run_id: &str, message: String) {
    let mut event = super::events::Event::new(
        Duration::ZERO,
        EventKind::Log {
            node: String::new(),
            level: "warn".into(),
            message,
        },
    );
    event.run_id = Arc::from(run_id);
    events.emit(event);
}

/// One attempt at a run: a new run, or one continued from its checkpoints.
pub struct Attempt {
    pub run_id: String,
    pub prepared: Prepared,
    pub out_dir: PathBuf,
    pub model_override: Option<ModelSpec>,
    pub replies: HashMap<String, serde_json::Value>,
    pub events: Arc<dyn EventSink>,
    pub cache_mode: crate::cache::CacheMode,
    /// Where the attempt is recorded; holds the earlier attempts' results.
    pub journal: Option<Arc<dyn Journal>>,
    /// The last event sequence number earlier attempts used.
    pub last_seq: u64,
    pub scope: RunScope,
}

/// Executes an attempt and records how it ended.
pub async fn drive(services: Arc<Services>, attempt: Attempt) -> RunOutcome {
    let Attempt {
        run_id,
        prepared,
        out_dir,
        model_override,
        replies,
        events,
        cache_mode,
        journal,
        last_seq,
        scope,
    } = attempt;
    let Prepared {
        recipe,
        plan,
        values,
    } = prepared;
    // Recorded runs keep their metrics, which `composer report` reads.
    let collector = journal
        .as_ref()
        .map(|_| crate::metrics::collector::MetricsCollector::new());
    let sink: Arc<dyn EventSink> = match (&journal, &collector) {
        (Some(j), Some(c)) => {
            let j: Arc<dyn EventSink> = Arc::new(JournalSink(j.clone()));
            Arc::new(super::events::FanOut(vec![events.clone(), j, c.clone()]))
        }
        _ => events.clone(),
    };
    let emitter = super::events::Emitter::new(&run_id, last_seq, sink);
    let started = emitter.started();
    let run = Arc::new(RunContext {
        services,
        run_id: run_id.clone(),
        out_dir: out_dir.clone(),
        emitter,
        started,
        model_override,
        replies,
        read_grants: file_input_folders(&recipe, &values),
        opened_grants: Arc::default(),
        cache_mode,
        cache_namespace: scope.cache_namespace.clone(),
        journal: journal.clone(),
        cancel: scope.cancel.clone(),
        drain: scope.drain.clone(),
        budget: scope.budget.clone(),
        plugin_caps: scope.plugin_caps,
    });
    run.emit(EventKind::RunStarted {
        run_id: run_id.clone(),
        recipe: recipe.name.clone(),
    });
    // The scheduler runs as a task of its own: node tasks it spawns then
    // start on the same worker thread, instead of every node costing two
    // cross-thread wake-ups (caller's thread to worker and back). A panic
    // in it is this run's failure, not the host's.
    let result = match tokio::spawn(execute(
        run.clone(),
        plan.clone(),
        values,
        String::new(),
        String::new(),
    ))
    .await
    {
        Ok(r) => r,
        Err(e) => Err(RunError::Internal(format!("the scheduler stopped: {e}"))),
    };
    // Results cached during the run are in the store before it reports.
    if let Some(cache) = &run.services.cache {
        cache.flush().await;
    }
    let duration = run.started.elapsed();
    let status = match &result {
        Ok(_) => RunStatus::Succeeded,
        Err(RunError::Waiting { .. }) => RunStatus::Waiting,
        Err(RunError::Cancelled) => RunStatus::Cancelled,
        Err(RunError::Interrupted) => RunStatus::Queued,
        Err(_) => RunStatus::Failed,
    };
    let failure = result
        .as_ref()
        .err()
        .filter(|_| status == RunStatus::Failed || status == RunStatus::Cancelled)
        .map(RunError::failure);
    run.emit(EventKind::RunFinished {
        success: result.is_ok(),
        duration,
        status,
        error: failure.clone(),
    });
    if let Some(j) = &journal {
        let metrics = collector
            .as_ref()
            .and_then(|c| serde_json::to_value(c.metrics(&plan)).ok());
        j.finish(RunEnd {
            status,
            outputs: result
                .as_ref()
                .ok()
                .map(|f| serde_json::Value::Object(f.outputs.clone())),
            failure,
            metrics,
        })
        .await;
    }
    match result {
        Ok(finished) => RunOutcome {
            run_id,
            out_dir,
            duration,
            status,
            outputs: finished.outputs,
            error: None,
            mock: finished.mock,
        },
        Err(e) => RunOutcome {
            run_id,
            out_dir,
            duration,
            status,
            outputs: serde_json::Map::new(),
            error: Some(e),
            mock: false,
        },
    }
}

/// The journal as one of the run's event sinks.
struct JournalSink(Arc<dyn Journal>);

impl EventSink for JournalSink {
    fn emit(&self, event: super::events::Event) {
        self.0.emit(event);
    }
}

/// The folders of the run's `file` inputs, which plugins may read.
fn file_input_folders(
    recipe: &Recipe,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = Vec::new();
    for input in &recipe.user_inputs {
        if input.input_type != crate::recipe::model::InputType::File {
            continue;
        }
        let paths: Vec<&str> = match values.get(&input.id) {
            Some(serde_json::Value::String(p)) => vec![p.as_str()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).collect()
            }
            _ => Vec::new(),
        };
        for p in paths {
            let folder = std::fs::canonicalize(p)
                .ok()
                .and_then(|f| f.parent().map(std::path::Path::to_path_buf));
            if let Some(folder) = folder.filter(|f| !folders.contains(f)) {
                folders.push(folder);
            }
        }
    }
    folders
}

/// `run-YYYYMMDD-HHMMSS-xxxxxxxx`: sortable by time; 32 random bits keep
/// a server taking hundreds of runs a second from reusing an id.
pub fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:08x}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60,
        rand::random::<u32>()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's
/// algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_787), (2026, 11, 30));
    }
}
