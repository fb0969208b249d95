//! Running recipes: the plan (graph, entries, loops) and user inputs.

pub mod inputs;
pub mod plan;
