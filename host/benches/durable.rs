//! What durable runs cost, measured side by side in one process:
//! - a chain of 10,000 mock nodes and a 100,000-item map, each without a
//!   run store and with one (every node and item checkpointed, each
//!   checkpoint acknowledged before dependents start);
//! - the same map with the result cache on: first run (100,000 writes,
//!   batched by the cache writer) and the cached run.
//!
//! Figures are ratios of runs made one after the other on the same
//! machine, so a noisy neighbour moves both sides. Run with
//! `cargo bench --bench durable`; it rewrites the durable section of
//! `docs/benchmarks.md`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use composer::cache::{CacheMode, CacheSettings, ResultCache};
mod common;
#[path = "common/doc.rs"]
mod doc;

use common::{chain_recipe, load};
use composer::config::EngineSettings;
use composer::engine::events::NoEvents;
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, RunRequest};
use composer::recipe::Recipe;
use composer::store::{Database, SqliteStore};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAP: &str = r#"
name: big map
model_config: {provider: mock, model: echo}
nodes:
  - id: each
    type: map
    over: "{{ range(100000) | list }}"
    max_concurrency: 64
    task: {type: language_task, prompt: "item {{ item }}"}
"#;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn time_run(
    rt: &tokio::runtime::Runtime,
    services: &Arc<Services>,
    recipe: &Arc<Recipe>,
    mode: CacheMode,
    out: &Path,
) -> Duration {
    let request = RunRequest {
        recipe: recipe.clone(),
        inputs: Default::default(),
        model_override: None,
        out_root: out.to_path_buf(),
        replies: HashMap::new(),
        events: Arc::new(NoEvents),
        allow_extra_inputs: false,
        cache_mode: mode,
    };
    let started = Instant::now();
    let outcome = rt
        .block_on(run_recipe(services.clone(), request))
        .expect("run starts");
    assert!(outcome.success(), "bench run failed: {:?}", outcome.error);
    started.elapsed()
}

/// The best of `n` runs (the least disturbed).
fn best(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let plain = Arc::new(Services::new(EngineSettings::default()));
    let mut durable = Services::new(EngineSettings::default());
    let db = Arc::new(Database::open(&dir.path().join("runs.db")).unwrap());
    durable.store = Some(Arc::new(SqliteStore::new(db)));
    let durable = Arc::new(durable);

    let chain = load(&chain_recipe(10_000));
    let map = load(MAP);
    let mut rows = Vec::new();
    for (name, recipe, per) in [
        ("chain of 10,000 nodes", &chain, 10_000.0),
        ("map of 100,000 items", &map, 100_000.0),
    ] {
        let before = peak_rss_kib();
        let off = best(3, || time_run(&rt, &plain, recipe, CacheMode::Off, &out));
        let mid = peak_rss_kib();
        let on = best(3, || time_run(&rt, &durable, recipe, CacheMode::Off, &out));
        let after = peak_rss_kib();
        rows.push(format!(
            "| `durable` | {name}: no store / checkpointed | {:.0} ms / {:.0} ms = {:.2} µs / {:.2} µs each ({:.2} ×); peak RSS {} MB / {} MB | — |",
            off.as_secs_f64() * 1e3,
            on.as_secs_f64() * 1e3,
            off.as_secs_f64() * 1e6 / per,
            on.as_secs_f64() * 1e6 / per,
            on.as_secs_f64() / off.as_secs_f64().max(1e-9),
            mid.max(before) / 1024,
            after / 1024,
        ));
    }

    // The cache on: a first run writes 100,000 results through the batching
    // writer; the second reads them (memory layer dropped: a new cache).
    let cache_settings = CacheSettings {
        path: dir.path().join("cache.db"),
        ..CacheSettings::default()
    };
    let cache_db = Arc::new(Database::open(&cache_settings.path).unwrap());
    let mut cached = Services::new(EngineSettings::default());
    cached.cache = Some(Arc::new(
        ResultCache::new(&cache_settings, Some(cache_db.clone())).unwrap(),
    ));
    let cached = Arc::new(cached);
    let first = time_run(&rt, &cached, &map, CacheMode::Use, &out);
    let mut fresh = Services::new(EngineSettings::default());
    fresh.cache = Some(Arc::new(
        ResultCache::new(&cache_settings, Some(cache_db)).unwrap(),
    ));
    let fresh = Arc::new(fresh);
    let second = time_run(&rt, &fresh, &map, CacheMode::Use, &out);
    rows.push(format!(
        "| `durable` | map of 100,000 items, cache on: first run / cached run (from SQLite) | {:.0} ms / {:.0} ms ({:.1} ×) | first run not one transaction per item |",
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        first.as_secs_f64() / second.as_secs_f64().max(1e-9)
    ));
    for r in &rows {
        println!("{r}");
    }
    doc::write_section(
        "durable",
        "Durable runs (written by `cargo bench --bench durable`)",
        &format!(
            "| bench | what | figure | target |\n| --- | --- | --- | --- |\n{}",
            rows.join("\n")
        ),
    );
}
