//! Durable runs through the binary: a run killed with SIGKILL continues
//! with `composer runs resume` without repeating a finished node's
//! request; a hitl run stops in `waiting`, is answered from a new process
//! and finishes; failures carry their kind in `--json`.

use super::{config_for, requests_with, slow_fake};
use crate::support::{composer_command, composer_in, temp_dir, write};
use composer::store::{Database, RunFilter, SqliteStore};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAIN: &str = r#"
name: chain
nodes:
  - {id: s1, type: language_task, model: {provider: local, model: slow}, prompt: "step-one"}
  - {id: s2, type: language_task, model: {provider: local, model: slow}, prompt: "step-two {{ s1 }}"}
  - {id: s3, type: language_task, model: {provider: local, model: slow}, prompt: "step-three {{ s2 }}"}
  - {id: s4, type: language_task, model: {provider: local, model: slow}, prompt: "step-four {{ s3 }}"}
  - {id: s5, type: language_task, model: {provider: local, model: slow}, prompt: "step-five {{ s4 }}"}
edges: [s1 to s2, s2 to s3, s3 to s4, s4 to s5]
final_outputs: [s5]
"#;

const MAP: &str = r#"
name: fan
nodes:
  - id: items
    type: map
    over: "{{ range(12) | list }}"
    max_concurrency: 2
    task: {type: language_task, model: {provider: local, model: slow}, prompt: "item-{{ item }}-end"}
  - {id: total, type: language_task, model: {provider: local, model: slow}, prompt: "sum {{ items | length }}"}
edges: [items to total]
final_outputs: [total]
"#;

fn store(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::new(Arc::new(
        Database::open(&dir.join("composer.db")).expect("the database opens"),
    ))
}

/// Starts `composer run`, waits until `ready` says enough has finished
/// (looking at the store), then kills it with SIGKILL. Returns the run id.
fn run_and_kill(
    dir: &std::path::Path,
    recipe: &std::path::Path,
    ready: impl Fn(&SqliteStore, &str) -> bool,
) -> String {
    let log = dir.join("killed-run.log");
    let mut child = composer_command(dir)
        .args(["run", recipe.to_str().unwrap(), "--no-cache"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("composer starts");
    let store = store(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = child.try_wait().expect("the run's status") {
            panic!(
                "the run ended ({status}) before it could be killed:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the run never got far enough:\n{}",
            log()
        );
        if let Some(run) = store.list(&RunFilter::default()).unwrap().first() {
            if ready(&store, &run.id) {
                break run.id.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    id
}

fn completed(store: &SqliteStore, id: &str) -> Vec<String> {
    store
        .get(id)
        .unwrap()
        .map(|(_, nodes)| {
            nodes
                .into_iter()
                .filter(|n| n.status == "completed")
                .map(|n| n.node)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_chain_killed_midway_resumes_without_repeating_finished_nodes() {
    let fake = slow_fake(Duration::from_millis(250));
    let dir = temp_dir();
    config_for(&fake, dir.path(), "");
    let recipe = write(dir.path(), "chain.yaml", CHAIN);
    let id = run_and_kill(dir.path(), &recipe, |s, id| completed(s, id).len() >= 2);
    let finished_before = completed(&store(dir.path()), &id);
    assert!(
        finished_before.len() >= 2 && finished_before.len() < 5,
        "{finished_before:?}"
    );
    let out = composer_in(dir.path(), ["runs", "resume", &id, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let outputs: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON outputs");
    assert!(outputs["s5"].as_str().is_some(), "{outputs}");
    for (node, prompt) in [
        ("s1", "step-one"),
        ("s2", "step-two"),
        ("s3", "step-three"),
        ("s4", "step-four"),
        ("s5", "step-five"),
    ] {
        let seen = requests_with(&fake, prompt);
        if finished_before.iter().any(|n| n == node) {
            assert_eq!(seen, 1, "finished node `{node}` was asked again");
        } else {
            assert!(seen >= 1, "`{node}` never ran");
        }
    }
    let (run, _) = store(dir.path()).get(&id).unwrap().unwrap();
    assert_eq!(run.status, "succeeded");
    // The events go on numbering where the killed attempt stopped.
    let events = store(dir.path()).events(&id).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "sequence numbers are unique and ordered");
    assert_eq!(seqs.first(), Some(&1));
}

#[test]
fn a_map_killed_midway_resumes_per_item() {
    let fake = slow_fake(Duration::from_millis(150));
    let dir = temp_dir();
    config_for(&fake, dir.path(), "");
    let recipe = write(dir.path(), "fan.yaml", MAP);
    let db_path = dir.path().join("composer.db");
    let id = run_and_kill(dir.path(), &recipe, |_, id| {
        checkpointed_items(&db_path, id).len() >= 4
    });
    let done_items = checkpointed_items(&db_path, &id);
    assert!(
        done_items.len() >= 4 && done_items.len() < 12,
        "{done_items:?}"
    );
    let out = composer_in(dir.path(), ["runs", "resume", &id, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    for i in 0..12 {
        let seen = requests_with(&fake, &format!("item-{i}-end"));
        if done_items.contains(&i) {
            assert_eq!(seen, 1, "finished item {i} was asked again");
        } else {
            assert!(seen >= 1, "item {i} never ran");
        }
    }
    assert_eq!(requests_with(&fake, "sum 12"), 1);
}

/// Indexes of map items with a checkpoint.
fn checkpointed_items(db: &std::path::Path, id: &str) -> Vec<usize> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT key FROM run_checkpoints WHERE run_id = ?1") else {
        return Vec::new();
    };
    let keys: Vec<String> = stmt
        .query_map([id], |r| r.get::<_, String>(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default();
    keys.iter()
        .filter_map(|k| k.strip_prefix("items#1[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

const REVIEW: &str = r#"
name: review
nodes:
  - {id: draft, type: language_task, model: {provider: mock, model: echo}, prompt: "draft about otters"}
  - id: approve
    type: hitl
    input: {text: draft}
    required_fields: [approved]
  - {id: publish, type: language_task, model: {provider: mock, model: echo}, prompt: "publish {{ approve.approved }}"}
edges: [draft to approve, approve to publish]
final_outputs: [publish]
"#;

#[test]
fn a_hitl_run_waits_and_a_new_process_finishes_it() {
    let dir = temp_dir();
    write(
        dir.path(),
        "composer.toml",
        &format!(
            "[cache]\npath = \"{}\"\n",
            dir.path().join("composer.db").display()
        ),
    );
    let recipe = write(dir.path(), "review.yaml", REVIEW);
    let first = composer_in(dir.path(), ["run", recipe.to_str().unwrap(), "--json"]);
    assert_eq!(
        first.code,
        Some(3),
        "waiting exits with 3: {}",
        first.describe()
    );
    let waiting: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["waiting"][0], "approve");
    let id = waiting["run_id"].as_str().unwrap().to_string();
    let (run, _) = store(dir.path()).get(&id).unwrap().unwrap();
    assert_eq!(run.status, "waiting");

    // A reply without the required field is refused by the node on resume.
    let answered = composer_in(
        dir.path(),
        [
            "runs",
            "reply",
            &id,
            "approve",
            r#"{"approved": true}"#,
            "--json",
        ],
    );
    assert_eq!(answered.code, Some(0), "{}", answered.describe());
    let outputs: serde_json::Value = serde_json::from_str(&answered.stdout).unwrap();
    assert_eq!(outputs["publish"], "publish True");
    let (run, _) = store(dir.path()).get(&id).unwrap().unwrap();
    assert_eq!(run.status, "succeeded");
    // The draft was not made twice: one node record, finished once.
    let events = store(dir.path()).events(&id).unwrap();
    let drafts = events
        .iter()
        .filter(|e| e["event"] == "node_finished" && e["node"] == "draft")
        .count();
    assert_eq!(drafts, 1);
}

#[test]
fn failures_carry_their_kind_in_json_output() {
    let dir = temp_dir();
    let cases = [
        (
            "name: f\nnodes:\n  - {id: a, type: language_task, model: {provider: mock, model: echo, fail_when: x}, prompt: x}\n",
            "provider",
        ),
        (
            "name: t\nnodes:\n  - {id: a, type: language_task, model: {provider: mock, model: echo}, prompt: \"{{ missing_var }}\"}\n",
            "template",
        ),
    ];
    for (yaml, kind) in cases {
        let recipe = write(dir.path(), "r.yaml", yaml);
        let out = composer_in(dir.path(), ["run", recipe.to_str().unwrap(), "--json"]);
        assert_eq!(out.code, Some(1), "{}", out.describe());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], kind, "{v}");
        assert_eq!(v["error"]["node"], "a", "{v}");
        assert_eq!(v["status"], "failed");
    }
    let recipe = write(
        dir.path(),
        "i.yaml",
        "name: i\nuser_inputs:\n  - {id: n, type: int}\nnodes:\n  - {id: a, type: language_task, model: {provider: mock, model: echo}, prompt: \"{{ n }}\"}\n",
    );
    let out = composer_in(
        dir.path(),
        ["run", recipe.to_str().unwrap(), "-i", "n=many", "--json"],
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "invalid_input", "{v}");
}
