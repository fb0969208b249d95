//! `composer report [--recipe NAME] [--since DURATION] [--json]`: figures
//! over recorded runs.

use crate::metrics::report::{self, Filter, RunRecord};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Only runs of this recipe (its `name`).
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<String>,
    /// Only runs started within this long before now: `7d`, `12h`, `30m`.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The filter the flags ask for, relative to `now` (unix seconds).
pub fn filter(args: &ReportArgs, now: u64) -> Result<Filter, String> {
    let since = match &args.since {
        Some(text) => {
            let d = crate::providers::retry::parse_duration_text(text)
                .map_err(|e| format!("--since: {e}"))?;
            Some(now.saturating_sub(d.as_secs()))
        }
        None => None,
    };
    Ok(Filter {
        recipe: args.recipe.clone(),
        since,
    })
}

pub fn run(args: ReportArgs) -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let filter = match filter(&args, now) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match crate::config::discover(None) {
        Ok((settings, _)) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = super::run::runtime() else {
        return ExitCode::FAILURE;
    };
    // The run store the settings name: SQLite, or `[storage] url`'s
    // PostgreSQL (a report over every process's runs).
    let loaded = runtime.block_on(async {
        let app = crate::app::Composer::connect(settings, &[])
            .await
            .map_err(|e| e.to_string())?;
        let store = app.store().ok_or_else(|| app.warnings().join("; "))?;
        load_records(store.as_ref(), &filter)
            .await
            .map_err(|e| e.to_string())
    });
    match loaded {
        Ok(records) => print_report(&records, &filter, args.json),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The finished runs in the run store that the filter keeps.
async fn load_records(
    store: &dyn crate::store::RunStore,
    filter: &Filter,
) -> Result<Vec<RunRecord>, crate::store::StoreError> {
    let runs = store
        .runs(crate::store::RunFilter {
            recipe: filter.recipe.clone(),
            since: filter.since.map(|s| s as f64),
            ..Default::default()
        })
        .await?;
    let mut records = Vec::new();
    for run in runs {
        // Runs still going (or killed) have no figures yet.
        let Some(finished) = run.finished_at else {
            continue;
        };
        let metrics = run
            .metrics
            .clone()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        // The run's error names the node that failed it; nodes that failed
        // without failing the run (`on_error: continue`) add their own.
        let mut errors: Vec<String> = run.error.iter().cloned().collect();
        if let Ok(nodes) = store.nodes(&run.id).await {
            let failing = errors.first().cloned().unwrap_or_default();
            errors.extend(
                nodes
                    .into_iter()
                    .filter_map(|n| n.error)
                    .filter(|e| !failing.contains(e.as_str())),
            );
        }
        records.push(RunRecord {
            id: run.id,
            recipe: run.recipe,
            started_at: run.started_at as u64,
            success: run.status == "succeeded",
            wall_secs: finished - run.began_at.unwrap_or(run.started_at),
            metrics,
            errors,
            failure_kind: run
                .failure
                .as_ref()
                .map(|f| report::failure_kind(f).to_string()),
        });
    }
    Ok(records)
}

/// Builds the report over `records` (filtered again, so a source that
/// ignores the filter still gives the right figures) and prints it.
pub fn print_report(records: &[RunRecord], filter: &Filter, json: bool) -> ExitCode {
    let kept = report::select(records, filter);
    let built = report::build(&kept);
    if json {
        match serde_json::to_string_pretty(&built) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report::render_text(&built));
    }
    ExitCode::SUCCESS
}
