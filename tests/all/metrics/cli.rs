//! `composer run --metrics`, `--json --metrics`, `--trace FILE.json` and
//! `composer report` through the real binary.

use crate::support::{composer_in, temp_dir, write};
use serde_json::Value;

const RECIPE: &str = r#"
name: cli metrics
model_config: {provider: mock, model: echo}
nodes:
  - {id: quick, type: language_task, prompt: "quick", model: {provider: mock, model: echo, latency_ms: 5}}
  - {id: slow, type: language_task, prompt: "slow one", model: {provider: mock, model: echo, latency_ms: 250}}
  - id: each
    type: map
    over: "{{ ['a', 'b', 'c'] }}"
    task: {type: language_task, prompt: "item {{ item }}", model: {provider: mock, model: echo, latency_ms: 20}}
edges:
  - {from: START, to: quick}
  - {from: START, to: slow}
  - {from: quick, to: each}
"#;

const FAILING: &str = r#"
name: cli failing
model_config: {provider: mock, model: echo, fail_when: BOOM}
nodes:
  - {id: fine, type: language_task, prompt: "fine"}
  - {id: broken, type: language_task, prompt: "BOOM"}
"#;

#[test]
fn metrics_print_a_table_slowest_first_and_a_summary() {
    let dir = temp_dir();
    let recipe = write(dir.path(), "r.yaml", RECIPE);
    let out = composer_in(
        dir.path(),
        ["run".as_ref(), recipe.as_os_str(), "--metrics".as_ref()],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let err = &out.stderr;
    let header = err
        .lines()
        .position(|l| l.starts_with("node ") && l.contains("duration") && l.contains("fuel"))
        .unwrap_or_else(|| panic!("no table header\n{}", out.describe()));
    let rows: Vec<&str> = err.lines().skip(header + 1).take(3).collect();
    assert!(rows[0].starts_with("slow "), "slowest first: {rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("each ") && r.contains("3 items")),
        "{rows:?}"
    );
    assert!(err.contains("critical path: slow"), "{err}");
    assert!(err.contains("nodes: 3 completed"), "{err}");
    assert!(err.contains("cache hit rate:"), "{err}");
    // Without --json, stdout still shows the outputs.
    assert!(out.stdout.contains("── slow ──"), "{}", out.describe());
}

#[test]
fn json_metrics_put_outputs_and_metrics_in_one_object() {
    let dir = temp_dir();
    let recipe = write(dir.path(), "r.yaml", RECIPE);
    let out = composer_in(
        dir.path(),
        [
            "run".as_ref(),
            recipe.as_os_str(),
            "--json".as_ref(),
            "--metrics".as_ref(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", out.describe()));
    assert_eq!(doc["outputs"]["slow"], "slow one");
    let m = &doc["metrics"];
    assert_eq!(m["success"], true);
    assert_eq!(m["recipe"], "cli metrics");
    assert_eq!(m["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(m["critical_path"]["nodes"][0], "slow");
    assert_eq!(m["totals"]["calls"], 1 + 1 + 3);

    // --json alone keeps printing only the outputs.
    let out = composer_in(
        dir.path(),
        ["run".as_ref(), recipe.as_os_str(), "--json".as_ref()],
    );
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        doc.get("metrics").is_none() && doc.get("slow").is_some(),
        "{doc}"
    );
}

#[test]
fn a_trace_is_written_and_loads_as_trace_events() {
    let dir = temp_dir();
    let recipe = write(dir.path(), "r.yaml", RECIPE);
    let trace = dir.path().join("trace.json");
    let out = composer_in(
        dir.path(),
        [
            "run".as_ref(),
            recipe.as_os_str(),
            "--trace".as_ref(),
            trace.as_os_str(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let doc: Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let names: Vec<&str> = complete
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in ["quick", "slow", "each", "each[0]", "each[1]", "each[2]"] {
        assert_eq!(
            names.iter().filter(|n| **n == name).count(),
            1,
            "{name} in {names:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
    // No table without --metrics.
    assert!(!out.stderr.contains("critical path"), "{}", out.describe());
}

#[test]
fn a_failed_run_still_writes_its_trace_and_metrics() {
    let dir = temp_dir();
    let recipe = write(dir.path(), "f.yaml", FAILING);
    let trace = dir.path().join("failed.json");
    let out = composer_in(
        dir.path(),
        [
            "run".as_ref(),
            recipe.as_os_str(),
            "--trace".as_ref(),
            trace.as_os_str(),
            "--metrics".as_ref(),
            "--json".as_ref(),
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let doc: Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let broken = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ph"] == "X" && e["name"] == "broken")
        .cloned()
        .unwrap_or_else(|| panic!("no span for `broken` in {doc}"));
    assert_eq!(broken["args"]["status"], "failed");
    assert!(broken["args"]["error"]
        .as_str()
        .unwrap()
        .contains("injected failure"));
    assert_eq!(doc["otherData"]["success"], false);
    // With --json, the metrics of the failed run are on stdout.
    let out_doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", out.describe()));
    assert_eq!(out_doc["metrics"]["success"], false);
    assert_eq!(out_doc["metrics"]["counts"]["failed"], 1);
    assert!(out.stderr.contains("run failed in"), "{}", out.describe());
}

#[test]
fn report_checks_its_flags() {
    let dir = temp_dir();
    let out = composer_in(dir.path(), ["report", "--since", "soon"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("--since"), "{}", out.describe());
    let out = composer_in(dir.path(), ["report", "--help"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("--recipe") && out.stdout.contains("--json"));
    let out = composer_in(dir.path(), ["run", "--help"]);
    assert!(
        out.stdout.contains("--metrics") && out.stdout.contains("--trace"),
        "{}",
        out.describe()
    );
}
