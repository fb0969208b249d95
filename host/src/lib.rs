//! composer: runs AI content pipelines ("recipes").
//!
//! - `recipe`: load, resolve and validate recipe files into a typed `Recipe`.
//! - `template`: the one Jinja environment (prompts, conditions, values).
//! - `engine`: plan (graph, loops), user inputs; scheduler to come.
//! - `cli`: the `composer` command's subcommands.

pub mod cli;
pub mod engine;
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
