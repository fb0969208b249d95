//! What Redis shares beside rate limits: the result cache (a result one
//! process cached is a hit for another; a miss, not a failure, while Redis
//! is down) and the tenant quotas counted across servers.

use super::cluster::{base, is_final, poll_run, requests_with, submit, Cluster, ONE};
use crate::hosting::serve::{call, KEY_A};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

async fn run_to_end(api: &str, n: &str) {
    let id = submit(api, "one", json!({"n": n})).await;
    let run = poll_run(api, &id, "finished", is_final).await;
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_one_worker_cached_is_a_hit_for_another_and_a_miss_while_redis_is_down() {
    let mut c = Cluster::cached("", &[("one", ONE)]);
    let api = c.serve(false);
    let first = c.worker();
    run_to_end(base(&api), "same").await;
    assert_eq!(requests_with(&c.fake, "run-same-end"), 1);
    // Another process, with nothing in memory: the result is in Redis.
    c.kill(&first);
    let _second = c.worker();
    run_to_end(base(&api), "same").await;
    assert_eq!(
        requests_with(&c.fake, "run-same-end"),
        1,
        "the second worker must find the first one's result in Redis"
    );
    // Redis down: the cache fails open, the run goes to the provider.
    c.redis.stop();
    run_to_end(base(&api), "other").await;
    assert_eq!(requests_with(&c.fake, "run-other-end"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_per_minute_counts_the_runs_of_every_server() {
    let mut c = Cluster::new("runs_per_minute = 3", "", &[("one", ONE)]);
    let a = c.serve(true);
    let b = c.serve(true);
    for (i, target) in [base(&a), base(&b), base(&a)].into_iter().enumerate() {
        let (st, body, _) = call(
            Method::POST,
            &format!("{target}/v1/recipes/one/runs"),
            Some(KEY_A),
            Some(json!({"inputs": {"n": i.to_string()}})),
        )
        .await;
        assert_eq!(st, 202, "{body}");
    }
    let (st, body, headers) = call(
        Method::POST,
        &format!("{}/v1/recipes/one/runs", base(&b)),
        Some(KEY_A),
        Some(json!({"inputs": {"n": "fourth"}})),
    )
    .await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["error"]["quota"], "runs_per_minute", "{body}");
    assert!(headers.get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_budget_spent_through_one_server_is_spent_on_the_other() {
    // One call of the fake uses 1,500 tokens.
    let mut c = Cluster::new("tokens_per_day = 1500", "", &[("one", ONE)]);
    let a = c.serve(true);
    let b = c.serve(false);
    run_to_end(base(&a), "spend").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, body, _) = call(
            Method::POST,
            &format!("{}/v1/recipes/one/runs", base(&b)),
            Some(KEY_A),
            Some(json!({"inputs": {"n": "more"}})),
        )
        .await;
        if st == 429 {
            assert_eq!(body["error"]["quota"], "tokens_per_day", "{body}");
            break;
        }
        assert_eq!(st, 202, "{body}");
        assert!(
            Instant::now() < deadline,
            "the other server never saw the day's usage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
