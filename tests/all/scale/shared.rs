//! The service spread over processes: runs submitted to two servers and
//! executed by three processes each run exactly once; a SIGKILLed worker's
//! run is finished by another without repeating finished nodes; an SSE
//! client on one server follows a run another executes; a provider limit
//! and a tenant's `concurrent_runs` hold for all processes together; Redis
//! stopped mid-run gives the documented behaviour (docs/decisions.md).

use super::cluster::{
    base, is_final, node_status, poll_run, requests_with, submit, submit_many, wait_ready, Cluster,
    CHAIN, ONE,
};
use crate::hosting::serve::{call, sse, KEY_A};
use crate::providers::fake::Fault;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const STEPS: &str = r#"
name: steps
nodes:
  - {id: a, type: language_task, model: {provider: mock, model: echo, latency_ms: 300}, prompt: "a"}
  - {id: b, type: language_task, model: {provider: mock, model: echo, latency_ms: 300}, prompt: "b {{ a }}"}
  - {id: c, type: language_task, model: {provider: mock, model: echo, latency_ms: 300}, prompt: "c {{ b }}"}
edges: [a to b, b to c]
final_outputs: [c]
"#;

const BURST: &str = r#"
name: burst
user_inputs: [{id: n, type: string}]
nodes:
  - id: items
    type: map
    over: "{{ range(20) | list }}"
    max_concurrency: 20
    task: {type: language_task, model: {provider: local, model: fast}, prompt: "burst-{{ n }}-{{ item }}"}
final_outputs: [items]
"#;

const SLOW_ONE: &str = r#"
name: slow_one
user_inputs: [{id: n, type: string}]
nodes:
  - {id: wait, type: language_task, model: {provider: local, model: slow}, prompt: "slow-{{ n }}-end"}
final_outputs: [wait]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_runs_over_two_servers_and_a_worker_each_run_exactly_once() {
    let mut c = Cluster::new("", "", &[("one", ONE)]);
    let a = c.serve(true);
    let b = c.serve(true);
    let _w = c.worker();
    let bases = [base(&a).to_string(), base(&b).to_string()];
    let ids = submit_many(&bases, "one", 300, 24).await;
    assert_eq!(ids.len(), 300);
    for (i, id) in ids.iter().enumerate() {
        // Either server answers for every run: one store.
        let run = poll_run(&bases[(i + 1) % 2], id, "finished", is_final).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    for n in 0..300 {
        assert_eq!(
            requests_with(&c.fake, &format!("run-{n}-end")),
            1,
            "run {n} must reach the provider exactly once"
        );
    }
    assert_eq!(c.fake.request_count(), 300);
    let (st, runs, _) = call(
        Method::GET,
        &format!("{}/v1/runs?limit=1000", bases[0]),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(st, 200, "{runs}");
    assert_eq!(runs["runs"].as_array().map_or(0, Vec::len), 300);
    // Finished runs leave the queue: it stays small.
    assert_eq!(c.sql("SELECT count(*) FROM run_queue"), "0");
    assert_eq!(c.sql("SELECT count(*) FROM run_checkpoints"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_to_two_servers_at_once_makes_one_run() {
    let mut c = Cluster::new("", "", &[("one", ONE)]);
    let a = c.serve(true);
    let b = c.serve(false);
    let body = json!({"inputs": {"n": "once"}, "idempotency_key": "same-key"});
    let post = |base: String| {
        let body = body.clone();
        async move {
            call(
                Method::POST,
                &format!("{base}/v1/recipes/one/runs"),
                Some(KEY_A),
                Some(body),
            )
            .await
        }
    };
    let (ra, rb) = tokio::join!(post(base(&a).to_string()), post(base(&b).to_string()));
    assert_eq!(ra.0, 202, "{}", ra.1);
    assert_eq!(rb.0, 202, "{}", rb.1);
    assert_eq!(ra.1["id"], rb.1["id"], "{} {}", ra.1, rb.1);
    let id = ra.1["id"].as_str().expect("an id").to_string();
    poll_run(base(&b), &id, "finished", is_final).await;
    assert_eq!(requests_with(&c.fake, "run-once-end"), 1);
    assert_eq!(c.sql("SELECT count(*) FROM runs"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_s_run_is_finished_by_another_without_repeating_finished_nodes() {
    let mut c = Cluster::new("", "", &[("chain", CHAIN)]);
    c.fake.always("slow", Fault::Hang(Duration::from_secs(3)));
    let api = c.serve(false);
    let first_worker = c.worker();
    let id = submit(base(&api), "chain", json!({})).await;
    poll_run(base(&api), &id, "at its second node", |r| {
        node_status(r, "first") == Some("completed") && node_status(r, "second") == Some("running")
    })
    .await;
    c.kill(&first_worker);
    let _second_worker = c.worker();
    let run = poll_run(base(&api), &id, "finished", is_final).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        requests_with(&c.fake, "first-step"),
        1,
        "the finished node ran again"
    );
    assert_eq!(requests_with(&c.fake, "third-step"), 1);
    // The node that was running when the worker died runs again.
    assert_eq!(requests_with(&c.fake, "second-step"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_on_one_server_follows_a_run_another_process_executes() {
    let mut c = Cluster::new("", "", &[("steps", STEPS)]);
    let api = c.serve(false);
    let _worker = c.worker();
    let id = submit(base(&api), "steps", json!({})).await;
    let url = format!("{}/v1/runs/{id}/events", base(&api));
    let followed = tokio::time::timeout(Duration::from_secs(60), sse(&url, KEY_A, None))
        .await
        .expect("the stream closes after the run's last event");
    let seqs: Vec<u64> = followed.iter().map(|(id, _, _)| *id).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no gap, no repeat: {followed:?}");
    assert_eq!(
        followed.last().map(|(_, kind, _)| kind.as_str()),
        Some("run_finished"),
        "{followed:?}"
    );
    for node in ["a", "b", "c"] {
        assert!(
            followed
                .iter()
                .any(|(_, kind, data)| kind == "node_finished" && data["node"] == node),
            "node {node} finished: {followed:?}"
        );
    }
    // Replayed afterwards, the same events.
    let replayed = sse(&url, KEY_A, None).await;
    assert_eq!(replayed.len(), followed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_limit_of_60_a_minute_holds_for_three_processes_together() {
    let mut c = Cluster::new(
        "",
        "[providers.rate_limits.local]\ncalls_per_minute = 60",
        &[("burst", BURST)],
    );
    let a = c.serve(true);
    let b = c.serve(true);
    let _w = c.worker();
    // Six runs of twenty calls each: 120 calls want to go at once.
    for n in 0..6 {
        let target = if n % 2 == 0 { base(&a) } else { base(&b) };
        submit(target, "burst", json!({"n": n.to_string()})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.fake.request_count() < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The minute's budget is spent; nothing more goes for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.fake.request_count(),
        60,
        "three processes together must send the minute's 60 calls, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_of_two_hold_for_three_processes_together() {
    let mut c = Cluster::new("concurrent_runs = 2", "", &[("slow_one", SLOW_ONE)]);
    c.fake
        .always("slow", Fault::Hang(Duration::from_millis(400)));
    let a = c.serve(true);
    let b = c.serve(true);
    let _w = c.worker();
    let bases = [base(&a).to_string(), base(&b).to_string()];
    let ids = submit_many(&bases, "slow_one", 10, 10).await;
    for id in &ids {
        let run = poll_run(&bases[0], id, "finished", is_final).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(c.fake.request_count(), 10);
    assert!(
        c.fake.max_in_flight() <= 2,
        "{} runs of the tenant were in flight at once",
        c.fake.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_fails_quotas_closed_and_recovers_without_a_crash() {
    let mut c = Cluster::new("tokens_per_day = 1000000", "", &[("chain", CHAIN)]);
    c.fake.always("slow", Fault::Hang(Duration::from_secs(2)));
    let server = c.serve(true);
    let url = base(&server).to_string();
    let id = submit(&url, "chain", json!({})).await;
    poll_run(&url, &id, "at its second node", |r| {
        node_status(r, "second") == Some("running")
    })
    .await;
    c.redis.stop();
    // The run's next provider call cannot check the budget: it fails,
    // naming the quota and Redis.
    let run = poll_run(&url, &id, "finished", is_final).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].to_string();
    assert!(error.contains("Redis"), "{run}");
    assert!(error.contains("tokens_per_day"), "{run}");
    assert_eq!(requests_with(&c.fake, "third-step"), 0, "{run}");
    // New runs are refused, not lost; health and readiness say why.
    let (st, body, headers) = call(
        Method::POST,
        &format!("{url}/v1/recipes/chain/runs"),
        Some(KEY_A),
        Some(json!({"inputs": {}})),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"]["code"], "quota_unavailable", "{body}");
    assert!(headers.get("retry-after").is_some());
    let (st, _, _) = call(Method::GET, &format!("{url}/healthz"), None, None).await;
    assert_eq!(st, 200);
    let (st, body, _) = call(Method::GET, &format!("{url}/readyz"), None, None).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.to_string().contains("redis"), "{body}");
    assert!(c.alive(&server), "the server must not crash");
    // Redis back: ready again, and runs go through.
    c.redis.restart();
    wait_ready(&url).await;
    let again = submit(&url, "chain", json!({})).await;
    let run = poll_run(&url, &again, "finished", is_final).await;
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_answers_503_and_the_service_recovers_when_it_is_back() {
    let mut c = Cluster::new("", "", &[("one", ONE)]);
    let server = c.serve(true);
    let url = base(&server).to_string();
    let id = submit(&url, "one", json!({"n": "before"})).await;
    poll_run(&url, &id, "finished", is_final).await;
    c.postgres().stop();
    let (st, body, _) = call(Method::GET, &format!("{url}/readyz"), None, None).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.to_string().contains("database"), "{body}");
    let (st, body, _) = call(
        Method::POST,
        &format!("{url}/v1/recipes/one/runs"),
        Some(KEY_A),
        Some(json!({"inputs": {"n": "during"}})),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(
        body["error"]["message"].to_string().contains("PostgreSQL"),
        "{body}"
    );
    assert!(c.alive(&server), "the server must not crash");
    c.postgres().restart();
    wait_ready(&url).await;
    let id = submit(&url, "one", json!({"n": "after"})).await;
    let run = poll_run(&url, &id, "finished", is_final).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(requests_with(&c.fake, "run-during-end"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_metrics_and_probes_on_its_metrics_address() {
    let mut c = Cluster::new("", "", &[("one", ONE)]);
    let api = c.serve(false);
    let worker = c.worker_with_metrics();
    for n in 0..3 {
        let id = submit(base(&api), "one", json!({"n": n.to_string()})).await;
        let run = poll_run(base(&api), &id, "finished", is_final).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let probes = base(&worker);
    let get = |path: &str| {
        let url = format!("{probes}{path}");
        async move {
            let r = reqwest::get(&url).await.expect("the worker answers");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    // The worker executed the runs: its own counters say so (the API
    // process's would not).
    let runs = text
        .lines()
        .find(|l| {
            l.starts_with("composer_runs_total")
                && l.contains("status=\"succeeded\"")
                && l.contains("tenant=\"a\"")
        })
        .unwrap_or_else(|| panic!("no succeeded runs counted:\n{text}"));
    assert!(runs.ends_with(" 3"), "{runs}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("composer_provider_calls_total") && l.ends_with(" 3")),
        "{text}"
    );
    // It serves no API.
    assert_eq!(get("/v1/recipes").await.0, 404);
    // Its readiness follows the database.
    c.postgres().stop();
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
    c.postgres().restart();
}
