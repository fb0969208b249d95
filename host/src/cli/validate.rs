//! `composer validate RECIPE...`

use crate::plugins::catalog::{register_project_plugins, PluginHost};
use crate::plugins::FunctionRegistry;
use crate::recipe::diagnostic::{did_you_mean, Code};
use crate::recipe::{Diagnostic, Recipe};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Serialize)]
struct Report<'a> {
    file: &'a Path,
    valid: bool,
    diagnostics: Vec<Diagnostic>,
}

/// The functions composer can call, per plugin search path (it depends on
/// the recipe's folder; plugin folders are read only when a recipe names a
/// function).
struct Functions {
    registries: std::collections::HashMap<Vec<PathBuf>, FunctionRegistry>,
}

impl Functions {
    fn unknown(&mut self, recipe: &Recipe) -> Vec<Diagnostic> {
        let used = recipe.functions();
        if used.is_empty() {
            return Vec::new();
        }
        let mut settings = crate::config::discover(None)
            .map(|(s, _)| s.plugins)
            .unwrap_or_default();
        settings.paths =
            crate::plugins::discovery::search_path(&settings.paths, Some(&recipe.base_dir));
        let registry = self
            .registries
            .entry(settings.paths.clone())
            .or_insert_with(|| {
                let mut registry = FunctionRegistry::default();
                let host = PluginHost::new(settings);
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    for w in rt.block_on(register_project_plugins(&host, &mut registry)) {
                        eprintln!("warning: {w}");
                    }
                }
                registry
            });
        used.into_iter()
            .filter(|(_, name)| registry.get(name).is_none())
            .map(|(path, name)| {
                recipe.locate(
                    Diagnostic::error(
                        Code::UnknownFunction,
                        format!("function `{name}` is not provided by any plugin or the host"),
                    )
                    .at(format!("{path}.function_identifier"))
                    .with_hint(did_you_mean(&name, registry.names())),
                )
            })
            .collect()
    }
}

pub fn run(recipes: &[PathBuf], json: bool) -> ExitCode {
    let mut functions = Functions {
        registries: std::collections::HashMap::new(),
    };
    let mut all_valid = true;
    let mut reports = Vec::new();
    for path in recipes {
        let (valid, diagnostics, summary) = match crate::check_file(path) {
            Ok((loaded, plan)) => {
                let unknown = functions.unknown(&loaded.recipe);
                let mut diagnostics = loaded.warnings;
                if unknown.is_empty() {
                    let summary = format!(
                        "{}: valid ({} nodes, {} edges, {} loops, {} warnings)",
                        path.display(),
                        plan.nodes.len(),
                        plan.edges.len(),
                        plan.loops.len(),
                        diagnostics.len()
                    );
                    (true, diagnostics, summary)
                } else {
                    let summary = format!("{}: invalid ({} errors)", path.display(), unknown.len());
                    diagnostics.extend(unknown);
                    (false, diagnostics, summary)
                }
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
