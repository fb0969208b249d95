//! Starting a run: check inputs and the plan before anything runs, make the
//! run's output folder, execute, and report the outcome.

use super::error::RunError;
use super::events::{EventKind, EventSink};
use super::inputs;
use super::plan::Plan;
use super::run::{execute, preflight, RunContext, Services};
use crate::recipe::model::{ModelSpec, Recipe};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub out_dir: PathBuf,
    pub duration: Duration,
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

/// Runs a recipe to the end.
pub async fn run_recipe(
    services: Arc<Services>,
    request: RunRequest,
) -> Result<RunOutcome, NotStarted> {
    let recipe = request.recipe.clone();
    let values = inputs::prepare(
        &recipe.user_inputs,
        &request.inputs,
        request.allow_extra_inputs,
    )
    .map_err(|p| NotStarted(RunError::Inputs(p)))?;
    let problems = preflight(&recipe, &services, request.model_override.as_ref());
    if !problems.is_empty() {
        return Err(NotStarted(RunError::Preflight(problems.join("\n"))));
    }
    let plan = Plan::build(recipe.clone()).map_err(|d| {
        NotStarted(RunError::Preflight(
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    })?;
    let run_id = new_run_id();
    let out_dir = request.out_root.join(&run_id);
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        NotStarted(RunError::Preflight(format!(
            "cannot create the run's output folder `{}`: {e}",
            out_dir.display()
        )))
    })?;
    let out_dir = std::fs::canonicalize(&out_dir).unwrap_or(out_dir);
    // The run store records the run as it goes; a store that fails is
    // reported once and the run goes on without it.
    let recorder = services.store.as_ref().and_then(|store| {
        let path = recipe.file.as_ref().map(|f| f.display().to_string());
        match store.begin(
            &run_id,
            &recipe.name,
            path.as_deref(),
            &serde_json::Value::Object(values.clone()),
        ) {
            Ok(r) => Some(r),
            Err(e) => {
                request.events.emit(super::events::Event {
                    at: Duration::ZERO,
                    kind: EventKind::Log {
                        node: String::new(),
                        level: "warn".into(),
                        message: format!("run store unavailable, run not recorded: {e}"),
                    },
                });
                None
            }
        }
    });
    // Recorded runs keep their metrics, which `composer report` reads.
    let collector = recorder
        .as_ref()
        .map(|_| crate::metrics::collector::MetricsCollector::new());
    let events: Arc<dyn EventSink> = match (&recorder, &collector) {
        (Some(r), Some(c)) => Arc::new(super::events::FanOut(vec![
            request.events.clone(),
            r.clone(),
            c.clone(),
        ])),
        _ => request.events.clone(),
    };
    let run = Arc::new(RunContext {
        services,
        run_id: run_id.clone(),
        out_dir: out_dir.clone(),
        events,
        started: Instant::now(),
        model_override: request.model_override,
        replies: request.replies,
        read_grants: file_input_folders(&recipe, &values),
        cache_mode: request.cache_mode,
        recorder: recorder.clone(),
    });
    run.emit(EventKind::RunStarted {
        run_id: run_id.clone(),
        recipe: recipe.name.clone(),
    });
    let plan = Arc::new(plan);
    // The scheduler runs as a task of its own: node tasks it spawns then
    // start on the same worker thread, instead of every node costing two
    // cross-thread wake-ups (caller's thread to worker and back). A panic
    // in it is this run's failure, not the host's.
    let result = match tokio::spawn(execute(run.clone(), plan.clone(), values, String::new())).await
    {
        Ok(r) => r,
        Err(e) => Err(super::error::RunError::Internal(format!(
            "the scheduler stopped: {e}"
        ))),
    };
    let duration = run.started.elapsed();
    run.emit(EventKind::RunFinished {
        success: result.is_ok(),
        duration,
    });
    if let Some(r) = &recorder {
        let metrics = collector
            .as_ref()
            .and_then(|c| serde_json::to_value(c.metrics(&plan)).ok());
        match &result {
            Ok(f) => r.finish(
                true,
                Some(serde_json::Value::Object(f.outputs.clone())),
                None,
                metrics,
            ),
            Err(e) => r.finish(false, None, Some(e.to_string()), metrics),
        }
    }
    Ok(match result {
        Ok(finished) => RunOutcome {
            run_id,
            out_dir,
            duration,
            outputs: finished.outputs,
            error: None,
            mock: finished.mock,
        },
        Err(e) => RunOutcome {
            run_id,
            out_dir,
            duration,
            outputs: serde_json::Map::new(),
            error: Some(e),
            mock: false,
        },
    })
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

/// `run-YYYYMMDD-HHMMSS-xxxx`: sortable by time, unique enough per machine.
pub fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:04x}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60,
        rand::random::<u16>()
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
