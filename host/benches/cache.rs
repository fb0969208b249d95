//! The result cache:
//! - the hit path of `get_or_compute`: a key in the memory layer, and a key
//!   only in SQLite (a fresh memory layer, as in a new process);
//! - a map of 32 items against the mock provider at 50 ms a call (distinct
//!   prompts): the first run (`CacheMode::Refresh`, so every call is made
//!   and stored) against a fully cached second run, from the memory layer
//!   and from SQLite alone, side by side in one group; target: the cached
//!   run ≥ 100× faster. A summary line with the ratios follows.
//!
//! Run with `cargo bench --bench cache`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use composer::cache::{CacheMode, CacheSettings, ResultCache};
use composer::config::EngineSettings;
use composer::engine::events::NoEvents;
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, RunRequest};
use composer::recipe::document::Format;
use composer::recipe::{load_str, Recipe};
use composer::store::Database;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAP_RECIPE: &str = r#"
name: cached map
model_config: {provider: mock, model: echo, latency_ms: 50}
nodes:
  - id: each
    type: map
    over: "{{ range(32) | list }}"
    max_concurrency: 32
    task:
      type: language_task
      prompt: "Write line {{ item }} of the poem"
"#;

fn settings(db: &Path) -> CacheSettings {
    CacheSettings {
        path: db.to_path_buf(),
        ..CacheSettings::default()
    }
}

fn cache_over(db: &Arc<Database>) -> Arc<ResultCache> {
    Arc::new(ResultCache::new(&settings(&db.path), Some(db.clone())).expect("cache"))
}

/// A hit: the computation must never run.
async fn hit(cache: &ResultCache, key: &str) -> Value {
    let (value, cached) = cache
        .get_or_compute(key, "bench", None, CacheMode::Use, || async {
            Err::<Value, String>("the benchmark key was not cached".into())
        })
        .await
        .expect("a hit");
    assert!(cached);
    value
}

fn services(cache: Arc<ResultCache>) -> Arc<Services> {
    let mut s = Services::new(EngineSettings::default());
    s.cache = Some(cache);
    Arc::new(s)
}

fn run_map(
    rt: &tokio::runtime::Runtime,
    services: &Arc<Services>,
    recipe: &Arc<Recipe>,
    mode: CacheMode,
    out: &Path,
) {
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
    let outcome = rt
        .block_on(run_recipe(services.clone(), request))
        .expect("run starts");
    assert!(outcome.success(), "bench run failed: {:?}", outcome.error);
}

/// The median of `n` timed calls of `f`.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&dir.path().join("composer.db")).expect("database"));
    let out = dir.path().join("out");

    // The hit path.
    let value = json!({"text": "a reply of a few hundred bytes ".repeat(10), "mock": false});
    let key = composer::cache::key::key(&json!({"kind": "bench", "prompt": "p"}));
    let warm = cache_over(&db);
    rt.block_on(
        warm.get_or_compute(&key, "bench", None, CacheMode::Use, || async {
            Ok::<_, String>(value.clone())
        }),
    )
    .unwrap();
    let mut group = c.benchmark_group("cache hit");
    group.bench_function("memory layer", |b| b.iter(|| rt.block_on(hit(&warm, &key))));
    group.bench_function("SQLite only", |b| {
        b.iter_batched_ref(
            || cache_over(&db),
            |fresh| rt.block_on(hit(fresh, &key)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // A map of 32 calls at 50 ms: first run against cached runs.
    let recipe = load_str(MAP_RECIPE, Format::Yaml, Path::new("."))
        .unwrap_or_else(|e| panic!("bench recipe does not load: {e}"))
        .recipe;
    let memory = services(cache_over(&db));
    run_map(&rt, &memory, &recipe, CacheMode::Use, &out);
    let mut group = c.benchmark_group("map of 32 calls at 50 ms");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("first run (refresh)", |b| {
        b.iter(|| run_map(&rt, &memory, &recipe, CacheMode::Refresh, &out))
    });
    group.bench_function("second run (memory layer)", |b| {
        b.iter(|| run_map(&rt, &memory, &recipe, CacheMode::Use, &out))
    });
    group.bench_function("second run (SQLite only)", |b| {
        b.iter_batched_ref(
            || services(cache_over(&db)),
            |fresh| run_map(&rt, fresh, &recipe, CacheMode::Use, &out),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let first = median(11, || {
        run_map(&rt, &memory, &recipe, CacheMode::Refresh, &out)
    });
    let cached = median(101, || run_map(&rt, &memory, &recipe, CacheMode::Use, &out));
    let from_sqlite = median(101, || {
        let fresh = services(cache_over(&db));
        run_map(&rt, &fresh, &recipe, CacheMode::Use, &out)
    });
    let ratio = |d: Duration| first.as_secs_f64() / d.as_secs_f64().max(1e-9);
    eprintln!(
        "map of 32 calls at 50 ms (medians): first run {first:.2?}; cached from memory {cached:.2?} ({:.0}x faster); from SQLite {from_sqlite:.2?} ({:.0}x faster); target >= 100x",
        ratio(cached),
        ratio(from_sqlite)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
