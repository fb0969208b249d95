//! The plan (graph, entry nodes, loops) is built by the recipe layer
//! (`recipe::plan`): a sub-recipe's plan is made once, when it loads.

pub use crate::recipe::plan::*;
