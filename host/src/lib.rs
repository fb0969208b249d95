//! composer: runs AI content pipelines ("recipes").
//!
//! - `recipe`: load, resolve and validate recipe files into a typed `Recipe`.
//! - `template`: the one Jinja environment (prompts, conditions, values).
//! - `engine`: plan (graph, loops), inputs, state, scheduler, events.
//! - `nodes`: one executor per node type.
//! - `providers`: language, speech and transcription clients (mock so far).
//! - `plugins`: the function registry (scopes LOCAL > PROJECT > CORE).
//! - `config`: `composer.toml` settings.
//! - `cli`: the `composer` command's subcommands.

pub mod cli;
pub mod config;
pub mod engine;
pub mod nodes;
pub mod plugins;
pub mod providers;
pub mod recipe;
pub mod template;

use recipe::{Diagnostic, LoadFailure, Loaded};
use std::path::Path;

/// Loads a recipe and checks its graph: everything `composer validate` does.
pub fn check_file(path: &Path) -> Result<(Loaded, engine::plan::Plan), LoadFailure> {
    let loaded = recipe::load_file(path)?;
    match engine::plan::Plan::build(loaded.recipe.clone()) {
        Ok(plan) => Ok((loaded, plan)),
        Err(mut problems) => {
            let mut diagnostics: Vec<Diagnostic> = loaded.warnings;
            diagnostics.append(&mut problems);
            Err(LoadFailure { diagnostics })
        }
    }
}
