//! What the PostgreSQL backends cost and give, side by side with the
//! embedded SQLite store, on private servers this bench starts:
//! - runs per second of a one-node mock recipe: 2,000 runs queued, then
//!   drained by 1, 2 and 4 `composer worker` processes on PostgreSQL,
//!   beside one `composer worker` on SQLite (from the first run's start to
//!   the last run's end, as the store recorded them: process start-up is
//!   not counted);
//! - queue claim latency, p50 and p99 of 200 claims with 2,000 and with
//!   20,000 runs of four tenants queued, PostgreSQL beside SQLite;
//! - per-node cost of checkpointing: a chain of 1,000 mock nodes and a map
//!   of 10,000 items with each store.
//!
//! Run with `cargo bench --bench scale` (needs PostgreSQL's and Redis's
//! server programs, which `scripts/test-deps.sh` installs); it rewrites
//! the scale section of `docs/benchmarks.md`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;
#[path = "common/doc.rs"]
mod doc;
// The tests' private PostgreSQL server.
#[allow(dead_code)]
#[path = "../../tests/all/scale/services.rs"]
mod services;

use common::{chain_recipe, load};
use composer::cache::CacheMode;
use composer::config::EngineSettings;
use composer::engine::events::NoEvents;
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, RunRequest};
use composer::store::postgres::{queue::PgQueue, runs::PgStore, PgDatabase};
use composer::store::{Database, RunFilter, RunStore, SqliteQueue, SqliteStore, WorkQueue};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 2_000;
const KEY: &str = "ck_bench_key_000000000000000000000000000000000000";

const ONE: &str = r#"
name: one
nodes:
  - {id: say, type: language_task, model: {provider: mock, model: echo}, prompt: "hello"}
"#;

const MAP: &str = r#"
name: map
model_config: {provider: mock, model: echo}
nodes:
  - id: each
    type: map
    over: "{{ range(10000) | list }}"
    max_concurrency: 64
    task: {type: language_task, prompt: "item {{ item }}"}
"#;

/// A service folder: config for `storage` (a URL), recipe `one`.
fn service_dir(storage: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("recipes")).unwrap();
    std::fs::write(d.join("recipes/one.yaml"), ONE).unwrap();
    let sha = composer::server::tenants::sha256_hex(KEY.as_bytes());
    std::fs::write(
        d.join("composer.toml"),
        format!(
            r#"
[cache]
enabled = false
path = "{db}"

[storage]
url = "{storage}"

[server]
data_dir = "{data}"
max_running = 64

[[tenants]]
id = "bench"
key_sha256 = ["{sha}"]
recipes = ["{recipes}"]
"#,
            db = d.join("composer.db").display(),
            data = d.join("data").display(),
            recipes = d.join("recipes").display(),
        ),
    )
    .unwrap();
    dir
}

fn composer(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_composer"));
    c.current_dir(dir)
        .args(args)
        .env_remove("COMPOSER_PLUGIN_PATH")
        .env("COMPOSER_LOG", "error")
        .stdout(Stdio::null());
    c
}

/// `composer serve --no-worker` until `RUNS` runs are queued through it.
fn queue_runs(rt: &tokio::runtime::Runtime, dir: &Path) {
    use std::io::BufRead;
    let mut serve = composer(dir, &["serve", "--addr", "127.0.0.1:0", "--no-worker"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = serve.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let base = loop {
        let line = lines.next().expect("serve starts").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    rt.block_on(async {
        use futures::stream::StreamExt;
        let client = reqwest::Client::new();
        futures::stream::iter(0..RUNS)
            .map(|_| {
                let client = client.clone();
                let url = format!("{base}/v1/recipes/one/runs");
                async move {
                    let r = client
                        .post(url)
                        .bearer_auth(KEY)
                        .json(&serde_json::json!({"inputs": {}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 202);
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
    let _ = serve.kill();
    let _ = serve.wait();
}

/// Starts `workers` worker processes, waits until every run has ended,
/// and answers runs per second from the store's own times.
fn drain(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    workers: usize,
    store: &dyn RunStore,
    queue: &dyn WorkQueue,
) -> f64 {
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            composer(dir, &["worker"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    rt.block_on(async {
        loop {
            let left: u64 = queue.depth().await.unwrap().iter().map(|(_, n)| n).sum();
            let leased: u64 = queue.leased().await.unwrap().iter().map(|(_, n)| n).sum();
            if left == 0 && leased == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the runs never finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let runs = rt.block_on(store.runs(RunFilter::default())).unwrap();
    assert_eq!(runs.len(), RUNS);
    let unfinished: Vec<_> = runs
        .iter()
        .filter(|r| r.status != "succeeded")
        .map(|r| (&r.id, &r.status, &r.error))
        .collect();
    assert!(unfinished.is_empty(), "{unfinished:?}");
    let began = runs
        .iter()
        .filter_map(|r| r.began_at)
        .fold(f64::MAX, f64::min);
    let ended = runs
        .iter()
        .filter_map(|r| r.finished_at)
        .fold(f64::MIN, f64::max);
    RUNS as f64 / (ended - began).max(1e-9)
}

/// Claims measured at each queue depth.
const CLAIMS: usize = 200;

/// p50 and p99 (µs) of claiming the next run while `depth` runs of four
/// tenants wait (`CLAIMS` claims, each run taken off the queue after).
fn claim_latency(rt: &tokio::runtime::Runtime, queue: &dyn WorkQueue, depth: usize) -> (u64, u64) {
    rt.block_on(async {
        for i in 0..depth {
            queue
                .enqueue(&format!("claim-{i}"), &format!("t{}", i % 4))
                .await
                .unwrap();
        }
        let mut h = Histogram::<u64>::new(3).unwrap();
        for _ in 0..CLAIMS {
            let started = Instant::now();
            let claim = queue
                .claim("bench", Duration::from_secs(30), Vec::new())
                .await
                .unwrap()
                .expect("a queued run");
            h.record(started.elapsed().as_micros() as u64).unwrap();
            queue.complete(&claim).await.unwrap();
        }
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    })
}

fn time_run(rt: &tokio::runtime::Runtime, services: &Arc<Services>, text: &str) -> Duration {
    let request = RunRequest {
        recipe: load(text),
        inputs: Default::default(),
        model_override: None,
        out_root: std::env::temp_dir().join("composer-bench-scale"),
        replies: HashMap::new(),
        events: Arc::new(NoEvents),
        allow_extra_inputs: false,
        cache_mode: CacheMode::Off,
    };
    let started = Instant::now();
    let outcome = rt
        .block_on(run_recipe(services.clone(), request))
        .expect("run starts");
    assert!(outcome.success(), "bench run failed: {:?}", outcome.error);
    started.elapsed()
}

fn with_store(store: Arc<dyn RunStore>) -> Arc<Services> {
    let mut s = Services::new(EngineSettings::default());
    s.store = Some(store);
    Arc::new(s)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let postgres = services::Postgres::start();
    let mut rows = Vec::new();

    // Runs per second.
    let sqlite_dir = service_dir("sqlite://composer.db");
    let sqlite_db = Arc::new(Database::open(&sqlite_dir.path().join("composer.db")).unwrap());
    queue_runs(&rt, sqlite_dir.path());
    let sqlite_rate = drain(
        &rt,
        sqlite_dir.path(),
        1,
        &SqliteStore::new(sqlite_db.clone()),
        &SqliteQueue::new(sqlite_db),
    );
    let mut rates = Vec::new();
    for workers in [1, 2, 4] {
        let url = postgres.database();
        let dir = service_dir(&url);
        let db = rt.block_on(PgDatabase::connect(&url, 4)).unwrap();
        queue_runs(&rt, dir.path());
        let rate = drain(
            &rt,
            dir.path(),
            workers,
            &PgStore::new(db.clone()),
            &PgQueue::new(db),
        );
        rates.push(format!(
            "{workers} worker{}: {rate:.0}",
            if workers > 1 { "s" } else { "" }
        ));
    }
    rows.push(format!(
        "| `scale` | one-node mock runs per second, {RUNS} queued then drained | SQLite, 1 worker: {sqlite_rate:.0}; PostgreSQL, {} | — |",
        rates.join(", ")
    ));

    // Claim latency, at two queue depths.
    let claim_dir = tempfile::tempdir().unwrap();
    let mut cells = Vec::new();
    for depth in [2_000, 20_000] {
        let file = claim_dir.path().join(format!("q{depth}.db"));
        let sqlite = SqliteQueue::new(Arc::new(Database::open(&file).unwrap()));
        let (s50, s99) = claim_latency(&rt, &sqlite, depth);
        let pg = rt
            .block_on(PgDatabase::connect(&postgres.database(), 4))
            .unwrap();
        let (p50, p99) = claim_latency(&rt, &PgQueue::new(pg), depth);
        cells.push(format!(
            "{depth} queued: SQLite {s50} µs / {s99} µs, PostgreSQL {p50} µs / {p99} µs"
        ));
    }
    rows.push(format!(
        "| `scale` | claiming the next run (four tenants), p50 / p99 of {CLAIMS} claims | {} | — |",
        cells.join("; ")
    ));
    // Checkpoint cost per node.
    let sqlite_db = Arc::new(Database::open(&claim_dir.path().join("runs.db")).unwrap());
    let sqlite = with_store(Arc::new(SqliteStore::new(sqlite_db)));
    let pg = rt
        .block_on(PgDatabase::connect(&postgres.database(), 8))
        .unwrap();
    let pg = with_store(Arc::new(PgStore::new(pg)));
    let plain = Arc::new(Services::new(EngineSettings::default()));
    let chain = chain_recipe(1_000);
    for (name, text, per) in [
        ("chain of 1,000 nodes", chain.as_str(), 1_000.0),
        ("map of 10,000 items", MAP, 10_000.0),
    ] {
        let best = |s: &Arc<Services>| (0..3).map(|_| time_run(&rt, s, text)).min().unwrap();
        let (none, lite, post) = (best(&plain), best(&sqlite), best(&pg));
        let us = |d: Duration| d.as_secs_f64() * 1e6 / per;
        rows.push(format!(
            "| `scale` | {name}, per node: no store / SQLite / PostgreSQL | {:.1} µs / {:.1} µs / {:.1} µs (PostgreSQL {:.2} × SQLite) | — |",
            us(none),
            us(lite),
            us(post),
            post.as_secs_f64() / lite.as_secs_f64().max(1e-9)
        ));
    }
    for r in &rows {
        println!("{r}");
    }
    doc::write_section(
        "scale",
        "Scale-out on PostgreSQL (written by `cargo bench --bench scale`)",
        &format!(
            "Private PostgreSQL 15 on this machine (fsync off, as in the tests), release build.\n\n| bench | what | figure | target |\n| --- | --- | --- | --- |\n{}",
            rows.join("\n")
        ),
    );
}
