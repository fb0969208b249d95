//! `composer serve` as a real process on 127.0.0.1: keys, tenant
//! isolation, runs, SSE with `Last-Event-ID`, idempotency, quotas, hitl
//! over the API, hostile plugin uploads.

use crate::support::{temp_dir, write};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

pub(crate) const KEY_A: &str = "ck_tenant_a_key_for_tests_000000000000000000000000";
pub(crate) const KEY_B: &str = "ck_tenant_b_key_for_tests_111111111111111111111111";

pub(crate) fn sha(text: &str) -> String {
    composer::server::tenants::sha256_hex(text.as_bytes())
}

pub(crate) const HELLO: &str = r#"
name: hello
description: says hello
user_inputs:
  - {id: who, type: string, default: world}
nodes:
  - {id: greet, type: language_task, model: {provider: mock, model: echo}, prompt: "hello {{ who }}"}
  - {id: shout, type: language_task, model: {provider: mock, model: echo}, prompt: "{{ greet | upper }}"}
edges: [greet to shout]
final_outputs: [shout]
"#;

pub(crate) const REVIEW: &str = r#"
name: review
nodes:
  - {id: draft, type: language_task, model: {provider: mock, model: echo}, prompt: "draft"}
  - {id: approve, type: hitl, input: {text: draft}, required_fields: [approved]}
  - {id: publish, type: language_task, model: {provider: mock, model: echo}, prompt: "published {{ approve.approved }}"}
edges: [draft to approve, approve to publish]
final_outputs: [publish]
"#;

const SLOW: &str = r#"
name: slow
nodes:
  - {id: wait, type: language_task, model: {provider: mock, model: echo, latency_ms: 1000}, prompt: "slowly"}
"#;

/// A `composer serve` process, killed when dropped, with its folder.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) _dir: tempfile::TempDir,
}

impl Server {
    /// `composer serve` on the config in `dir` (which it keeps until the
    /// server is dropped).
    pub(crate) fn start_in(dir: tempfile::TempDir) -> Server {
        let (child, base) = start(dir.path());
        Server {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(dir: &std::path::Path) -> (Child, String) {
    start_with(dir, &[])
}

/// Starts `composer serve` on a free port of 127.0.0.1 in `dir` (where its
/// `composer.toml` is) and returns it with its base URL.
pub(crate) fn start_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = crate::support::composer_command(dir)
        .envs(env.iter().copied())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("composer serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("stderr is text");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining its logs so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// A server for tenants `a` (recipes hello, review, slow) and `b` (hello,
/// with these quotas), on a free port of 127.0.0.1.
pub(crate) fn server(quotas_b: &str) -> Server {
    let dir = temp_dir();
    let d = dir.path();
    write(d, "a/recipes/hello.yaml", HELLO);
    write(d, "a/recipes/review.yaml", REVIEW);
    write(d, "b/recipes/hello.yaml", HELLO);
    write(d, "a/recipes/slow.yaml", SLOW);
    write(
        d,
        "composer.toml",
        &format!(
            r#"
[cache]
path = "{db}"

[server]
data_dir = "{data}"
max_running = 2

[[tenants]]
id = "a"
key_sha256 = ["{ka}"]
recipes = ["{d}/a/recipes"]

[[tenants]]
id = "b"
key_sha256 = ["{kb}"]
recipes = ["{d}/b/recipes"]

[tenants.quotas]
{quotas_b}
"#,
            db = d.join("composer.db").display(),
            data = d.join("data").display(),
            ka = sha(KEY_A),
            kb = sha(KEY_B),
            d = d.display(),
        ),
    );
    Server::start_in(dir)
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(crate) async fn call(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().request(method, url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

/// Events of an SSE stream until it closes: (id, event, data).
pub(crate) async fn sse(url: &str, key: &str, last_id: Option<u64>) -> Vec<(u64, String, Value)> {
    let mut req = client().get(url).bearer_auth(key);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if let Some(id) = id {
            out.push((
                id,
                event,
                serde_json::from_str(&data).unwrap_or(Value::Null),
            ));
        }
    }
    out
}

use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tenants_runs_and_events() {
    let s = server("");
    let b = &s.base;
    assert_eq!(
        call(Method::GET, &format!("{b}/healthz"), None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(Method::GET, &format!("{b}/readyz"), None, None)
            .await
            .0,
        200
    );
    // No key, a wrong key: 401 with the error shape.
    let (st, body, _) = call(Method::GET, &format!("{b}/v1/recipes"), None, None).await;
    assert_eq!(st, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        call(
            Method::GET,
            &format!("{b}/v1/recipes"),
            Some("ck_nope"),
            None
        )
        .await
        .0,
        401
    );

    let (st, recipes, _) = call(Method::GET, &format!("{b}/v1/recipes"), Some(KEY_A), None).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = recipes["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "review", "slow"]);
    assert_eq!(
        recipes["recipes"][0]["inputs"]["properties"]["who"]["type"],
        "string"
    );
    let (st, one, _) = call(
        Method::GET,
        &format!("{b}/v1/recipes/hello"),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(one["graph"].as_str().unwrap().contains("greet"), "{one}");

    // A run, waited for.
    let (st, run, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/hello/runs?wait=true"),
        Some(KEY_A),
        Some(json!({"inputs": {"who": "otters"}})),
    )
    .await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["outputs"]["shout"], "HELLO OTTERS");
    assert_eq!(run["nodes"].as_array().unwrap().len(), 2);
    let id = run["id"].as_str().unwrap().to_string();

    // Another tenant sees none of it.
    for (method, path) in [
        (Method::GET, format!("/v1/runs/{id}")),
        (Method::GET, format!("/v1/runs/{id}/events")),
        (Method::GET, format!("/v1/runs/{id}/files/x.wav")),
        (Method::POST, format!("/v1/runs/{id}/replies/approve")),
        (Method::DELETE, format!("/v1/runs/{id}")),
        (Method::GET, "/v1/recipes/review".to_string()),
    ] {
        let (st, body, _) = call(
            method.clone(),
            &format!("{b}{path}"),
            Some(KEY_B),
            Some(json!({})),
        )
        .await;
        assert_eq!(st, 404, "{method} {path}: {body}");
    }
    let (_, listed, _) = call(Method::GET, &format!("{b}/v1/runs"), Some(KEY_B), None).await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 0);

    // Events: all of them in order, then resumed after one.
    let events = sse(&format!("{b}/v1/runs/{id}/events"), KEY_A, None).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.first().unwrap().1, "run_started");
    assert_eq!(events.last().unwrap().1, "run_finished");
    let rest = sse(&format!("{b}/v1/runs/{id}/events"), KEY_A, Some(3)).await;
    assert_eq!(
        rest.iter().map(|e| e.0).collect::<Vec<_>>(),
        ids[3..].to_vec()
    );

    // Idempotency: the same key, the same run.
    let body = json!({"inputs": {}, "idempotency_key": "once"});
    let (st, first, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/hello/runs"),
        Some(KEY_A),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 202, "{first}");
    let (_, second, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/hello/runs"),
        Some(KEY_A),
        Some(body),
    )
    .await;
    assert_eq!(first["id"], second["id"]);

    // Hostile input: malformed JSON, wrong input types, invalid inline recipes.
    let resp = client()
        .post(format!("{b}/v1/recipes/hello/runs"))
        .bearer_auth(KEY_A)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("not valid JSON"), "{text}");
    let (st, bad, _) = call(
        Method::POST,
        &format!("{b}/v1/runs"),
        Some(KEY_A),
        Some(json!({"recipe": "name: broken\nnodes:\n  - {id: a, type: languag_task}\n"})),
    )
    .await;
    assert_eq!(st, 422, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_recipe");
    assert!(!bad["error"]["diagnostics"].as_array().unwrap().is_empty());
    let (st, bad, _) = call(
        Method::POST,
        &format!("{b}/v1/runs"),
        Some(KEY_A),
        Some(json!({
            "recipe": {"name": "inline", "user_inputs": [{"id": "n", "type": "int"}], "nodes": [{"id": "a", "type": "language_task", "model": {"provider": "mock", "model": "echo"}, "prompt": "{{ n }}"}]},
            "inputs": {"n": "many"}
        })),
    )
    .await;
    assert_eq!(st, 422, "{bad}");
    assert!(bad["error"]["inputs"]["n"].is_string(), "{bad}");

    // Plugins that are not components are refused; the server stays up.
    let resp = client()
        .post(format!("{b}/v1/plugins?name=junk"))
        .bearer_auth(KEY_A)
        .header("content-type", "application/wasm")
        .body(vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let (_, plugins, _) = call(Method::GET, &format!("{b}/v1/plugins"), Some(KEY_A), None).await;
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_refuses_with_429_and_names_itself() {
    let s = server("runs_per_minute = 1");
    let b = &s.base;
    let url = format!("{b}/v1/recipes/hello/runs");
    let (st, _, _) = call(Method::POST, &url, Some(KEY_B), Some(json!({}))).await;
    assert_eq!(st, 202);
    let (st, body, headers) = call(Method::POST, &url, Some(KEY_B), Some(json!({}))).await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["quota"], "runs_per_minute");
    assert!(headers.get("retry-after").is_some());
    // The refused run was not started.
    let (_, runs, _) = call(Method::GET, &format!("{b}/v1/runs"), Some(KEY_B), None).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    // Tenant A is not limited by B's quota.
    assert_eq!(
        call(Method::POST, &url, Some(KEY_A), Some(json!({})))
            .await
            .0,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hitl_run_waits_survives_a_restart_and_finishes_after_a_reply() {
    let mut s = server("");
    let b = s.base.clone();
    let (st, run, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/review/runs?wait=true"),
        Some(KEY_A),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "waiting");
    let id = run["id"].as_str().unwrap().to_string();
    // Not waiting: 409.
    let (st, _, _) = call(
        Method::POST,
        &format!("{b}/v1/runs/{id}/replies/draft"),
        Some(KEY_A),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 409);

    // Restart the server (SIGKILL, then start again on the same folder).
    let _ = s.child.kill();
    let _ = s.child.wait();
    let (child, base) = start(s._dir.path());
    s.child = child;
    s.base = base.clone();
    let (_, again, _) = call(
        Method::GET,
        &format!("{base}/v1/runs/{id}"),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(again["status"], "waiting");

    let (st, _, _) = call(
        Method::POST,
        &format!("{base}/v1/runs/{id}/replies/approve"),
        Some(KEY_A),
        Some(json!({"approved": true})),
    )
    .await;
    assert_eq!(st, 202);
    let events = sse(&format!("{base}/v1/runs/{id}/events"), KEY_A, None).await;
    assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");
    let (_, done, _) = call(
        Method::GET,
        &format!("{base}/v1/runs/{id}"),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outputs"]["publish"], "published True");
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_burst_does_not_starve_another() {
    let s = server("");
    let b = &s.base;
    let url = format!("{b}/v1/recipes/slow/runs");
    for _ in 0..200 {
        let (st, _, _) = call(Method::POST, &url, Some(KEY_A), Some(json!({}))).await;
        assert_eq!(st, 202);
    }
    let succeeded = || async {
        let (_, done, _) = call(
            Method::GET,
            &format!("{b}/v1/runs?status=succeeded&limit=1000"),
            Some(KEY_A),
            None,
        )
        .await;
        done["runs"].as_array().unwrap().len()
    };
    let before = succeeded().await;
    // B's single run is taken next, not after A's queue drains.
    let (st, run, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/hello/runs?wait=true"),
        Some(KEY_B),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    let after = succeeded().await;
    // At most the runs already executing (two slots) and one more pass.
    assert!(
        after - before <= 6,
        "B waited for {} of A's runs",
        after - before
    );
    let (_, queued, _) = call(
        Method::GET,
        &format!("{b}/v1/runs?status=queued&limit=1000"),
        Some(KEY_A),
        None,
    )
    .await;
    assert!(
        !queued["runs"].as_array().unwrap().is_empty(),
        "A still had runs queued"
    );
}

const SEARCH: &str = r#"
name: search
nodes:
  - id: news
    type: function_task
    function_identifier: perplexity_search
    input: {search_query: "rust", recency: week, mode: news}
final_outputs: [news]
"#;

/// Hosted mode: the tenant's `[tenants.plugin_overrides]` decide what its
/// plugins reach and which secrets they get; another tenant running the
/// same recipe against the same plugin gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_plugin_grants_decide_what_its_plugins_reach() {
    use crate::plugins::fake_perplexity::{FakePerplexity, KEY};
    let fake = FakePerplexity::start();
    let dir = temp_dir();
    let d = dir.path();
    let dist = crate::plugins::dist();
    write(d, "a/recipes/search.yaml", SEARCH);
    write(d, "b/recipes/search.yaml", SEARCH);
    write(
        d,
        "composer.toml",
        &format!(
            r#"
[cache]
path = "{db}"

[server]
data_dir = "{data}"

[[tenants]]
id = "a"
key_sha256 = ["{ka}"]
recipes = ["{d}/a/recipes"]
plugins = ["{dist}"]

[tenants.plugin_overrides.perplexity_search]
allowed_hosts = ["{origin}"]
secrets = ["PERPLEXITY_API_KEY"]
env = {{ PERPLEXITY_BASE_URL = "{base}", PERPLEXITY_RETRY_BASE_MS = "1" }}

[[tenants]]
id = "b"
key_sha256 = ["{kb}"]
recipes = ["{d}/b/recipes"]
plugins = ["{dist}"]
"#,
            db = d.join("composer.db").display(),
            data = d.join("data").display(),
            ka = sha(KEY_A),
            kb = sha(KEY_B),
            d = d.display(),
            dist = dist.display(),
            origin = fake.origin(),
            base = fake.base("ok"),
        ),
    );
    let (child, base) = start_with(d, &[("PERPLEXITY_API_KEY", KEY)]);
    let _server = Server {
        child,
        base: base.clone(),
        _dir: dir,
    };
    let url = format!("{base}/v1/recipes/search/runs?wait=true");
    let (status, run, _) = call(Method::POST, &url, Some(KEY_A), Some(json!({"inputs": {}}))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["outputs"].to_string().contains("FAKE NEWS DIGEST"),
        "tenant a's plugin reached the granted host: {run}"
    );
    let seen = fake.seen().len();
    assert!(seen >= 1);

    let (status, run, _) = call(Method::POST, &url, Some(KEY_B), Some(json!({"inputs": {}}))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "failed", "tenant b has no grant: {run}");
    assert_eq!(
        fake.seen().len(),
        seen,
        "tenant b's request never left the host"
    );
}

/// The web page and its assets come from the binary, with a policy that
/// keeps scripts to the page's own and forbids framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_is_served_from_the_binary() {
    let s = server("");
    let b = &s.base;
    let page = client().get(format!("{b}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js"), "{html}");
    for (asset, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let r = client()
            .get(format!("{b}/assets/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{asset}"
        );
        assert!(r.text().await.unwrap().len() > 1000, "{asset} has content");
    }
    let missing = client()
        .get(format!("{b}/assets/secret.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
