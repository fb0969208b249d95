//! Running recipes: the plan (graph, entries, loops), user inputs, the
//! state and values nodes see, the scheduler and its events.

pub mod budget;
pub mod durable;
pub mod error;
pub mod events;
pub mod inputs;
pub mod plan;
pub mod run;
pub mod runner;
pub mod state;
