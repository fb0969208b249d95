//! The integration tests of `composer`, as one test binary (one link, one
//! process start per `cargo test`), one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

/// Shared helpers: fixture paths, running the `composer` binary, temp dirs.
mod support;

/// The real recipes of the original tool (tests/fixtures/corpus) load and
/// validate unchanged.
mod corpus;

/// One broken recipe per rule, each with the diagnostic it must produce.
mod invalid_recipes;

/// What the loader does with valid recipes: shapes, imports, references,
/// anchors, implied edges and loops.
mod loader;

/// Property tests: no input text makes the loader panic.
mod fuzz;

/// The `composer` command line: exit codes and output.
mod cli;

/// The execution engine: scheduling, loops, map, values, sub-recipes,
/// hitl, final outputs and `composer run` end to end.
mod engine;

/// The WebAssembly plugin host: limits, hostile plugins, sandbox, fresh
/// instances, scopes, caching, plugin maps, corpus runs and `composer plugin`.
mod plugins;

/// The provider layer against a local fake of the providers' HTTP APIs:
/// protocols, retries, fallback, preflight, pooling, AIMD, rate limits.
mod providers;

/// Run metrics, Chrome traces, reports and `composer run --metrics/--trace`.
mod metrics;

/// The result cache and the run store: repeat runs against a counting fake
/// provider, keys, modes, TTLs, single flight, functions, audio, broken
/// databases, `composer cache|runs` and a killed run.
mod cache;

/// Durable runs (SIGKILL then resume, hitl across processes), error kinds,
/// and `composer serve` as a real process on 127.0.0.1.
mod hosting;

/// `composer load-test`: counts, failures by kind, percentiles, a duration
/// stop, and `--server` against a real `composer serve`.
mod loadtest;

/// The web page in a real headless Chromium over WebDriver: sign in, run
/// the flagship, hitl, failures; screenshots under `target/web-e2e/`.
mod web;

// Scale-out: serve and worker processes on one PostgreSQL and one Redis,
// private instances started by the tests.
mod scale;
