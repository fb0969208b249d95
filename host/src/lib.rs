//! composer: runs AI content pipelines ("recipes").
//!
//! - `recipe`: load, resolve and validate recipe files into a typed `Recipe`.
//! - `template`: the one Jinja environment (prompts, conditions, values).
//! - `engine`: plan (graph, loops), inputs, state, scheduler, events.
//! - `nodes`: one executor per node type.
//! - `providers`: language, speech and transcription clients (mock so far).
//! - `plugins`: the function registry (scopes LOCAL > PROJECT > CORE).
//! - `cache`: content-addressed results (memory in front of SQLite).
//! - `store`: the SQLite database: cache entries and the run store.
//! - `metrics`: run metrics, Chrome traces and reports over runs, from events.
//! - `config`: `composer.toml` settings.
//! - `loadtest`: many runs of one recipe at once, in process or on a
//!   server, measured (`composer load-test`).
//! - `app`: `Composer`, the one entry point the CLI, server and worker call.
//! - `cli`: the `composer` command's subcommands.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod engine;
pub mod loadtest;
pub mod metrics;
pub mod nodes;
pub mod plugins;
pub mod providers;
pub mod recipe;
pub mod server;
pub mod store;
pub mod template;

use recipe::{Diagnostic, LoadFailure, Loaded};
use std::path::Path;

/// Loads a recipe and checks its graph, and the graphs of the recipes it
/// runs as sub-recipes: everything `composer validate` does.
pub fn check_file(path: &Path) -> Result<(Loaded, engine::plan::Plan), LoadFailure> {
    let loaded = recipe::load_file(path)?;
    let mut problems = Vec::new();
    let plan = match engine::plan::Plan::build(loaded.recipe.clone()) {
        Ok(plan) => Some(plan),
        Err(mut p) => {
            problems.append(&mut p);
            None
        }
    };
    let mut seen = std::collections::HashSet::new();
    check_sub_recipes(&loaded.recipe, &mut seen, &mut problems);
    match plan {
        Some(plan) if problems.is_empty() => Ok((loaded, plan)),
        _ => {
            let mut diagnostics: Vec<Diagnostic> = loaded.warnings;
            diagnostics.append(&mut problems);
            Err(LoadFailure { diagnostics })
        }
    }
}

fn check_sub_recipes(
    recipe: &recipe::Recipe,
    seen: &mut std::collections::HashSet<std::path::PathBuf>,
    problems: &mut Vec<Diagnostic>,
) {
    use recipe::model::NodeKind;
    for node in &recipe.nodes {
        let sub = match &node.kind {
            NodeKind::Recipe(sub) => sub,
            NodeKind::Map(spec) => match &spec.task.kind {
                NodeKind::Recipe(sub) => sub,
                _ => continue,
            },
            _ => continue,
        };
        if !seen.insert(sub.recipe_path.clone()) {
            continue;
        }
        if let Err(mut p) = engine::plan::Plan::build(sub.recipe.clone()) {
            problems.append(&mut p);
        }
        check_sub_recipes(&sub.recipe, seen, problems);
    }
}
