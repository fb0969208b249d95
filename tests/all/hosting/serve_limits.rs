//! `composer serve` at its limits, as a real process on 127.0.0.1: the
//! `concurrent_runs` quota under simultaneous requests, daily token and
//! cost budgets (refused runs, a run stopped mid-way, budgets kept across a
//! restart), a server SIGKILLed mid-run that continues the run without
//! repeating a finished node's provider call, bodies over their caps, and
//! plugin uploads whose `describe` loops or allocates without bound.

use super::serve::{call, sse, start, Server, HELLO, KEY_A};
use super::{config_for, requests_with, slow_fake};
use crate::providers::fake::{Fake, COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::support::{temp_dir, write};
use composer::store::{Database, SqliteStore};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// One tenant, `a`, whose recipes are in `<dir>/recipes`, with `quotas`
/// (TOML lines) and `server` lines added to `[server]`.
fn tenant_toml(dir: &Path, server: &str, quotas: &str) -> String {
    format!(
        r#"
[server]
data_dir = "{data}"
{server}

[[tenants]]
id = "a"
key_sha256 = ["{ka}"]
recipes = ["{d}/recipes"]

[tenants.quotas]
{quotas}
"#,
        data = dir.join("data").display(),
        ka = super::serve::sha(KEY_A),
        d = dir.display(),
    )
}

/// A server whose only config is `toml` (plus the mock provider).
fn mock_server(server: &str, quotas: &str, recipes: &[(&str, &str)]) -> Server {
    let dir = temp_dir();
    let d = dir.path();
    for (name, text) in recipes {
        write(d, &format!("recipes/{name}.yaml"), text);
    }
    write(
        d,
        "composer.toml",
        &format!(
            "[cache]\npath = \"{}\"\n{}",
            d.join("composer.db").display(),
            tenant_toml(d, server, quotas)
        ),
    );
    Server::start_in(dir)
}

/// A server whose `local` endpoint is the fake, nothing cached.
fn fake_server(fake: &Fake, extra: &str, quotas: &str, recipes: &[(&str, &str)]) -> Server {
    let dir = temp_dir();
    let d = dir.path();
    for (name, text) in recipes {
        write(d, &format!("recipes/{name}.yaml"), text);
    }
    config_for(fake, d, &format!("{extra}\n{}", tenant_toml(d, "", quotas)));
    Server::start_in(dir)
}

/// SIGKILL, then a new server on the same folder.
fn restart(s: &mut Server) {
    let _ = s.child.kill();
    let _ = s.child.wait();
    let (child, base) = start(s._dir.path());
    s.child = child;
    s.base = base;
}

/// Polls the run object until `done` says so; panics at the deadline.
pub(crate) async fn poll_run(
    base: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, run, _) = call(
            Method::GET,
            &format!("{base}/v1/runs/{id}"),
            Some(KEY_A),
            None,
        )
        .await;
        assert_eq!(st, 200, "{run}");
        if done(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "never {what}: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn is_final(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn run_count(base: &str) -> usize {
    let (st, runs, _) = call(
        Method::GET,
        &format!("{base}/v1/runs?limit=1000"),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(st, 200, "{runs}");
    runs["runs"].as_array().map_or(0, Vec::len)
}

/// A 429 naming `quota`, with a `Retry-After` of whole seconds.
fn assert_quota(st: u16, body: &Value, headers: &reqwest::header::HeaderMap, quota: &str) {
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(body["error"]["quota"], quota, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let retry = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {headers:?}");
}

const SLOW: &str = r#"
name: slow
nodes:
  - {id: wait, type: language_task, model: {provider: mock, model: echo, latency_ms: 3000}, prompt: "slowly"}
"#;

/// `concurrent_runs = 1`: of simultaneous requests exactly one is taken,
/// the others are refused with 429 and create nothing; once the run has
/// ended (as its run object says), the next one is taken at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_admits_one_run_at_a_time() {
    let s = mock_server("", "concurrent_runs = 1", &[("slow", SLOW)]);
    let url = format!("{}/v1/recipes/slow/runs", s.base);
    let asks = (0..6).map(|_| call(Method::POST, &url, Some(KEY_A), Some(json!({}))));
    let answers = futures::future::join_all(asks).await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(st, _, _)| *st == 202)
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "one run at a time: {:?}",
        answers.iter().map(|a| (a.0, &a.1)).collect::<Vec<_>>()
    );
    for (st, body, headers) in answers.iter().filter(|a| a.0 != 202) {
        assert_quota(*st, body, headers, "concurrent_runs");
    }
    assert_eq!(run_count(&s.base).await, 1, "refused runs were not created");
    let id = accepted[0]["id"].as_str().unwrap().to_string();

    // While it is queued or running, still refused.
    let (st, body, headers) = call(Method::POST, &url, Some(KEY_A), Some(json!({}))).await;
    assert_quota(st, &body, &headers, "concurrent_runs");

    let done = poll_run(&s.base, &id, "ended", is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Ended means no longer counted: the next run is taken.
    let (st, body, _) = call(Method::POST, &url, Some(KEY_A), Some(json!({}))).await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(run_count(&s.base).await, 2);
}

/// Three nodes on the fake, each call reporting
/// PROMPT_TOKENS + COMPLETION_TOKENS (1,500) tokens.
const THREE: &str = r#"
name: three
nodes:
  - {id: s1, type: language_task, model: {provider: local, model: fast}, prompt: "budget-one"}
  - {id: s2, type: language_task, model: {provider: local, model: fast}, prompt: "budget-two {{ s1 }}"}
  - {id: s3, type: language_task, model: {provider: local, model: fast}, prompt: "budget-three {{ s2 }}"}
edges: [s1 to s2, s2 to s3]
final_outputs: [s3]
"#;

/// A budget of a bit more than one call: the second call passes it, the
/// third is never made and the run fails naming the quota; new runs are
/// refused with 429, also after a restart (usage is kept in the store,
/// even with the result cache off).
async fn budget_stops_runs(quota: &str, extra: &str, quotas: &str) {
    let fake = Fake::start();
    let mut s = fake_server(&fake, extra, quotas, &[("three", THREE)]);
    let url = |s: &Server| format!("{}/v1/recipes/three/runs", s.base);
    let (st, run, _) = call(
        Method::POST,
        &format!("{}?wait=true", url(&s)),
        Some(KEY_A),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "quota", "{run}");
    assert_eq!(run["error"]["quota"], quota, "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(quota),
        "{run}"
    );
    assert_eq!(requests_with(&fake, "budget-one"), 1);
    assert_eq!(requests_with(&fake, "budget-two"), 1);
    assert_eq!(
        requests_with(&fake, "budget-three"),
        0,
        "no call once the budget is spent"
    );
    let nodes = run["nodes"].as_array().cloned().unwrap_or_default();
    let s3 = nodes.iter().find(|n| n["id"] == "s3");
    assert!(
        s3.is_none_or(|n| n["status"] != "completed"),
        "s3 did not complete: {run}"
    );

    let (st, body, headers) = call(Method::POST, &url(&s), Some(KEY_A), Some(json!({}))).await;
    assert_quota(st, &body, &headers, quota);
    assert_eq!(
        run_count(&s.base).await,
        1,
        "the refused run was not created"
    );

    // The spent budget survives a restart.
    restart(&mut s);
    let (st, body, headers) = call(Method::POST, &url(&s), Some(KEY_A), Some(json!({}))).await;
    assert_quota(st, &body, &headers, quota);
    assert_eq!(
        fake.requests().len(),
        2,
        "no call after the budget was spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_day_stops_a_run_midway_and_refuses_new_ones() {
    let per_call = PROMPT_TOKENS + COMPLETION_TOKENS;
    budget_stops_runs(
        "tokens_per_day",
        "",
        &format!("tokens_per_day = {}", per_call + per_call / 3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_day_stops_a_run_midway_and_refuses_new_ones() {
    // 1,500 tokens at $1,000 per million: $1.50 a call.
    budget_stops_runs(
        "cost_per_day_usd",
        "[providers.prices.\"local/fast\"]\ninput_per_million = 1000.0\noutput_per_million = 1000.0\n",
        "cost_per_day_usd = 2.0",
    )
    .await;
}

const CHAIN: &str = r#"
name: chain
nodes:
  - {id: s1, type: language_task, model: {provider: local, model: slow}, prompt: "link-one"}
  - {id: s2, type: language_task, model: {provider: local, model: slow}, prompt: "link-two {{ s1 }}"}
  - {id: s3, type: language_task, model: {provider: local, model: slow}, prompt: "link-three {{ s2 }}"}
  - {id: s4, type: language_task, model: {provider: local, model: slow}, prompt: "link-four {{ s3 }}"}
  - {id: s5, type: language_task, model: {provider: local, model: slow}, prompt: "link-five {{ s4 }}"}
edges: [s1 to s2, s2 to s3, s3 to s4, s4 to s5]
final_outputs: [s5]
"#;

fn completed_nodes(run: &Value) -> Vec<String> {
    run["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter(|n| n["status"] == "completed")
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The server is SIGKILLed after two nodes of a chain have finished and
/// started again on the same folder: the run finishes, each node finished
/// before the kill called the provider exactly once, and the run's events
/// are numbered 1, 2, 3, ... with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_midrun_continues_the_run_after_a_restart() {
    let fake = slow_fake(Duration::from_millis(400));
    let mut s = fake_server(&fake, "", "", &[("chain", CHAIN)]);
    let (st, body, _) = call(
        Method::POST,
        &format!("{}/v1/recipes/chain/runs", s.base),
        Some(KEY_A),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let run = poll_run(&s.base, &id, "finished two nodes", |r| {
        completed_nodes(r).len() >= 2
    })
    .await;
    assert!(!is_final(&run), "killed before the end: {run}");
    restart(&mut s);
    // What the killed process had durably finished.
    let store = SqliteStore::new(Arc::new(
        Database::open(&s._dir.path().join("composer.db")).expect("the database opens"),
    ));
    let (_, nodes) = store.get(&id).unwrap().expect("the run is stored");
    let finished_before: Vec<String> = nodes
        .into_iter()
        .filter(|n| n.status == "completed")
        .map(|n| n.node)
        .collect();
    assert!(
        finished_before.len() >= 2 && finished_before.len() < 5,
        "{finished_before:?}"
    );

    let done = poll_run(&s.base, &id, "ended", is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["outputs"]["s5"].is_string(), "{done}");
    for (node, prompt) in [
        ("s1", "link-one"),
        ("s2", "link-two"),
        ("s3", "link-three"),
        ("s4", "link-four"),
        ("s5", "link-five"),
    ] {
        let seen = requests_with(&fake, prompt);
        if finished_before.iter().any(|n| n == node) {
            assert_eq!(seen, 1, "finished node `{node}` was asked again");
        } else {
            assert!(seen >= 1, "`{node}` never ran");
        }
    }
    let events = sse(&format!("{}/v1/runs/{id}/events", s.base), KEY_A, None).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("run_finished"));
    for node in ["s1", "s2", "s3", "s4", "s5"] {
        let finished = events
            .iter()
            .filter(|e| e.1 == "node_finished" && e.2["node"] == node)
            .count();
        assert_eq!(finished, 1, "`{node}` finished once in the events");
    }
}

/// `plugins/dist/test/<name>.wasm`, built once if missing.
fn test_component(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let file = crate::plugins::dist()
        .join("test")
        .join(format!("{name}.wasm"));
    BUILT.get_or_init(|| {
        if !file.is_file() {
            let status = std::process::Command::new("bash")
                .arg("scripts/build-plugins.sh")
                .current_dir(crate::plugins::repo())
                .status()
                .expect("cannot run scripts/build-plugins.sh");
            assert!(status.success(), "scripts/build-plugins.sh failed");
        }
    });
    assert!(file.is_file(), "{} was not built", file.display());
    file
}

async fn upload(base: &str, name: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(format!("{base}/v1/plugins?name={name}"))
        .bearer_auth(KEY_A)
        .header("content-type", "application/wasm")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_too_large(st: u16, body: &Value, setting: &str) {
    assert_eq!(st, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(setting), "{body}");
}

/// Bodies over their caps answer 413 with the error shape; uploads whose
/// `describe` loops forever or allocates without bound are refused with
/// 422 naming the tenant's limit (not the process-wide default); the
/// server stays up and a well-behaved plugin is still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploads_are_refused_and_the_server_stays_up() {
    let looping = std::fs::read(test_component("hostile_describe_loop")).unwrap();
    let allocating = std::fs::read(test_component("hostile_describe_alloc")).unwrap();
    let fine = std::fs::read(crate::plugins::hostile_wasm()).unwrap();
    let fuel: u64 = 1_000_000_000;
    let timeout_ms: u64 = 20_000;
    let memory: u64 = 16 * MIB as u64;
    let s = mock_server(
        &format!("max_body_bytes = {}\nmax_plugin_bytes = {}", 4 * MIB, MIB),
        &format!(
            "plugin_fuel = {fuel}\nplugin_memory_bytes = {memory}\nplugin_timeout_ms = {timeout_ms}"
        ),
        &[("hello", HELLO)],
    );
    let b = &s.base;

    // Over the plugin cap (and under the body cap): 413 before any check.
    let mut big = b"\0asm\x0d\0\x01\0".to_vec();
    big.resize(2 * MIB, 0);
    let (st, body) = upload(b, "big", big).await;
    assert_too_large(st, &body, "max_plugin_bytes");

    // A run body over `max_body_bytes`, named or inline: 413.
    let filler = "x".repeat(5 * MIB);
    for path in ["/v1/runs", "/v1/recipes/hello/runs"] {
        let (st, body, _) = call(
            Method::POST,
            &format!("{b}{path}"),
            Some(KEY_A),
            Some(json!({"recipe": "name: x", "inputs": {"who": filler}})),
        )
        .await;
        assert_too_large(st, &body, "max_body_bytes");
    }

    // `describe` that never returns: stopped by the tenant's fuel (or
    // time) cap, not the default's ten billion units.
    let (st, body) = upload(b, "loops", looping).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plugin", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        (message.contains("fuel") && message.contains(&fuel.to_string()))
            || (message.contains("timed out") && message.contains(&format!("{timeout_ms} ms"))),
        "names the tenant's limit: {message}"
    );
    assert!(message.contains("`loops`"), "names the plugin: {message}");

    // `describe` that allocates without bound: stopped at the tenant's
    // memory cap.
    let (st, body) = upload(b, "grows", allocating).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plugin", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("memory limit") && message.contains(&memory.to_string()),
        "names the tenant's memory cap: {message}"
    );

    // Still up: nothing refused was kept, a good plugin is taken, runs run.
    let (st, listed, _) = call(Method::GET, &format!("{b}/v1/plugins"), Some(KEY_A), None).await;
    assert_eq!(st, 200, "{listed}");
    assert_eq!(listed["plugins"], json!([]), "{listed}");
    let (st, body) = upload(b, "fine", fine).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["name"], "fine");
    assert!(
        body["functions"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["name"] == "echo")),
        "{body}"
    );
    let (_, listed, _) = call(Method::GET, &format!("{b}/v1/plugins"), Some(KEY_A), None).await;
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["fine"], "{listed}");
    let leftovers: Vec<_> = std::fs::read_dir(s._dir.path().join("data/a/plugins"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "fine.wasm")
        .collect();
    assert!(leftovers.is_empty(), "refused uploads left {leftovers:?}");
    let (st, run, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/hello/runs?wait=true"),
        Some(KEY_A),
        Some(json!({"inputs": {"who": "otters"}})),
    )
    .await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
}
