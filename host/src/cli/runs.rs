//! `composer runs list|show`

use crate::store::{Database, RunFilter, RunStore};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        recipe: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: inputs, status, outputs, error and its nodes.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
}

fn time(unix: f64) -> String {
    let secs = unix as u64;
    let (y, m, d) = crate::engine::runner::civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

pub fn run(command: RunsCommand, db_path: &Path) -> ExitCode {
    let store = match Database::open(db_path) {
        Ok(db) => RunStore::new(Arc::new(db)),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        RunsCommand::List {
            recipe,
            limit,
            json,
        } => {
            let filter = RunFilter {
                recipe,
                since: None,
                limit: Some(limit),
            };
            match store.list(&filter) {
                Ok(runs) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&runs).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(runs) => {
                    if runs.is_empty() {
                        println!("no runs recorded in {}", db_path.display());
                    }
                    for r in runs {
                        let wall = r
                            .finished_at
                            .map(|f| format!("{:.2}s", f - r.started_at))
                            .unwrap_or_else(|| "-".into());
                        println!(
                            "{}  {}  {:<9} {:>8}  {}",
                            r.id,
                            time(r.started_at),
                            r.status,
                            wall,
                            r.recipe
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        RunsCommand::Show { run_id, json } => match store.get(&run_id) {
            Ok(Some((run, nodes))) if json => {
                let v = serde_json::json!({"run": run, "nodes": nodes});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(Some((run, nodes))) => {
                println!("{} ({}) {}", run.id, run.recipe, run.status);
                println!("  started  {}", time(run.started_at));
                if let Some(f) = run.finished_at {
                    println!("  finished {} ({:.2}s)", time(f), f - run.started_at);
                }
                println!("  inputs   {}", run.inputs);
                if let Some(e) = &run.error {
                    println!("  error    {e}");
                }
                println!("  nodes:");
                for n in nodes {
                    let d = n.duration.map(|d| format!("{d:.3}s")).unwrap_or_default();
                    println!("    {:<32} {:<10} {d}", n.node, n.status);
                    if let Some(e) = n.error {
                        println!("      error: {e}");
                    }
                }
                if let Some(o) = &run.outputs {
                    println!(
                        "  outputs:\n{}",
                        serde_json::to_string_pretty(o).unwrap_or_default()
                    );
                }
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!("error: no run `{run_id}` in {}", db_path.display());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
