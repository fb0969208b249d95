//! Plugin languages side by side in one run: the same trivial function
//! (`echo`, its input back) in the Rust, Python and JavaScript test
//! plugins (`plugins/dist/test/hostile*.wasm`):
//! - loading the component: compiling it (no cache) versus the on-disk
//!   compiled cache;
//! - one call in a fresh instance (instantiate, call, drop), with fuel and a
//!   deadline on, as nodes call plugins (median);
//! - a 1,000-item map of calls through the whole engine (items per second).
//!
//! Needs the plugins built (`bash scripts/build-plugins.sh`). Run with
//! `cargo bench --bench languages`; it rewrites the languages section of
//! `docs/benchmarks.md`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "common/doc.rs"]
mod doc;
#[path = "common/wasm.rs"]
mod wasm;

use composer::config::EngineSettings;
use composer::engine::run::Services;
use composer::plugins::catalog::{register_project_plugins, PluginHost, PluginSettings};
use composer::plugins::PluginLimits;
use composer::recipe::document::Format;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LANGUAGES: [(&str, &str, usize); 3] = [
    ("Rust", "hostile", 2_000),
    ("Python", "hostile_py", 200),
    ("JavaScript", "hostile_js", 200),
];

const MAP: &str = r#"
name: language map
nodes:
  - id: each
    type: map
    over: "{{ range(1000) | list }}"
    max_concurrency: auto
    task:
      type: function_task
      function_identifier: echo
      input: {n: "{{ item }}"}
"#;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

struct Figures {
    language: &'static str,
    compile: Duration,
    cached_load: Duration,
    fresh_call: Duration,
    map_per_sec: f64,
    bytes: u64,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    language: &'static str,
    stem: &str,
    calls: usize,
) -> Figures {
    let file = wasm::test_component(stem);
    let cache = tempfile::tempdir().unwrap();

    let started = Instant::now();
    wasm::runtime(None).load(stem, &file).unwrap();
    let compile = started.elapsed();

    let plugins = wasm::runtime(Some(cache.path().to_path_buf()));
    plugins.load(stem, &file).unwrap();
    let cached_load = median(
        (0..10)
            .map(|_| {
                let fresh = wasm::runtime(Some(cache.path().to_path_buf()));
                let started = Instant::now();
                fresh.load(stem, &file).unwrap();
                started.elapsed()
            })
            .collect(),
    );

    let loaded = plugins.load(stem, &file).unwrap();
    let limits = PluginLimits::default();
    let input = r#"{"n": 1}"#;
    // Warm-up: the first calls fault pages of the image in.
    for _ in 0..10 {
        rt.block_on(plugins.call(&loaded, "echo", input, &limits, &[], None))
            .unwrap();
    }
    let fresh_call = median(
        (0..calls)
            .map(|_| {
                let started = Instant::now();
                rt.block_on(plugins.call(&loaded, "echo", input, &limits, &[], None))
                    .unwrap();
                started.elapsed()
            })
            .collect(),
    );

    let recipe = composer::recipe::load_str(MAP, Format::Yaml, Path::new("."))
        .unwrap()
        .recipe;
    let host = PluginHost::new(PluginSettings {
        paths: vec![file.clone()],
        cache_dir: cache.path().to_path_buf(),
        ..PluginSettings::default()
    });
    let mut services = Services::new(EngineSettings::default());
    rt.block_on(register_project_plugins(&host, &mut services.functions));
    let services = Arc::new(services);
    let out = tempfile::tempdir().unwrap();
    let run = || {
        let started = Instant::now();
        wasm::run_ok(rt, &services, &recipe, out.path());
        started.elapsed()
    };
    run();
    let map = median((0..3).map(|_| run()).collect());

    Figures {
        language,
        compile,
        cached_load,
        fresh_call,
        map_per_sec: 1_000.0 / map.as_secs_f64(),
        bytes: std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0),
    }
}

/// Median fresh-instance call of the Rust plugin with finished slots
/// unmapped, and reset in place, alternating rounds so both see the same
/// machine.
fn reset_side_by_side(rt: &tokio::runtime::Runtime) -> (Duration, Duration) {
    let file = wasm::test_component("hostile");
    let cache = tempfile::tempdir().unwrap();
    let runtimes: Vec<_> = [false, true]
        .into_iter()
        .map(|in_place| {
            let r = wasm::runtime_with(Some(cache.path().to_path_buf()), in_place);
            let loaded = r.load("hostile", &file).unwrap();
            (r, loaded)
        })
        .collect();
    let limits = PluginLimits::default();
    let input = r#"{"n": 1}"#;
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..10 {
        for (i, (r, loaded)) in runtimes.iter().enumerate() {
            for _ in 0..200 {
                let started = Instant::now();
                rt.block_on(r.call(loaded, "echo", input, &limits, &[], None))
                    .unwrap();
                samples[i].push(started.elapsed());
            }
        }
    }
    let [unmapped, in_place] = samples;
    (median(unmapped), median(in_place))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let figures: Vec<Figures> = LANGUAGES
        .iter()
        .map(|(language, stem, calls)| {
            let f = measure(&rt, language, stem, *calls);
            println!(
                "{language}: compile {}, cached load {}, fresh call {}, map {:.0} items/s",
                fmt(f.compile),
                fmt(f.cached_load),
                fmt(f.fresh_call),
                f.map_per_sec
            );
            f
        })
        .collect();
    let rust = &figures[0];
    let mut body = String::from(
        "`cargo bench --bench languages`, release build, this machine (2 cores, shared), \
         one run, all three languages measured one after the other. `echo` returns its \
         input; a fresh instance per call with fuel and a deadline on, as nodes call \
         plugins. Ratios are against Rust.\n\n\
         | language | component | compile (no cache) | load from cache | call, fresh instance (median) | 1,000-item map |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for f in &figures {
        let _ = writeln!(
            body,
            "| {} | {:.1} MB | {} | {} | {} ({:.0}×) | {:.0} items/s ({:.2}×) |",
            f.language,
            f.bytes as f64 / 1e6,
            fmt(f.compile),
            fmt(f.cached_load),
            fmt(f.fresh_call),
            f.fresh_call.as_secs_f64() / rust.fresh_call.as_secs_f64(),
            f.map_per_sec,
            f.map_per_sec / rust.map_per_sec,
        );
    }
    let (unmapped, in_place) = reset_side_by_side(&rt);
    let _ = write!(
        body,
        "\nRust, a fresh instance per call, measured side by side in this run (rounds of \
         200 calls, alternating): finished slots unmapped (as before) {} / reset in place \
         where the kernel reports the pages written (Linux 6.7+ `PAGEMAP_SCAN`) {} \
         ({:.2}×).\n",
        fmt(unmapped),
        fmt(in_place),
        unmapped.as_secs_f64() / in_place.as_secs_f64().max(1e-12)
    );
    doc::write_section("languages", "Plugin languages side by side", &body);
}
