//! The scheduler (RECIPES.md section 6): parallel fan-out and joins,
//! conditions and skip propagation, `END`, failures and `on_error: continue`,
//! and edge conditions that fail to evaluate.

use super::{failed_node, Setup};
use composer::engine::error::RunError;
use composer::engine::events::EventKind;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_nodes_run_at_the_same_time_and_a_join_waits_for_all() {
    let mut yaml = String::from(
        "name: fan-out\n\
         model_config: {provider: mock, model: echo, latency_ms: 200}\n\
         nodes:\n",
    );
    let branches: Vec<String> = (1..=8).map(|i| format!("n{i}")).collect();
    for b in &branches {
        yaml += &format!("  - {{id: {b}, type: language_task, prompt: \"branch {b}\"}}\n");
    }
    yaml += "  - id: join\n    type: function_task\n    function_identifier: echo\n    input:\n";
    yaml += &format!("      all: \"{{{{ [{}] }}}}\"\n", branches.join(", "));
    yaml += "edges:\n";
    for b in &branches {
        yaml += &format!("  - {b} to join\n");
    }
    let ran = Setup::new(&yaml).run().await;

    let last_start = branches
        .iter()
        .map(|b| {
            let s = ran.started(b);
            assert_eq!(s.len(), 1, "{b} must start once\n{}", ran.describe());
            s[0]
        })
        .max()
        .unwrap();
    let finishes: Vec<_> = branches
        .iter()
        .map(|b| {
            let f = ran.finished(b);
            assert_eq!(f.len(), 1, "{b} must finish once\n{}", ran.describe());
            f[0]
        })
        .collect();
    let first_finish = *finishes.iter().min().unwrap();
    let last_finish = *finishes.iter().max().unwrap();
    assert!(
        last_start < first_finish,
        "all eight branches must start before any finishes\n{}",
        ran.describe()
    );

    let join = ran.started("join");
    assert_eq!(join.len(), 1, "the join runs once\n{}", ran.describe());
    assert!(
        join[0] >= last_finish,
        "the join starts only after every branch finished\n{}",
        ran.describe()
    );
    assert!(
        matches!(
            ran.events.first().map(|e| &e.kind),
            Some(EventKind::RunStarted { .. })
        ),
        "\n{}",
        ran.describe()
    );
    assert!(
        matches!(
            ran.events.last().map(|e| &e.kind),
            Some(EventKind::RunFinished { success: true, .. })
        ),
        "\n{}",
        ran.describe()
    );
    let expected: Vec<Value> = branches
        .iter()
        .map(|b| Value::from(format!("branch {b}")))
        .collect();
    assert_eq!(ran.out("join"), &json!({ "all": expected }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_condition_skips_the_chain_below_it_but_not_a_join_with_another_way_in() {
    let ran = Setup::new(
        r#"
name: skip chain
model_config: {provider: mock, model: echo}
nodes:
  - {id: a, type: function_task, function_identifier: echo, input: {go: false}}
  - {id: b, type: language_task, prompt: "b"}
  - {id: c, type: language_task, prompt: "c"}
  - {id: d, type: language_task, prompt: "d"}
  - {id: e, type: language_task, prompt: "e"}
  - id: j
    type: function_task
    function_identifier: echo
    input: {from_d: d, from_e: e}
edges:
  - {from: a, to: b, condition: "a.go"}
  - b to c
  - c to d
  - a to e
  - d to j
  - e to j
"#,
    )
    .run()
    .await;
    let mut skipped = ran.skipped();
    skipped.sort();
    assert_eq!(skipped, ["b", "c", "d"], "\n{}", ran.describe());
    for n in ["b", "c", "d"] {
        assert!(
            ran.started(n).is_empty(),
            "{n} must not run\n{}",
            ran.describe()
        );
        assert_eq!(ran.out(n), &Value::Null, "a skipped node's output is null");
    }
    assert_eq!(ran.started("j").len(), 1, "\n{}", ran.describe());
    // A skipped producer named in `input` is null.
    assert_eq!(ran.out("j"), &json!({"from_d": null, "from_e": "e"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_true_condition_takes_the_edge() {
    let ran = Setup::new(
        r#"
name: taken
model_config: {provider: mock, model: echo}
nodes:
  - {id: a, type: function_task, function_identifier: echo, input: {go: true}}
  - {id: b, type: language_task, prompt: "b ran"}
edges:
  - {from: a, to: b, condition: "{{ a.go }}"}
"#,
    )
    .run()
    .await;
    assert!(ran.skipped().is_empty(), "\n{}", ran.describe());
    assert_eq!(ran.out("b"), "b ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_ends_only_its_own_path() {
    let ran = Setup::new(
        r#"
name: end one path
nodes:
  - {id: root, type: function_task, function_identifier: echo, input: {x: 1}}
  - {id: quick, type: language_task, prompt: "quick", model: {provider: mock, model: echo}}
  - {id: slow, type: language_task, prompt: "slow", model: {provider: mock, model: echo, latency_ms: 60}}
  - {id: after, type: language_task, prompt: "after {{ slow }}", model: {provider: mock, model: echo}}
edges:
  - root to quick
  - quick to END
  - root to slow
  - slow to after
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("after"), "after slow");
    let quick_done = ran.finished("quick");
    let after_done = ran.finished("after");
    assert_eq!(quick_done.len(), 1, "\n{}", ran.describe());
    assert_eq!(after_done.len(), 1, "\n{}", ran.describe());
    assert!(
        quick_done[0] < after_done[0],
        "the other branch goes on after one reached END\n{}",
        ran.describe()
    );
    assert!(ran.skipped().is_empty(), "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_continue_stores_null_and_the_error_and_goes_on() {
    let ran = Setup::new(
        r#"
name: continue
model_config: {provider: mock, model: echo, fail_when: "BOOM"}
nodes:
  - {id: risky, type: language_task, prompt: "BOOM", on_error: continue}
  - id: next
    type: function_task
    function_identifier: echo
    input: {got: risky, error: "{{ risky_error }}"}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("risky"), &Value::Null);
    let stored = ran.out("risky_error").as_str().unwrap_or_default();
    assert!(stored.contains("injected failure"), "{stored}");
    let next = ran.out("next");
    assert_eq!(next["got"], Value::Null);
    assert!(
        next["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure")),
        "the next node sees `<output>_error`: {next}"
    );
    let failed = ran.failed();
    assert_eq!(failed.len(), 1, "\n{}", ran.describe());
    assert_eq!(failed[0].0, "risky");
    assert!(failed[0].2, "the failure event says the run continued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_cancels_running_siblings_and_fails_the_run() {
    let ran = Setup::new(
        r#"
name: fail fast
nodes:
  - {id: bad, type: language_task, prompt: "BOOM", model: {provider: mock, model: echo, fail_when: "BOOM"}}
  - {id: slow, type: language_task, prompt: "slow", model: {provider: mock, model: echo, latency_ms: 500}}
  - {id: below, type: language_task, prompt: "below", model: {provider: mock, model: echo}}
edges:
  - bad to below
"#,
    )
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "bad");
    assert!(message.contains("node `bad` failed"), "{message}");
    assert!(message.contains("injected failure"), "{message}");
    assert_eq!(ran.cancelled(), ["slow"], "\n{}", ran.describe());
    assert!(
        ran.finished("slow").is_empty(),
        "a cancelled node does not finish\n{}",
        ran.describe()
    );
    assert!(ran.started("below").is_empty(), "\n{}", ran.describe());
    let failed = ran.failed();
    assert_eq!(failed.len(), 1, "\n{}", ran.describe());
    assert_eq!(failed[0].0, "bad");
    assert!(!failed[0].2);
    assert!(ran.outcome.outputs.is_empty());
}

async fn condition_error(condition: &str) -> RunError {
    let yaml = format!(
        r#"
name: bad condition
nodes:
  - {{id: a, type: function_task, function_identifier: echo, input: {{n: 1}}}}
  - {{id: b, type: function_task, function_identifier: echo, input: {{n: 2}}}}
edges:
  - START to a
  - {{from: a, to: b, condition: "{condition}"}}
"#
    );
    let ran = Setup::new(&yaml).run().await;
    assert!(ran.started("b").is_empty(), "\n{}", ran.describe());
    ran.error().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_condition_that_fails_to_evaluate_fails_the_run_naming_the_edge() {
    for condition in [
        "{{ a.n // 0 > 1 }}",
        "a.n | no_such_filter",
        "no_such_function(a.n)",
    ] {
        let error = condition_error(condition).await;
        let RunError::Condition { edge, .. } = &error else {
            panic!("`{condition}`: expected a condition error, got {error:?}");
        };
        assert!(edge.contains("a to b"), "`{condition}`: {edge}");
        assert!(edge.contains("edges[1]"), "`{condition}`: {edge}");
        assert!(
            error.to_string().contains("a to b"),
            "`{condition}`: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_on_an_undefined_name_is_false_not_an_error() {
    let ran = Setup::new(
        r#"
name: undefined is false
nodes:
  - {id: a, type: function_task, function_identifier: echo, input: {n: 1}}
  - {id: b, type: function_task, function_identifier: echo, input: {n: 2}}
edges:
  - {from: a, to: b, condition: "not_there"}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.skipped(), ["b"], "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_timeout_fails_the_node() {
    let ran = Setup::new(
        r#"
name: timeout
nodes:
  - id: slow
    type: language_task
    model: {provider: mock, model: echo, latency_ms: 2000}
    prompt: "slow"
    timeout: 0.05
"#,
    )
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "slow");
    assert!(message.contains("timed out after 0.05s"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_edges_nodes_run_in_list_order() {
    let ran = Setup::new(
        r#"
name: chain
model_config: {provider: mock, model: echo}
nodes:
  - {id: one, type: language_task, prompt: "1"}
  - {id: two, type: language_task, prompt: "{{ one }}2"}
  - {id: three, type: language_task, prompt: "{{ two }}3"}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("three"), "123");
    assert!(ran.finished("one")[0] <= ran.started("two")[0]);
    assert!(ran.finished("two")[0] <= ran.started("three")[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_nodes_bounds_the_nodes_running_at_once() {
    let mut yaml = String::from(
        "name: bounded fan-out\n\
         model_config: {provider: mock, model: echo, latency_ms: 20}\n\
         nodes:\n",
    );
    for i in 1..=6 {
        yaml += &format!("  - {{id: n{i}, type: language_task, prompt: \"{i}\"}}\n");
    }
    yaml += "edges:\n";
    for i in 1..=6 {
        yaml += &format!("  - START to n{i}\n");
    }
    let mut setup = Setup::new(&yaml);
    setup.services.settings.max_parallel_nodes = 2;
    let ran = setup.run().await;
    // Replay the event stream: nodes started and not yet finished.
    let (mut running, mut peak) = (0i32, 0i32);
    for e in &ran.events {
        match &e.kind {
            EventKind::NodeStarted { .. } => running += 1,
            EventKind::NodeFinished { .. } => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 2, "\n{}", ran.describe());
    assert_eq!(ran.outputs().len(), 6);
}
