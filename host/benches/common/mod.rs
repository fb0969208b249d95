//! Recipes and helpers shared by the engine benches.

use composer::recipe::document::Format;
use composer::recipe::{load_str, Recipe};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// A chain of `nodes` zero-latency mock language tasks.
pub fn chain_recipe(nodes: usize) -> String {
    let mut y = String::from("name: chain\nmodel_config: {provider: mock, model: echo}\nnodes:\n");
    for i in 0..nodes {
        let _ = writeln!(
            y,
            "  - {{id: n{i}, type: language_task, prompt: \"step {i}\"}}"
        );
    }
    y
}

pub fn load(text: &str) -> Arc<Recipe> {
    load_str(text, Format::Yaml, Path::new("."))
        .unwrap_or_else(|e| panic!("bench recipe does not load: {e}"))
        .recipe
}
