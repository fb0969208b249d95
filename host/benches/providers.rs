//! What the provider layer costs, against a zero-latency fake OpenAI server
//! on loopback (`tests/all/providers/fake.rs`, included by path; it runs on
//! its own thread and runtime):
//! - throughput: 256 chat completions in flight at once (each its own
//!   task) through `Providers` — rate limits off (no `rate_limits` entry),
//!   `max_concurrency` 512, an idle pool of 256 — and the same 256 as bare
//!   reqwest POSTs, in calls per second;
//! - per-call overhead: one call at a time through the provider layer
//!   (request body, limiter, retry wrapper, reply parsing, usage and cost)
//!   and a bare reqwest POST of the same body with the same client settings
//!   whose reply is parsed as JSON, side by side, and their difference;
//! - peak RSS (VmHWM) of the process at the end;
//! - recipes at default provider settings against a fake answering in
//!   50 ms: a fan-out of 8 language tasks and a join, and a map of 32 and a
//!   synthesis, each beside its ideal (the latencies on its critical path,
//!   100 ms), cold (fresh providers, as every `composer run` is) and warm,
//!   with the fake sending no rate-limit headers and sending OpenAI's. The
//!   table is written into `docs/benchmarks.md`, between the
//!   `providers-defaults` markers.
//!
//! Run with `cargo bench --bench providers` on a quiet machine
//! (`-- defaults` runs only the recipes).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "common/doc.rs"]
mod doc;
#[path = "../../tests/all/providers/fake.rs"]
mod fake;

use composer::providers::keys::Keys;
use composer::providers::settings::{presets, ProviderSettings};
use composer::providers::{LanguageProvider, LanguageRequest, Providers};
use composer::recipe::model::ModelSpec;
use criterion::{Criterion, Throughput};
use fake::Fake;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench";
const IN_FLIGHT: usize = 256;

fn settings(fake: &Fake) -> ProviderSettings {
    let mut endpoint = presets()["openai"].clone();
    endpoint.base_url = format!("{}/v1", fake.url());
    ProviderSettings {
        endpoint: BTreeMap::from([("openai".to_string(), endpoint)]),
        rate_limits: BTreeMap::new(),
        max_concurrency: 2 * IN_FLIGHT,
        pool_max_idle_per_host: IN_FLIGHT,
        ..ProviderSettings::default()
    }
}

fn request() -> LanguageRequest {
    LanguageRequest {
        model: ModelSpec {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            params: serde_json::Map::new(),
        },
        prompt: "Write one sentence about honey bees.".into(),
        json: false,
        retry: None,
        observer: None,
    }
}

/// The bare call: POST the body, read the reply, parse it.
async fn bare_post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let reply = client
        .post(url)
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("bare POST");
    assert!(reply.status().is_success(), "{}", reply.status());
    serde_json::from_slice(&reply.bytes().await.expect("bare reply")).expect("bare JSON")
}

struct Setup {
    rt: tokio::runtime::Runtime,
    openai: Arc<dyn LanguageProvider>,
    request: LanguageRequest,
    bare: reqwest::Client,
    url: Arc<str>,
    body: Arc<Value>,
}

impl Setup {
    fn provider_call(&self) {
        let answer = self.rt.block_on(self.openai.complete(&self.request));
        assert!(!answer.expect("provider call").text.is_empty());
    }

    fn bare_call(&self) {
        self.rt
            .block_on(bare_post(&self.bare, &self.url, &self.body));
    }

    /// IN_FLIGHT provider calls at once, each its own task.
    fn provider_burst(&self) {
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    let (openai, request) = (self.openai.clone(), self.request.clone());
                    tokio::spawn(async move { openai.complete(&request).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("task").expect("provider call");
            }
        })
    }

    /// IN_FLIGHT bare POSTs at once, each its own task.
    fn bare_burst(&self) {
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    let (client, url, body) =
                        (self.bare.clone(), self.url.clone(), self.body.clone());
                    tokio::spawn(async move { bare_post(&client, &url, &body).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        })
    }
}

fn bench(c: &mut Criterion, s: &Setup) {
    // Warm both pools to IN_FLIGHT connections.
    s.provider_burst();
    s.bare_burst();

    let mut g = c.benchmark_group(format!("throughput, {IN_FLIGHT} in flight"));
    g.throughput(Throughput::Elements(IN_FLIGHT as u64));
    g.sample_size(20);
    g.bench_function("provider layer", |b| b.iter(|| s.provider_burst()));
    g.bench_function("bare reqwest", |b| b.iter(|| s.bare_burst()));
    g.finish();

    let mut g = c.benchmark_group("one call at a time");
    g.throughput(Throughput::Elements(1));
    g.bench_function("provider layer", |b| b.iter(|| s.provider_call()));
    g.bench_function("bare reqwest", |b| b.iter(|| s.bare_call()));
    g.finish();
}

/// Mean time per sequential call of `f` over `n` calls.
fn mean(n: u32, f: impl Fn()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

/// The process's peak resident set (VmHWM), as printed by the kernel.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}

const LATENCY: Duration = Duration::from_millis(50);
const RUNS: usize = 5;

fn fan_out_recipe() -> String {
    let mut y =
        String::from("name: fan\nmodel_config: {provider: openai, model: gpt-4o-mini}\nnodes:\n");
    for i in 0..8 {
        y.push_str(&format!(
            "  - {{id: n{i}, type: language_task, prompt: \"branch {i}\"}}\n"
        ));
    }
    y.push_str("  - {id: join, type: language_task, prompt: \"join\"}\nedges:\n");
    for i in 0..8 {
        y.push_str(&format!("  - START to n{i}\n  - n{i} to join\n"));
    }
    y
}

const MAP_RECIPE: &str = r#"
name: map and synthesis
model_config: {provider: openai, model: gpt-4o-mini}
nodes:
  - id: each
    type: map
    over: "{{ range(32) | list }}"
    max_concurrency: 32
    task:
      type: language_task
      prompt: "item {{ item }}"
  - id: synthesis
    type: language_task
    prompt: "sum up {{ each | length }}"
"#;

/// Median wall time of `RUNS` runs of `recipe`, each with fresh providers
/// (`cold`) or all with the same ones after a first run (warm).
fn median_run(
    rt: &tokio::runtime::Runtime,
    recipe: &Arc<composer::recipe::Recipe>,
    settings: &ProviderSettings,
    keys: &Keys,
    cold: bool,
) -> Duration {
    use composer::engine::runner::{run_recipe, RunRequest};
    let out = tempfile::tempdir().expect("temp dir");
    let services = || {
        let mut s = composer::engine::run::Services::new(Default::default());
        s.providers = Providers::from_settings(settings, keys).expect("providers");
        Arc::new(s)
    };
    let shared = services();
    let run = |svc: Arc<composer::engine::run::Services>| {
        let request = RunRequest {
            recipe: recipe.clone(),
            inputs: Default::default(),
            model_override: None,
            out_root: out.path().to_path_buf(),
            replies: Default::default(),
            events: Arc::new(composer::engine::events::NoEvents),
            allow_extra_inputs: false,
            cache_mode: Default::default(),
        };
        let start = Instant::now();
        let outcome = rt.block_on(run_recipe(svc, request)).expect("run starts");
        assert!(outcome.success(), "bench run failed: {:?}", outcome.error);
        start.elapsed()
    };
    if !cold {
        run(shared.clone());
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| run(if cold { services() } else { shared.clone() }))
        .collect();
    times.sort();
    times[RUNS / 2]
}

/// The recipes at default settings, beside their ideal.
fn default_settings_recipes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let keys = Keys::fixed([("OPENAI_API_KEY".to_string(), KEY.to_string())]);
    let load = |text: &str| {
        composer::recipe::load_str(
            text,
            composer::recipe::document::Format::Yaml,
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("bench recipe does not load: {e}"))
        .recipe
    };
    let recipes = [
        ("fan-out of 8 + join", load(&fan_out_recipe())),
        ("map of 32 + synthesis", load(MAP_RECIPE)),
    ];
    let ideal = LATENCY * 2;
    let mut table = format!(
        "| recipe (fake at {} ms, default settings) | fake sends | cold run | warm run | ideal | cold / ideal | warm / ideal |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        LATENCY.as_millis()
    );
    for headers in [None, Some(fake::LimitHeaders::OpenAi)] {
        let fake = Fake::quiet();
        fake.always("gpt-4o-mini", fake::Fault::Hang(LATENCY));
        if let Some(style) = headers {
            // A generous tier: 10,000 requests a minute.
            fake.enforce_window(style, 10_000, Duration::from_secs(60));
        }
        let mut endpoint = presets()["openai"].clone();
        endpoint.base_url = format!("{}/v1", fake.url());
        let settings = ProviderSettings {
            endpoint: BTreeMap::from([("openai".to_string(), endpoint)]),
            ..ProviderSettings::default()
        };
        for (name, recipe) in &recipes {
            let cold = median_run(&rt, recipe, &settings, &keys, true);
            let warm = median_run(&rt, recipe, &settings, &keys, false);
            let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
            let ratio = |d: Duration| format!("{:.2} ×", d.as_secs_f64() / ideal.as_secs_f64());
            let line = format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                if headers.is_some() {
                    "OpenAI headers"
                } else {
                    "no headers"
                },
                ms(cold),
                ms(warm),
                ms(ideal),
                ratio(cold),
                ratio(warm)
            );
            print!("{line}");
            table.push_str(&line);
        }
    }
    doc::write_section(
        "providers-defaults",
        "Provider rate limits at default settings",
        &table,
    );
}

fn main() {
    if std::env::args().any(|a| a == "defaults") {
        default_settings_recipes();
        return;
    }
    default_settings_recipes();
    let fake = Fake::quiet();
    let settings = settings(&fake);
    let keys = Keys::fixed([("OPENAI_API_KEY".to_string(), KEY.to_string())]);
    let providers = Providers::from_settings(&settings, &keys).expect("providers");
    let request = request();
    let setup = Setup {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
        openai: providers.language("openai").expect("openai"),
        bare: composer::providers::http::client(&settings).expect("client"),
        url: format!("{}/v1/chat/completions", fake.url()).into(),
        body: Arc::new(composer::providers::openai::chat_body(&request)),
        request,
    };

    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &setup);
    c.final_summary();

    // The overhead side by side, in one line.
    let n = 2_000;
    let layer = mean(n, || setup.provider_call());
    let bare = mean(n, || setup.bare_call());
    println!(
        "per call, sequential ({n} each): provider layer {:.1} µs, bare reqwest {:.1} µs, overhead {:+.1} µs",
        layer.as_secs_f64() * 1e6,
        bare.as_secs_f64() * 1e6,
        (layer.as_secs_f64() - bare.as_secs_f64()) * 1e6
    );
    println!(
        "fake server: {} requests over {} connections",
        fake.request_count(),
        fake.connections()
    );
    println!("peak RSS (VmHWM): {}", peak_rss());
}
