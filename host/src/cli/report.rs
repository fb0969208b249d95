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
    match load_records(&filter) {
        Ok(records) => print_report(&records, &filter, args.json),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The recorded runs the filter keeps.
// TODO(run store): read them with `crate::store::RunStore` (`list_runs`)
// from `.composer/composer.db`, turning each stored run and its `metrics`
// JSON (a serialized `RunMetrics`) into a `RunRecord`.
fn load_records(_filter: &Filter) -> Result<Vec<RunRecord>, String> {
    Err("`composer report` is not connected to the run store yet".into())
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
