//! Engine overhead, measured in-process with the zero- or fixed-latency mock
//! provider:
//! - a chain of 10,000 nodes (per-node cost of the scheduler, state,
//!   templates and events; target ≤ 20 µs per node);
//! - 1,000 independent nodes of 50 ms each (target: total ≤ 2 × 50 ms);
//! - a map of 100,000 items (target ≥ 50,000 items/s).
//!
//! Run with `cargo bench --bench engine`. Peak memory and the whole-process
//! cold start are measured by `cargo bench --bench process`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{chain_recipe, load};
use composer::config::EngineSettings;
use composer::engine::events::NoEvents;
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, RunRequest};
use composer::recipe::Recipe;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn fan_out_recipe(nodes: usize, latency_ms: u64) -> String {
    let mut y = format!(
        "name: fan\nmodel_config: {{provider: mock, model: echo, latency_ms: {latency_ms}}}\nnodes:\n"
    );
    for i in 0..nodes {
        writeln!(
            y,
            "  - {{id: n{i}, type: language_task, prompt: \"branch {i}\"}}"
        )
        .unwrap();
    }
    y.push_str("edges:\n");
    for i in 0..nodes {
        writeln!(y, "  - START to n{i}").unwrap();
    }
    y
}

const MAP_RECIPE: &str = r#"
name: big map
model_config: {provider: mock, model: echo}
user_inputs:
  - {id: count, type: int}
nodes:
  - id: items
    type: language_task
    model: {provider: mock, model: echo, reply: "{{ prompt }}"}
    prompt: "{{ range(count) | list | tojson }}"
    output_format: json
  - id: each
    type: map
    over: items
    max_concurrency: 64
    task:
      type: language_task
      prompt: "item {{ item }}"
"#;

fn run_once(
    rt: &tokio::runtime::Runtime,
    services: &Arc<Services>,
    recipe: &Arc<Recipe>,
    inputs: serde_json::Map<String, serde_json::Value>,
    out: &Path,
) {
    let request = RunRequest {
        recipe: recipe.clone(),
        inputs,
        model_override: None,
        out_root: out.to_path_buf(),
        replies: HashMap::new(),
        events: Arc::new(NoEvents),
        allow_extra_inputs: false,
        cache_mode: Default::default(),
    };
    let outcome = rt
        .block_on(run_recipe(services.clone(), request))
        .expect("run starts");
    assert!(outcome.success(), "bench run failed: {:?}", outcome.error);
}

fn services(max_parallel_nodes: usize) -> Arc<Services> {
    Arc::new(Services::new(EngineSettings {
        max_parallel_nodes,
        ..EngineSettings::default()
    }))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = tempfile::tempdir().unwrap();

    let chain = load(&chain_recipe(10_000));
    let svc = services(64);
    let mut group = c.benchmark_group("engine");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("chain of 10,000 nodes", |b| {
        b.iter(|| run_once(&rt, &svc, &chain, Default::default(), out.path()))
    });

    let fan = load(&fan_out_recipe(1_000, 50));
    let wide = services(1_000);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("fan-out of 1,000 nodes at 50 ms", |b| {
        b.iter(|| run_once(&rt, &wide, &fan, Default::default(), out.path()))
    });

    let map = load(MAP_RECIPE);
    let mut inputs = serde_json::Map::new();
    inputs.insert("count".into(), 100_000.into());
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("map of 100,000 items", |b| {
        b.iter(|| run_once(&rt, &svc, &map, inputs.clone(), out.path()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
