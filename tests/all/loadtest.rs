//! `composer load-test` end to end, on the mock provider: every run is
//! counted once, injected failures land under their kind, percentiles are
//! ordered, `--duration` stops, nothing is left in the user's tree, and
//! `--server` drives a real `composer serve`.

use crate::hosting::serve::{server, KEY_A};
use crate::support::{composer_in, temp_dir, write, Output};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Two mock calls per run; a prompt holding FAIL fails at once (no retry).
const RECIPE: &str = r#"
name: load target
user_inputs:
  - {id: topic, type: string, default: otters}
nodes:
  - id: draft
    type: language_task
    model: {provider: mock, model: echo, latency_ms: [0, 5], fail_when: FAIL}
    retry: 1
    prompt: "write about {{ topic }}"
  - id: polish
    type: language_task
    model: {provider: mock, model: echo}
    prompt: "polish {{ draft }}"
edges: [draft to polish]
final_outputs: [polish]
"#;

fn report(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{}", out.describe());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{}", out.describe()))
}

fn assert_counts_add_up(r: &Value) {
    let runs = r["runs"].as_u64().unwrap();
    let ok = r["successes"].as_u64().unwrap();
    let failed = r["failures"].as_u64().unwrap();
    assert_eq!(ok + failed, runs, "{r:#}");
    let by_kind: u64 = r["failures_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, failed, "{r:#}");
}

fn assert_ordered(p: &Value) {
    let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("no `{k}` in {p}"));
    let (min, p50, p90, p99, max) = (f("min"), f("p50"), f("p90"), f("p99"), f("max"));
    assert!(
        min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "percentiles out of order: {p}"
    );
}

/// Files and folders directly in `dir`, but `keep`.
fn entries(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn every_run_is_counted_and_injected_failures_are_provider_failures() {
    let dir = temp_dir();
    let d = dir.path();
    let recipe = write(d, "recipe.yaml", RECIPE);
    // Every third run's prompt holds the fail text.
    let lines = write(
        d,
        "inputs.jsonl",
        "{\"topic\": \"a\"}\n{\"topic\": \"b\"}\n{\"topic\": \"FAIL c\"}\n",
    );
    let out = composer_in(
        d,
        [
            "load-test",
            recipe.to_str().unwrap(),
            "--users",
            "4",
            "--iterations",
            "30",
            "--inputs-file",
            lines.to_str().unwrap(),
            "--no-cache",
            "--json",
        ],
    );
    let r = report(&out);
    assert_eq!(r["runs"], 30, "{r:#}");
    assert_counts_add_up(&r);
    assert_eq!(r["failures_by_kind"]["provider"], 10, "{r:#}");
    assert_eq!(r["successes"], 20, "{r:#}");
    assert_eq!(r["mode"], "local");
    assert_ordered(&r["latency_ms"]);
    // Succeeded runs made two calls each. (A failed node reports no
    // figures in the event stream, as in `composer run --metrics`: the
    // failed runs' one call is not counted.)
    assert_eq!(r["provider_calls"], 40, "{r:#}");
    assert!(r["tokens"]["total"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["throughput_per_sec"].as_f64().unwrap() > 0.0);
    // No run folder in the working folder, and no run recorded.
    let left = entries(d, &["recipe.yaml", "inputs.jsonl", ".composer"]);
    assert!(left.is_empty(), "left behind: {left:?}");
    let runs = composer_in(d, ["runs", "list"]);
    assert!(
        !runs.stdout.contains("run-"),
        "load-test runs were recorded:\n{}",
        runs.describe()
    );
}

#[test]
fn the_cache_serves_repeated_runs_and_the_report_says_so() {
    let dir = temp_dir();
    let d = dir.path();
    let recipe = write(d, "recipe.yaml", RECIPE);
    let out = composer_in(
        d,
        [
            "load-test",
            recipe.to_str().unwrap(),
            "--users",
            "1",
            "--iterations",
            "5",
            "--json",
        ],
    );
    let r = report(&out);
    assert_eq!(r["successes"], 5, "{r:#}");
    // The first run calls twice; the other four are served from the cache.
    assert_eq!(r["cache"]["eligible"], 10, "{r:#}");
    assert_eq!(r["cache"]["hits"], 8, "{r:#}");
}

#[test]
fn a_duration_stops_the_test_and_the_text_report_names_the_figures() {
    let dir = temp_dir();
    let d = dir.path();
    let recipe = write(d, "recipe.yaml", RECIPE);
    let started = Instant::now();
    let out = composer_in(
        d,
        [
            "load-test",
            recipe.to_str().unwrap(),
            "--users",
            "3",
            "--duration",
            "2s",
            "--ramp-up",
            "500ms",
            "--no-cache",
            "-i",
            "topic=seals",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a 2 s test took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    for figure in ["runs", "throughput", "latency", "p99", "provider", "cache"] {
        assert!(
            out.stdout.contains(figure),
            "no `{figure}`:\n{}",
            out.describe()
        );
    }
    let runs: u64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("runs"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run count:\n{}", out.describe()));
    assert!(runs > 0, "{}", out.describe());
}

#[test]
fn a_recipe_that_cannot_run_stops_the_test_with_an_error() {
    let dir = temp_dir();
    let d = dir.path();
    let recipe = write(
        d,
        "recipe.yaml",
        "name: broken\nnodes:\n  - {id: f, type: function_task, function_identifier: no_such_function}\n",
    );
    let out = composer_in(
        d,
        [
            "load-test",
            recipe.to_str().unwrap(),
            "--users",
            "50",
            "--iterations",
            "100000",
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("no_such_function"),
        "{}",
        out.describe()
    );
}

#[test]
fn server_mode_drives_composer_serve_and_reports_its_queue_wait() {
    let s = server("");
    let cwd = temp_dir();
    let run = |recipe: &str| {
        composer_in(
            cwd.path(),
            [
                "load-test",
                recipe,
                "--server",
                &s.base,
                "--key",
                KEY_A,
                "--users",
                "3",
                "--iterations",
                "9",
                "--json",
            ],
        )
    };
    // A tenant recipe, by name.
    let r = report(&run("hello"));
    assert_eq!(r["mode"], "server");
    assert_eq!(r["runs"], 9, "{r:#}");
    assert_eq!(r["successes"], 9, "{r:#}");
    assert_counts_add_up(&r);
    assert_ordered(&r["latency_ms"]);
    assert_eq!(r["queue_wait_ms"]["count"], 9, "{r:#}");
    assert_ordered(&r["queue_wait_ms"]);
    // A recipe file, sent inline with each run (POST /v1/runs).
    let file = write(cwd.path(), "inline.yaml", RECIPE);
    let r = report(&run(file.to_str().unwrap()));
    assert_eq!(r["runs"], 9, "{r:#}");
    assert_eq!(r["successes"], 9, "{r:#}");
    assert_eq!(r["recipe"], "load target");
    // A wrong key stops the test before any run.
    let out = composer_in(
        cwd.path(),
        [
            "load-test",
            "hello",
            "--server",
            &s.base,
            "--key",
            "ck_wrong",
            "--iterations",
            "3",
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("401"), "{}", out.describe());
}
