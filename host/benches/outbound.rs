//! Issue 13's benchmark (report, don't assert): the latency a plugin's
//! outbound HTTP request adds through the host (wasi:http, the allow-list
//! check, caps and the request record), against a native reqwest client
//! sending the same request to the same loopback fake of Perplexity's API,
//! side by side in one run: one at a time, and 64 in flight.
//!
//! Needs the plugins built (`bash scripts/build-plugins.sh`). Run with
//! `cargo bench -p composer --bench outbound`; the table is written into
//! `docs/benchmarks.md` between the `outbound` markers.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "common/doc.rs"]
mod doc;
// Only part of the fake is used here: its requests are not inspected.
#[allow(dead_code)]
#[path = "../../tests/all/plugins/fake_perplexity.rs"]
mod fake_perplexity;

use composer::plugins::catalog::{describe_file, PluginHost, PluginSettings, WasmFunction};
use composer::plugins::{CallContext, Function, LimitOverrides};
use composer::providers::keys::Keys;
use fake_perplexity::{FakePerplexity, KEY};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const ONE_BY_ONE: usize = 300;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 7;

fn dist() -> PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    assert!(
        dist.join("perplexity_search.wasm").is_file(),
        "build the plugins first: bash scripts/build-plugins.sh"
    );
    dist
}

/// `perplexity_search` allowed to reach `hosts`, with the key granted and
/// its base URL pointing at `base`.
async fn search(cache: &Path, hosts: &[String], base: &str) -> WasmFunction {
    let grants = LimitOverrides {
        allowed_hosts: Some(hosts.to_vec()),
        secrets: Some(vec!["PERPLEXITY_API_KEY".into()]),
        env: Some(BTreeMap::from([(
            "PERPLEXITY_BASE_URL".to_string(),
            base.to_string(),
        )])),
        ..LimitOverrides::default()
    };
    let settings = PluginSettings {
        paths: vec![dist()],
        cache_dir: cache.to_path_buf(),
        overrides: BTreeMap::from([("perplexity_search".to_string(), grants)]),
        ..PluginSettings::default()
    };
    let keys = Keys::fixed([("PERPLEXITY_API_KEY".to_string(), KEY.to_string())]);
    let host = PluginHost::with_secrets(settings, keys);
    let file = dist().join("perplexity_search.wasm");
    let (plugin, functions) = describe_file(&host, &file).await.unwrap();
    let info = functions
        .into_iter()
        .find(|f| f.name == "perplexity_search")
        .unwrap();
    WasmFunction { plugin, info }
}

fn context(out: &Path) -> CallContext {
    CallContext::bare(out, "bench")
}

fn query() -> Value {
    json!({"search_query": "latest news about Rust", "recency": "week", "mode": "fast"})
}

fn median_us(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2] * 1e6
}

async fn native(client: reqwest::Client, url: String, body: Value) -> f64 {
    let t = Instant::now();
    let reply = client
        .post(&url)
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let _ = reply.bytes().await.unwrap();
    t.elapsed().as_secs_f64()
}

async fn measure() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePerplexity::start();
    let allowed = search(dir.path(), &[fake.origin()], &fake.base("ok")).await;
    let allowed = Arc::new(allowed);
    // The same call with nothing allowed: everything but the request.
    let refused = search(dir.path(), &[], &fake.base("ok")).await;
    let ctx = Arc::new(context(dir.path()));
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base("ok"));
    let body = json!({
        "model": "sonar",
        "messages": [
            {"role": "system", "content": "Be precise and concise. Cite your sources."},
            {"role": "user", "content": "latest news about Rust"},
        ],
        "search_recency_filter": "week",
    });
    for _ in 0..10 {
        native(client.clone(), url.clone(), body.clone()).await;
        allowed.call(query(), &ctx).await.unwrap();
    }
    let (mut n, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ONE_BY_ONE {
        n.push(native(client.clone(), url.clone(), body.clone()).await);
        let t = Instant::now();
        allowed.call(query(), &ctx).await.unwrap();
        p.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = refused.call(query(), &ctx).await;
        r.push(t.elapsed().as_secs_f64());
    }
    let (n1, p1, r1) = (median_us(&mut n), median_us(&mut p), median_us(&mut r));

    let (mut n64, mut p64) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| tokio::spawn(native(client.clone(), url.clone(), body.clone())))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        n64.push(t.elapsed().as_secs_f64() / IN_FLIGHT as f64);
        let t = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (f, ctx) = (allowed.clone(), ctx.clone());
                tokio::spawn(async move { f.call(query(), &ctx).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        p64.push(t.elapsed().as_secs_f64() / IN_FLIGHT as f64);
    }
    let (n64, p64) = (median_us(&mut n64), median_us(&mut p64));
    let added = p1 - r1 - n1;
    vec![
        format!("| one at a time: native reqwest POST | {n1:.0} µs |"),
        format!("| one at a time: plugin call making the same request | {p1:.0} µs ({:.1} × native) |", p1 / n1),
        format!("| one at a time: the same call refused before sending (instance, WASI, JSON) | {r1:.0} µs |"),
        format!("| added by the host's HTTP path (plugin − refused − native) | {added:.0} µs |"),
        format!("| {IN_FLIGHT} in flight, wall time per request: native / plugin calls | {n64:.0} µs / {p64:.0} µs ({:.1} ×) |", p64 / n64),
    ]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(measure());
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let body = format!(
        "Measured on {date}, {cores} cores, `{profile}` build, medians of {ONE_BY_ONE} \
         calls one at a time and {ROUNDS} rounds of {IN_FLIGHT} in flight; the fake \
         answers at once on 127.0.0.1.\n\n| what | figure |\n| --- | --- |\n{}\n",
        rows.join("\n")
    );
    print!("{body}");
    doc::write_section(
        "outbound",
        "Plugin outbound HTTP (written by `cargo bench --bench outbound`)",
        &body,
    );
}
