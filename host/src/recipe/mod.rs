//! Recipes: reading files (`document`), imports and definitions (`load`),
//! `@` references (`references`), static checks (`validate`) and the typed
//! result (`model`). Knows nothing of running a recipe.

pub mod diagnostic;
pub mod document;
pub mod graph;
pub mod inputs;
pub mod load;
pub mod model;
pub mod plan;
pub mod policy;
pub mod references;
pub mod validate;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use load::{load_file, load_str, LoadFailure, Loaded};
pub use model::Recipe;
