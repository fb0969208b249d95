//! What `composer serve` costs over the library, measured against a real
//! server process on 127.0.0.1 (the binary these benches are built with):
//! - runs per second and latency p50/p99 of a one-node mock recipe through
//!   `POST /v1/recipes/NAME/runs?wait=true` with 100 concurrent clients,
//!   beside the same runs made in-process through `composer::app::Composer`
//!   (same config, same store, 100 at once), as a ratio;
//! - SSE fan-out: 1,000 subscribers on one run (every one must get every
//!   event), time from the reply that lets the run go on until the last
//!   subscriber has its last event;
//! - memory per idle tenant: RSS of a server with 1,000 configured tenants
//!   less one with 1, divided;
//! - time from the 202 to the run's first node starting.
//!
//! Reported, not asserted. The result cache is off on both sides (each run
//! really executes its node) and the server logs at `warn`. Run with
//! `cargo bench -p composer --bench serve`; it rewrites the serve section
//! of `docs/benchmarks.md`.

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
use composer::engine::events::NoEvents;
use composer::engine::runner::RunScope;
use composer::server::tenants::sha256_hex;
use composer::store::{Database, SqliteStore};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY: &str = "ck_bench_key_0000000000000000000000000000000000";
const CLIENTS: usize = 100;
const RUNS: usize = 3_000;
const SUBSCRIBERS: usize = 1_000;
const IDLE_TENANTS: usize = 1_000;
const STARTS: usize = 100;

const ONE: &str = r#"
name: one
nodes:
  - {id: a, type: language_task, model: {provider: mock, model: echo}, prompt: "hello"}
"#;

/// Waits for a reply, then four more events-making nodes.
const GATED: &str = r#"
name: gated
nodes:
  - {id: draft, type: language_task, model: {provider: mock, model: echo}, prompt: "draft"}
  - {id: approve, type: hitl, input: {text: draft}, required_fields: [ok]}
  - {id: b, type: language_task, model: {provider: mock, model: echo}, prompt: "b {{ approve.ok }}"}
  - {id: c, type: language_task, model: {provider: mock, model: echo}, prompt: "c {{ b }}"}
  - {id: d, type: language_task, model: {provider: mock, model: echo}, prompt: "d {{ c }}"}
edges: [draft to approve, approve to b, b to c, c to d]
final_outputs: [d]
"#;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `composer.toml` in `dir` with `tenants` tenants; the first has the
/// bench's key and the recipes in `dir/recipes`.
fn write_config(dir: &Path, tenants: usize) {
    let mut toml = format!(
        "[cache]\nenabled = false\npath = \"{}\"\n\n[server]\ndata_dir = \"{}\"\nmax_running = {CLIENTS}\n",
        dir.join("composer.db").display(),
        dir.join("data").display()
    );
    for i in 0..tenants {
        let key = if i == 0 {
            KEY.to_string()
        } else {
            format!("ck_idle_{i}")
        };
        toml.push_str(&format!(
            "\n[[tenants]]\nid = \"t{i}\"\nkey_sha256 = [\"{}\"]\nrecipes = [\"{}\"]\n",
            sha256_hex(key.as_bytes()),
            dir.join("recipes").display()
        ));
    }
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("recipes/one.yaml"), ONE).unwrap();
    std::fs::write(dir.join("recipes/gated.yaml"), GATED).unwrap();
    std::fs::write(dir.join("composer.toml"), toml).unwrap();
}

fn start(dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_composer"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("COMPOSER_LOG", "warn")
        .env("XDG_DATA_HOME", dir.join("xdg"))
        .env("COMPOSER_PLUGIN_PATH", "")
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("composer serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `total` runs from `clients` concurrent tasks; the whole time and each
/// request's latency.
async fn through_http(base: &str, total: usize, clients: usize) -> (Duration, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = format!("{base}/v1/recipes/one/runs?wait=true");
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, next, latencies) =
                (client.clone(), url.clone(), next.clone(), latencies.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&json!({}))
                        .send()
                        .await
                        .expect("the server answers");
                    assert_eq!(resp.status().as_u16(), 200);
                    let run: Value = resp.json().await.unwrap();
                    assert_eq!(run["status"], "succeeded", "{run}");
                    latencies.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut l = std::mem::take(&mut *latencies.lock().unwrap());
    l.sort();
    (elapsed, l)
}

/// The same runs through the library, `clients` at once.
async fn through_library(dir: &Path, total: usize, clients: usize) -> (Duration, Vec<Duration>) {
    let (settings, _) = composer::config::load(&dir.join("composer.toml")).unwrap();
    let app = Arc::new(Composer::open(settings, &[dir]).unwrap());
    let recipe = composer::recipe::load_file(&dir.join("recipes/one.yaml"))
        .unwrap_or_else(|_| panic!("the bench recipe loads"))
        .recipe;
    let out = dir.join("library-runs");
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (app, recipe, out, next, latencies) = (
                app.clone(),
                recipe.clone(),
                out.clone(),
                next.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let options = RunOptions {
                        model_override: None,
                        out_root: out.clone(),
                        replies: HashMap::new(),
                        events: Arc::new(NoEvents),
                        allow_extra_inputs: false,
                        cache_mode: CacheMode::Use,
                        human: None,
                        local_functions: None,
                        plugin_policy: None,
                    };
                    let outcome = app
                        .run(
                            recipe.clone(),
                            serde_json::Map::new(),
                            options,
                            RunScope::default(),
                        )
                        .await
                        .expect("the run starts");
                    assert!(outcome.success(), "{:?}", outcome.error);
                    latencies.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut l = std::mem::take(&mut *latencies.lock().unwrap());
    l.sort();
    (elapsed, l)
}

/// One SSE subscriber: the ids it saw and when it saw `run_finished`.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    waiting: Arc<AtomicUsize>,
) -> (Vec<u64>, Option<Instant>) {
    let resp = client
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .expect("the stream opens");
    let mut stream = resp.bytes_stream();
    let (mut text, mut ids, mut finished) = (String::new(), Vec::new(), None);
    let mut counted = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut event = "";
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    if let Ok(id) = v.trim().parse() {
                        ids.push(id);
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                }
            }
            match event {
                "node_waiting" if !counted => {
                    counted = true;
                    waiting.fetch_add(1, Ordering::SeqCst);
                }
                "run_finished" => finished = Some(Instant::now()),
                _ => {}
            }
        }
    }
    (ids, finished)
}

/// Lets this process (and the server it starts) hold a few thousand
/// sockets.
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(16_384);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();

    // Throughput and latency: HTTP against the library.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1);
    let server = start(dir.path());
    let (http, lib) = rt.block_on(async {
        through_http(&server.base, 200, CLIENTS).await; // warm-up
        let http = through_http(&server.base, RUNS, CLIENTS).await;
        drop(server);
        let lib_dir = tempfile::tempdir().unwrap();
        write_config(lib_dir.path(), 1);
        through_library(lib_dir.path(), 200, CLIENTS).await; // warm-up
        let lib = through_library(lib_dir.path(), RUNS, CLIENTS).await;
        (http, lib)
    });
    let per_sec = |(elapsed, _): &(Duration, Vec<Duration>)| RUNS as f64 / elapsed.as_secs_f64();
    rows.push(format!(
        "| `serve` | one-node mock recipe, `POST …/runs?wait=true`, {CLIENTS} clients, {RUNS} runs: HTTP / library | {:.0} / {:.0} runs/s ({:.2} ×); p50 {:.1} / {:.1} ms, p99 {:.1} / {:.1} ms | — |",
        per_sec(&http),
        per_sec(&lib),
        per_sec(&http) / per_sec(&lib).max(1e-9),
        ms(percentile(&http.1, 0.5)),
        ms(percentile(&lib.1, 0.5)),
        ms(percentile(&http.1, 0.99)),
        ms(percentile(&lib.1, 0.99)),
    ));
    println!("{}", rows.last().unwrap());

    // SSE fan-out: every subscriber is on the run before it goes on.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1);
    let server = start(dir.path());
    let sse_row = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        let run: Value = client
            .post(format!("{}/v1/recipes/gated/runs?wait=true", server.base))
            .bearer_auth(KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(run["status"], "waiting", "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        let url = format!("{}/v1/runs/{id}/events", server.base);
        let waiting = Arc::new(AtomicUsize::new(0));
        let subscribers: Vec<_> = (0..SUBSCRIBERS)
            .map(|_| tokio::spawn(subscribe(client.clone(), url.clone(), waiting.clone())))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(300);
        while waiting.load(Ordering::SeqCst) < SUBSCRIBERS {
            assert!(Instant::now() < deadline, "subscribers never all connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let replied = Instant::now();
        let resp = client
            .post(format!("{}/v1/runs/{id}/replies/approve", server.base))
            .bearer_auth(KEY)
            .json(&json!({"ok": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let mut seen = Vec::new();
        for s in subscribers {
            seen.push(s.await.unwrap());
        }
        let longest = seen.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let complete = seen
            .iter()
            .filter(|(ids, f)| {
                f.is_some() && *ids == (1..=longest as u64).collect::<Vec<_>>()
            })
            .count();
        let mut arrivals: Vec<Duration> = seen
            .iter()
            .filter_map(|(_, f)| f.map(|t| t.saturating_duration_since(replied)))
            .collect();
        arrivals.sort();
        format!(
            "| `serve` | SSE: {SUBSCRIBERS} subscribers on one run ({longest} events) | {complete} of {SUBSCRIBERS} got every event; reply → last event: first subscriber {:.0} ms, median {:.0} ms, last {:.0} ms | — |",
            ms(arrivals.first().copied().unwrap_or_default()),
            ms(percentile(&arrivals, 0.5)),
            ms(arrivals.last().copied().unwrap_or_default()),
        )
    });
    drop(server);
    rows.push(sse_row);
    println!("{}", rows.last().unwrap());

    // Memory per idle tenant.
    let mut rss = Vec::new();
    for tenants in [1, IDLE_TENANTS] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), tenants);
        let server = start(dir.path());
        rt.block_on(async {
            let r = reqwest::get(format!("{}/healthz", server.base))
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        rss.push(rss_kib(server.child.id()));
    }
    let per_tenant = (rss[1] as f64 - rss[0] as f64) * 1024.0 / (IDLE_TENANTS - 1) as f64;
    rows.push(format!(
        "| `serve` | memory per idle tenant: RSS with 1 / {IDLE_TENANTS} tenants | {:.1} MB / {:.1} MB = {:.1} KiB per tenant | — |",
        rss[0] as f64 / 1024.0,
        rss[1] as f64 / 1024.0,
        per_tenant / 1024.0,
    ));
    println!("{}", rows.last().unwrap());

    // From the 202 to the first node starting, one run at a time on an
    // idle server.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1);
    let server = start(dir.path());
    let starts = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut answered: Vec<(String, f64)> = Vec::new();
        for _ in 0..STARTS {
            let resp = client
                .post(format!("{}/v1/recipes/one/runs", server.base))
                .bearer_auth(KEY)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let at = unix_now();
            assert_eq!(resp.status().as_u16(), 202);
            let body: Value = resp.json().await.unwrap();
            let id = body["id"].as_str().unwrap().to_string();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let run: Value = client
                    .get(format!("{}/v1/runs/{id}", server.base))
                    .bearer_auth(KEY)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if run["status"] == "succeeded" {
                    break;
                }
                assert!(Instant::now() < deadline, "run never ended: {run}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answered.push((id, at));
        }
        answered
    });
    let store = SqliteStore::new(Arc::new(
        Database::open(&dir.path().join("composer.db")).unwrap(),
    ));
    let (mut from_202, mut from_created) = (Vec::new(), Vec::new());
    for (id, at) in &starts {
        let (run, nodes) = store.get(id).unwrap().expect("the run is stored");
        let Some(first) = nodes.iter().map(|n| n.at).reduce(f64::min) else {
            continue;
        };
        from_202.push(Duration::from_secs_f64((first - at).max(0.0)));
        from_created.push(Duration::from_secs_f64((first - run.started_at).max(0.0)));
    }
    from_202.sort();
    from_created.sort();
    drop(server);
    rows.push(format!(
        "| `serve` | 202 → first node started ({STARTS} runs one at a time; from the run's creation in brackets) | p50 {:.2} ms, p99 {:.2} ms (p50 {:.2} ms, p99 {:.2} ms) | — |",
        ms(percentile(&from_202, 0.5)),
        ms(percentile(&from_202, 0.99)),
        ms(percentile(&from_created, 0.5)),
        ms(percentile(&from_created, 0.99)),
    ));
    println!("{}", rows.last().unwrap());

    doc::write_section(
        "serve",
        "Serving (written by `cargo bench --bench serve`)",
        &format!(
            "Measured on {}, `release` build, server and clients on one machine (127.0.0.1); result cache off, server logs at `warn`, `max_running = {CLIENTS}`.\n\n| bench | what | figure | target |\n| --- | --- | --- | --- |\n{}",
            today(),
            rows.join("\n")
        ),
    );
}

/// `YYYY-MM-DD` (UTC).
fn today() -> String {
    let days = (unix_now() / 86_400.0) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
