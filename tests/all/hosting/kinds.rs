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
