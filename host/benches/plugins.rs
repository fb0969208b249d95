//! What a plugin call costs, side by side in one run (hostile.wasm's
//! `count_calls`, a trivial function: no input to parse, a number out):
//! - a fresh store and instance per call (instantiate, call, drop) with
//!   fuel and an epoch deadline on: the way nodes call plugins (target
//!   ≤ 30 µs median on this machine);
//! - one instance reused for every call, for comparison;
//! - the same work as a native Rust call: the floor;
//! - a 10,000-item map of plugin calls through the whole engine, on every
//!   core and on one thread;
//! - loading a component: compiling it versus the on-disk compiled cache.
//!
//! Memory per concurrent instance is printed by `memory_per_instance`.
//! Needs the plugins built (`bash scripts/build-plugins.sh`). Run with
//! `cargo bench --bench plugins`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "common/wasm.rs"]
mod wasm;

use composer::config::EngineSettings;
use composer::engine::run::Services;
use composer::plugins::catalog::{register_project_plugins, PluginHost, PluginSettings};
use composer::plugins::runtime::PluginRuntime;
use composer::plugins::PluginLimits;
use composer::recipe::document::Format;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasm::runtime;

fn hostile() -> PathBuf {
    wasm::test_component("hostile")
}

const MAP: &str = r#"
name: plugin map
nodes:
  - id: each
    type: map
    over: "{{ range(10000) | list }}"
    max_concurrency: 32
    task:
      type: function_task
      function_identifier: count_calls
"#;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plugins = runtime(Some(cache.path().to_path_buf()));
    let loaded = plugins.load("hostile", &hostile()).unwrap();
    let limits = PluginLimits::default();

    let mut g = c.benchmark_group("plugin call");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    g.bench_function("fresh instance per call", |b| {
        b.iter(|| {
            rt.block_on(plugins.call(&loaded, "count_calls", "{}", &limits, &[], None))
                .unwrap()
        })
    });
    // The same with finished slots unmapped instead of reset in place
    // (what every call paid before): side by side in one run.
    let unmapped = wasm::runtime_with(Some(cache.path().to_path_buf()), false);
    let unmapped_loaded = unmapped.load("hostile", &hostile()).unwrap();
    g.bench_function("fresh instance per call, slots unmapped (before)", |b| {
        b.iter(|| {
            rt.block_on(unmapped.call(&unmapped_loaded, "count_calls", "{}", &limits, &[], None))
                .unwrap()
        })
    });
    let mut open = rt
        .block_on(plugins.open(
            &loaded,
            &PluginLimits {
                fuel: u64::MAX / 2,
                ..limits.clone()
            },
        ))
        .unwrap();
    g.bench_function("reused instance", |b| {
        b.iter(|| {
            rt.block_on(open.call("count_calls", "{}"))
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("native Rust floor", |b| {
        b.iter(|| {
            let input: serde_json::Value =
                serde_json::from_str(std::hint::black_box("{}")).unwrap();
            let out =
                serde_json::to_string(&(input.as_object().map_or(0, |m| m.len()) + 1)).unwrap();
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("plugin load");
    g.sample_size(10);
    g.bench_function("compile (no cache)", |b| {
        let uncached = runtime(None);
        b.iter(|| uncached.load("hostile", &hostile()).unwrap())
    });
    g.bench_function("from the on-disk cache", |b| {
        b.iter(|| plugins.load("hostile", &hostile()).unwrap())
    });
    g.finish();

    // The whole engine: a map of 10,000 plugin calls.
    let recipe = composer::recipe::load_str(MAP, Format::Yaml, Path::new("."))
        .unwrap()
        .recipe;
    let host = PluginHost::new(PluginSettings {
        paths: vec![hostile()],
        cache_dir: cache.path().to_path_buf(),
        ..PluginSettings::default()
    });
    let mut services = Services::new(EngineSettings::default());
    rt.block_on(register_project_plugins(&host, &mut services.functions));
    let services = Arc::new(services);
    let out = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("plugin map");
    g.sample_size(10).throughput(Throughput::Elements(10_000));
    g.bench_function("10,000 items", |b| {
        b.iter(|| wasm::run_ok(&rt, &services, &recipe, out.path()))
    });
    // The same on one thread: what running items as tasks of their own
    // gains on this machine's cores.
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("10,000 items, one thread", |b| {
        b.iter(|| wasm::run_ok(&one_thread, &services, &recipe, out.path()))
    });
    g.finish();

    memory_per_instance(&rt, &plugins, &loaded);
}

/// Holds 64 calls in flight at once (each spinning until its 400 ms
/// deadline) and compares the process's RSS with the idle figure.
fn memory_per_instance(
    rt: &tokio::runtime::Runtime,
    plugins: &PluginRuntime,
    loaded: &composer::plugins::runtime::LoadedComponent,
) {
    let limits = PluginLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 400,
        ..PluginLimits::default()
    };
    let before = rss_bytes();
    let peak = rt.block_on(async {
        let calls = (0..64).map(|_| plugins.call(loaded, "loop_forever", "{}", &limits, &[], None));
        let sampler = async {
            let mut peak = 0;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(350) {
                peak = peak.max(rss_bytes());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        };
        let (_, peak) = tokio::join!(futures::future::join_all(calls), sampler);
        peak
    });
    println!(
        "memory per concurrent instance (64 in flight): {:.1} KiB (RSS {:.1} MB idle, {:.1} MB peak)",
        peak.saturating_sub(before) as f64 / 64.0 / 1024.0,
        before as f64 / 1e6,
        peak as f64 / 1e6
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
