//! Load tests: many runs of one recipe at once, measured.
//!
//! - `spec`: what to run (users, iterations or duration, ramp-up, inputs);
//! - `target`: one run, wherever it happens, and what it reports (`Sample`);
//! - `local`: runs in this process through one shared `Composer`;
//! - `remote`: runs on a `composer serve` through its HTTP API;
//! - `tally`: the event sink that counts a local run's calls, tokens, cost
//!   and cache hits;
//! - `report`: latency histogram and totals, the report (`LoadReport`);
//! - `driver`: the users (tokio tasks), ramp-up and stop, live counters.
//!
//! Nothing here prints: the CLI (`composer load-test`) shows progress from
//! `Live` and prints the `LoadReport`.

pub mod driver;
pub mod local;
pub mod process;
pub mod remote;
pub mod report;
pub mod spec;
pub mod tally;
pub mod target;

pub use driver::{drive, Live};
pub use report::LoadReport;
pub use spec::{InputSets, LoadSpec, Stop};
pub use target::{Outcome, Sample, Target};

use thiserror::Error;

/// Why a load test could not run or had to stop.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("the recipe cannot run: {0}")]
    NotStarted(String),
    #[error("cannot make the temporary output folder `{path}`: {source}")]
    OutDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server at {url} cannot be used: {message}")]
    Server { url: String, message: String },
    #[error("cannot read `{path}`: {message}")]
    Inputs {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("the latency histogram cannot be made: {0}")]
    Histogram(String),
}
