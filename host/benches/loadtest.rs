//! What `composer load-test` itself costs: 1,000 users on a zero-latency
//! mock recipe, through the load-test driver (`loadtest::drive` with the
//! local target, as `composer load-test` runs it), beside the same number
//! of runs made by 1,000 bare tasks calling `Composer::run` in a loop on
//! the same shared app. Both in one process, one after the other, one
//! tokio runtime; CPU is the process's user + system time over each part.
//! The tool's own CPU share is the extra CPU per run of the driver over
//! the bare loop, as a part of the driver's CPU per run (the driver's
//! removal of each run's folder included; the bare loop leaves them).
//!
//! `cargo bench -p composer --bench loadtest` rewrites the load-test
//! section of `docs/benchmarks.md`; `LOADTEST_BENCH_RUNS=2000` makes a
//! quick check that writes nothing.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "common/doc.rs"]
mod doc;

use composer::app::{Composer, RunOptions};
use composer::cache::CacheMode;
use composer::config::Settings;
use composer::engine::events::NoEvents;
use composer::engine::runner::RunScope;
use composer::loadtest::local::{LocalTarget, OutRoot};
use composer::loadtest::process::{cores, cpu_secs, peak_rss_bytes};
use composer::loadtest::{drive, InputSets, Live, LoadSpec, Stop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const USERS: usize = 1000;

const RECIPE: &str = "name: zero\nnodes:\n  - {id: a, type: language_task, model: {provider: mock, model: echo}, prompt: \"hi {{ who }}\"}\nuser_inputs:\n  - {id: who, type: string, default: you}\n";

struct Part {
    secs: f64,
    cpu: f64,
}

fn main() {
    let runs: u64 = std::env::var("LOADTEST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let quick = std::env::var("LOADTEST_BENCH_RUNS").is_ok();
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = dir.path().join("zero.yaml");
    std::fs::write(&recipe_path, RECIPE).unwrap();
    let recipe = composer::recipe::load_file(&recipe_path).unwrap().recipe;
    let mut settings = Settings::default();
    settings.cache.enabled = false;
    settings.cache.path = dir.path().join("composer.db");
    let app = Arc::new(
        Composer::open(settings, &[dir.path()])
            .unwrap()
            .without_run_store(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Bare: 1,000 tasks calling Composer::run until `runs` are done.
    let bare_out = dir.path().join("bare");
    std::fs::create_dir_all(&bare_out).unwrap();
    let bare = rt.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let (cpu0, t0) = (cpu_secs().unwrap_or(0.0), Instant::now());
        let mut tasks = Vec::new();
        for _ in 0..USERS {
            let (app, recipe, next, out) =
                (app.clone(), recipe.clone(), next.clone(), bare_out.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    let options = RunOptions {
                        model_override: None,
                        out_root: out.clone(),
                        replies: Default::default(),
                        events: Arc::new(NoEvents),
                        allow_extra_inputs: false,
                        cache_mode: CacheMode::Off,
                        human: None,
                        local_functions: None,
                        plugin_policy: None,
                    };
                    let outcome = app
                        .run(
                            recipe.clone(),
                            Default::default(),
                            options,
                            RunScope::default(),
                        )
                        .await
                        .unwrap();
                    assert!(outcome.success());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Part {
            secs: t0.elapsed().as_secs_f64(),
            cpu: cpu_secs().unwrap_or(0.0) - cpu0,
        }
    });

    // Through the load-test driver.
    let target = LocalTarget {
        app: app.clone(),
        recipe: recipe.clone(),
        model_override: None,
        out: OutRoot::temporary().unwrap(),
        cache_mode: CacheMode::Off,
        allow_extra_inputs: false,
        source: serde_json::Value::Null,
    };
    let spec = LoadSpec {
        users: USERS,
        stop: Stop::Iterations(runs),
        ramp_up: std::time::Duration::ZERO,
        inputs: InputSets::default(),
    };
    let report = rt
        .block_on(drive(Arc::new(target), spec, Live::new()))
        .unwrap();
    assert_eq!(report.successes, runs, "{report:?}");
    let tool = Part {
        secs: report.elapsed_secs,
        cpu: report.cpu_secs.unwrap_or(0.0),
    };

    let per_run = |p: &Part| p.cpu / runs as f64 * 1e6;
    let share = (1.0 - per_run(&bare) / per_run(&tool).max(1e-9)).max(0.0);
    let rows = [
        format!(
            "| `loadtest` | {USERS} users, {runs} runs of a zero-latency one-node mock recipe through `composer load-test`'s driver | {:.0} runs/s, {:.1} µs CPU per run ({:.0}% of {} cores busy), p50 {:.2} ms / p99 {:.2} ms, peak RSS {:.0} MB | not limited by the tool |",
            runs as f64 / tool.secs,
            per_run(&tool),
            100.0 * tool.cpu / (tool.secs * cores() as f64),
            cores(),
            report.latency_ms.p50,
            report.latency_ms.p99,
            peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        ),
        format!(
            "| `loadtest` | the same runs from {USERS} bare tasks calling `Composer::run` | {:.0} runs/s, {:.1} µs CPU per run | — |",
            runs as f64 / bare.secs,
            per_run(&bare),
        ),
        format!(
            "| `loadtest` | the load-test tool's own share of the CPU (driver over bare, per run) | {:.1}% | small |",
            share * 100.0
        ),
    ];
    for r in &rows {
        println!("{r}");
    }
    if quick {
        println!("(LOADTEST_BENCH_RUNS set: quick check, docs/benchmarks.md not written)");
        return;
    }
    doc::write_section(
        "loadtest",
        "Load-test overhead (written by `cargo bench --bench loadtest`)",
        &format!(
            "| bench | what | figure | target |\n| --- | --- | --- | --- |\n{}",
            rows.join("\n")
        ),
    );
}
