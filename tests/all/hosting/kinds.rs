//! Every failure kind a CLI run can end with reaches the `--json` failure
//! output and, from the run store, `composer report`'s error groups.
//! (Quotas exist only in hosted runs: the server tests check that kind.)

use super::config_for;
use crate::providers::fake::{Fake, Fault};
use crate::support::{composer_in, write};
use serde_json::Value;

/// (recipe, kind in `--json`, error group in `composer report`).
const CASES: &[(&str, &str, &str)] = &[
    (
        "{id: a, type: language_task, model: {provider: mock, model: echo, fail_when: boom}, prompt: boom}",
        "provider",
        "provider",
    ),
    (
        "{id: a, type: language_task, model: {provider: mock, model: echo}, prompt: \"{{ missing_var }}\"}",
        "template",
        "template",
    ),
    (
        "{id: a, type: language_task, model: {provider: local, model: limited}, prompt: hi}",
        "rate_limit",
        "rate limited",
    ),
    (
        "{id: a, type: function_task, function_identifier: loop_forever, input: {}}",
        "plugin_limit",
        "fuel",
    ),
    (
        "{id: a, type: function_task, function_identifier: fail, input: {}}",
        "plugin",
        "plugin",
    ),
    (
        "{id: a, type: language_task, model: {provider: mock, model: echo, latency_ms: 5000}, prompt: slow, timeout: 0.05}",
        "timeout",
        "timeout",
    ),
];

#[test]
fn failure_kinds_reach_json_output_and_the_report() {
    let env = crate::plugins::Env::new();
    let root = &env.root;
    let fake = Fake::start();
    fake.always(
        "limited",
        Fault::Status {
            code: 429,
            retry_after: Some("30".into()),
            body: None,
        },
    );
    let hostile = crate::plugins::hostile_wasm();
    config_for(
        &fake,
        root,
        &format!(
            "[plugins]\npaths = [{paths:?}]\ncache_dir = {cache:?}\n\n[plugins.limits]\nfuel = 50000000\n",
            paths = hostile.parent().unwrap().to_string_lossy(),
            cache = env.cache.to_string_lossy(),
        ),
    );
    for (i, (node, kind, _)) in CASES.iter().enumerate() {
        let recipe = write(
            root,
            &format!("r{i}.yaml"),
            &format!("name: r{i}\nnodes:\n  - {node}\n"),
        );
        let out = composer_in(root, ["run", recipe.to_str().unwrap(), "--json"]);
        assert_eq!(out.code, Some(1), "{kind}: {}", out.describe());
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", out.describe()));
        assert_eq!(v["status"], "failed", "{v}");
        assert_eq!(v["error"]["kind"], *kind, "{v}");
        assert_eq!(v["error"]["node"], "a", "{v}");
        if *kind == "plugin_limit" {
            assert_eq!(v["error"]["limit"]["name"], "fuel", "{v}");
            assert_eq!(v["error"]["limit"]["value"], 50_000_000, "{v}");
        }
    }

    let out = composer_in(root, ["report", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let groups: Vec<(String, u64)> = report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no error groups in {report}"))
        .iter()
        .map(|g| {
            (
                g["kind"].as_str().unwrap_or("").to_string(),
                g["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (_, _, group) in CASES {
        assert!(
            groups.iter().any(|(k, n)| k == group && *n == 1),
            "`{group}` once in {groups:?}"
        );
    }
    assert_eq!(report["runs"], CASES.len(), "{report}");
}

#[test]
fn an_invalid_recipe_is_its_own_kind_in_json_output() {
    let dir = crate::support::temp_dir();
    let recipe = write(
        dir.path(),
        "broken.yaml",
        "name: broken\nnodes:\n  - {id: a, type: languag_task}\n",
    );
    let out = composer_in(dir.path(), ["run", recipe.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.describe()));
    assert_eq!(v["error"]["kind"], "invalid_recipe", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("languag_task")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_is_stored_with_its_kind() {
    use super::serve::{call, server, KEY_A};
    use reqwest::Method;
    let s = server("");
    let b = &s.base;
    let (st, run, _) = call(
        Method::POST,
        &format!("{b}/v1/recipes/slow/runs"),
        Some(KEY_A),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let url = format!("{b}/v1/runs/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let get = || call(Method::GET, &url, Some(KEY_A), None);
    while get().await.1["status"] != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (st, _, _) = call(Method::DELETE, &url, Some(KEY_A), None).await;
    assert_eq!(st, 202);
    let done = loop {
        let (_, r, _) = get().await;
        let ended =
            ["cancelled", "failed", "succeeded"].contains(&r["status"].as_str().unwrap_or(""));
        if ended && !r["finished_at"].is_null() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "not cancelled: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["error"]["kind"], "cancelled", "{done}");
    // Cancelling it again: it has ended.
    let (st, _, _) = call(Method::DELETE, &url, Some(KEY_A), None).await;
    assert_eq!(st, 409);
}
