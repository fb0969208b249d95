//! `composer validate RECIPE...`

use crate::recipe::Diagnostic;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Serialize)]
struct Report<'a> {
    file: &'a Path,
    valid: bool,
    diagnostics: Vec<Diagnostic>,
}

pub fn run(recipes: &[PathBuf], json: bool) -> ExitCode {
    let mut all_valid = true;
    let mut reports = Vec::new();
    for path in recipes {
        let (valid, diagnostics, summary) = match crate::check_file(path) {
            Ok((loaded, plan)) => {
                let summary = format!(
                    "{}: valid ({} nodes, {} edges, {} loops, {} warnings)",
                    path.display(),
                    plan.nodes.len(),
                    plan.edges.len(),
                    plan.loops.len(),
                    loaded.warnings.len()
                );
                (true, loaded.warnings, summary)
            }
            Err(failure) => {
                let errors = failure.errors().count();
                let summary = format!("{}: invalid ({errors} errors)", path.display());
                (false, failure.diagnostics, summary)
            }
        };
        all_valid &= valid;
        if json {
            reports.push(Report {
                file: path,
                valid,
                diagnostics,
            });
        } else {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!("{summary}");
        }
    }
    if json {
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot encode diagnostics: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
