//! User inputs are checked and coerced by the recipe layer
//! (`recipe::inputs`); the engine calls it before a run starts.

pub use crate::recipe::inputs::*;
