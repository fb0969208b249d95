//! The `composer` command line. This is the only layer that prints: the
//! library reports through return values and events.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cache;
pub mod graph;
pub mod inputs;
mod load_test;
mod observe;
mod plugin;
mod progress;
mod report;
mod run;
mod runs;
mod serve;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "composer",
    version,
    about = "Runs AI content pipelines (recipes)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a recipe.
    Run(run::RunArgs),
    /// Check recipes: syntax, imports, references, nodes, edges and outputs.
    Validate {
        #[arg(required = true)]
        recipes: Vec<PathBuf>,
        /// Print diagnostics as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a recipe's node graph (conditions on edges, loops dashed).
    Graph {
        recipe: PathBuf,
        #[arg(long, value_enum, default_value_t = graph::GraphFormat::Mermaid)]
        format: graph::GraphFormat,
    },
    /// Serve the multi-tenant HTTP API (and execute runs, unless
    /// `--no-worker`).
    Serve(serve::ServeArgs),
    /// Execute queued runs; serve no API.
    Worker(serve::WorkerArgs),
    /// Tenant keys.
    #[command(subcommand)]
    Tenant(serve::TenantCommand),
    /// Inspect or empty the result cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Recorded runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Scaffold, build, inspect and list plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Many runs of a recipe at once (in process, or on a `composer serve`
    /// with --server), measured: throughput, latency percentiles, failures
    /// by kind, calls, tokens, cost, cache hit rate, memory. Runs are not
    /// recorded in the run store unless --record.
    LoadTest(load_test::LoadTestArgs),
    /// Figures over recorded runs: success rate, wall time, slowest nodes,
    /// cache hit rate, calls, tokens, cost, errors by kind.
    Report(report::ReportArgs),
    /// List the inputs a recipe asks for.
    Inputs {
        recipe: PathBuf,
        /// Print a JSON Schema of the inputs.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 success, 1 failure (invalid recipe, failed run), 2 usage.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate { recipes, json } => validate::run(&recipes, json),
        Command::Graph { recipe, format } => graph::run(&recipe, format),
        Command::Inputs { recipe, json } => inputs::run(&recipe, json),
        Command::Report(args) => report::run(args),
        Command::LoadTest(args) => load_test::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Worker(args) => serve::worker(args),
        Command::Tenant(command) => serve::tenant(command),
        Command::Cache(command) => match crate::config::discover(None) {
            Ok((settings, _)) => cache::run(command, &settings.cache),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Runs(command) => match crate::config::discover(None) {
            Ok((settings, _)) => runs::run(command, settings),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Plugin(command) => match crate::config::discover(None) {
            Ok((settings, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                plugin::run(command, settings.plugins)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Prints every diagnostic of a failed load to stderr.
fn print_failure(failure: &crate::recipe::LoadFailure) {
    for d in &failure.diagnostics {
        eprintln!("{d}");
    }
}
