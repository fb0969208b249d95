//! `map` (RECIPES.md section 7): item order, sequential and bounded
//! execution, `on_error: skip | halt`, per-item `model_override`.

use super::{failed_node, func, mock_model, Setup};
use composer::engine::error::{NodeError, RunError};
use composer::engine::events::EventKind;
use composer::plugins::Function;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `items`: `{n}` → `["item 0", ..., "item n-1"]`.
fn items() -> Arc<dyn Function> {
    func("items", |input| async move {
        let n = input["n"].as_u64().unwrap_or(0);
        Ok(Value::from(
            (0..n).map(|i| format!("item {i}")).collect::<Vec<_>>(),
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_keep_item_order_whatever_the_latencies() {
    let ran = Setup::new(
        r#"
name: ordered
nodes:
  - {id: list, type: function_task, function_identifier: items, input: {n: 30}}
  - id: each
    type: map
    over: list
    task:
      type: language_task
      model: {provider: mock, model: echo, latency_ms: [1, 40], reply: "done {{ prompt }}"}
      prompt: "{{ item }} at {{ index }}"
"#,
    )
    .function(items())
    .run()
    .await;
    let expected: Vec<Value> = (0..30)
        .map(|i| Value::from(format!("done item {i} at {i}")))
        .collect();
    assert_eq!(ran.out("each"), &Value::from(expected));
    let progress: Vec<(usize, usize)> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MapProgress {
                node, done, total, ..
            } if node == "each" => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(progress.last(), Some(&(30, 30)), "\n{}", ran.describe());
}

/// `record`: sleeps longer for earlier items, records completion order.
fn record(done: Arc<Mutex<Vec<u64>>>) -> Arc<dyn Function> {
    func("record", move |input| {
        let done = done.clone();
        async move {
            let i = input["i"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(5 * (8 - i))).await;
            done.lock().unwrap().push(i);
            Ok(Value::from(i * 10))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_keep_item_order_when_items_finish_in_reverse() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let ran = Setup::new(
        r#"
name: reversed
nodes:
  - id: each
    type: map
    over: "{{ range(8) | list }}"
    task: {type: function_task, function_identifier: record, input: {i: "{{ item }}"}}
"#,
    )
    .function(record(done.clone()))
    .run()
    .await;
    assert_eq!(
        ran.out("each"),
        &json!([0, 10, 20, 30, 40, 50, 60, 70]),
        "output in item order"
    );
    let order = done.lock().unwrap().clone();
    assert_eq!(order.len(), 8);
    assert_ne!(
        order,
        (0..8).collect::<Vec<u64>>(),
        "items should have completed out of order (the test relies on it)"
    );
}

/// `track`: counts calls in flight and keeps the highest count seen.
fn track(in_flight: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> Arc<dyn Function> {
    func("track", move |input| {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(input["item"].clone())
        }
    })
}

/// The most items of a 10-item map that were in flight at once.
async fn peak_in_flight(map_settings: &str) -> usize {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let yaml = format!(
        r#"
name: bounded
nodes:
  - id: each
    type: map
    over: "{{{{ range(10) | list }}}}"
    {map_settings}
    task: {{type: function_task, function_identifier: track, input: {{item: "{{{{ item }}}}"}}}}
"#
    );
    let ran = Setup::new(&yaml)
        .function(track(in_flight.clone(), peak.clone()))
        .run()
        .await;
    assert_eq!(ran.out("each"), &json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    peak.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_maps_never_overlap_items() {
    assert_eq!(peak_in_flight("execution_mode: sequential").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_the_items_in_flight() {
    assert_eq!(peak_in_flight("max_concurrency: 2").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_maps_run_items_at_the_same_time() {
    // The counter measures something: by default all ten overlap.
    assert!(peak_in_flight("execution_mode: parallel").await > 2);
}

const FAILING_ITEMS: &str = r#"
  - id: each
    type: map
    over: "{{ ['ok 0', 'BAD 1', 'ok 2', 'BAD 3', 'ok 4'] }}"
    task:
      type: language_task
      model: {provider: mock, model: echo, fail_when: "BAD", reply: "<{{ prompt }}>"}
      prompt: "{{ item }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_skip_leaves_failed_items_out_and_lists_them() {
    let yaml = format!("name: skip\nnodes:{FAILING_ITEMS}    on_error: skip\n");
    let ran = Setup::new(&yaml).run().await;
    assert_eq!(ran.out("each"), &json!(["<ok 0>", "<ok 2>", "<ok 4>"]));
    let errors = ran.out("each_errors").as_array().unwrap();
    let listed: Vec<(Value, Value)> = errors
        .iter()
        .map(|e| (e["index"].clone(), e["item"].clone()))
        .collect();
    assert_eq!(
        listed,
        [(json!(1), json!("BAD 1")), (json!(3), json!("BAD 3"))]
    );
    for e in errors {
        assert!(
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("injected failure")),
            "{e}"
        );
    }
    let failed_progress = ran.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::MapProgress {
            failed,
            done,
            total,
            ..
        } => Some((*failed, *done, *total)),
        _ => None,
    });
    assert_eq!(failed_progress, Some((2, 5, 5)), "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_halt_fails_the_node_and_the_run_naming_the_item() {
    let yaml = format!(
        "name: halt\nnodes:{}\n  - {{id: after, type: function_task, function_identifier: echo, input: {{x: each}}}}\n",
        FAILING_ITEMS.replace("'BAD 3'", "'ok 3'")
    );
    let ran = Setup::new(&yaml).run().await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "each");
    let RunError::NodeFailed { source, .. } = ran.error() else {
        unreachable!()
    };
    assert!(
        matches!(source, NodeError::MapItem { index: 1, .. }),
        "{source:?}"
    );
    assert!(message.contains("node `each` failed"), "{message}");
    assert!(message.contains("item 1"), "{message}");
    assert!(ran.started("after").is_empty(), "\n{}", ran.describe());
}

/// `agents`: like the tutorial's `prepare_agent_configs`, a list of item
/// mappings, two of them with their own `model_override`.
fn agents() -> Arc<dyn Function> {
    func("agents", |_| async move {
        let reply = "{{ model }} says {{ prompt }}";
        Ok(json!([
            {"name": "a", "model_override": {"provider": "mock", "model": "alpha", "reply": reply}},
            {"name": "b", "model_override": {"provider": "mock", "model": "beta", "reply": reply}},
            {"name": "c"}
        ]))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_model_override_switches_the_model_for_that_item() {
    let recipe = r#"
name: per-item models
nodes:
  - {id: team, type: function_task, function_identifier: agents, input: {question: q}}
  - id: answers
    type: map
    over: team
    task:
      type: language_task
      model: {provider: mock, model: base, reply: "{{ model }} says {{ prompt }}"}
      prompt: "hi from {{ name }}"
"#;
    let ran = Setup::new(recipe).function(agents()).run().await;
    assert_eq!(
        ran.out("answers"),
        &json!([
            "alpha says hi from a",
            "beta says hi from b",
            "base says hi from c"
        ])
    );

    // `--model` replaces every model, item overrides included.
    let forced = mock_model("forced", json!({"reply": "{{ model }}: {{ prompt }}"}));
    let ran = Setup::new(recipe)
        .function(agents())
        .model(forced)
        .run()
        .await;
    assert_eq!(
        ran.out("answers"),
        &json!([
            "forced: hi from a",
            "forced: hi from b",
            "forced: hi from c"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_something_that_is_not_a_list_fails_the_map() {
    let ran = Setup::new(
        r#"
name: not a list
nodes:
  - {id: thing, type: function_task, function_identifier: echo, input: {a: 1}}
  - id: each
    type: map
    over: thing
    task: {type: function_task, function_identifier: echo, input: {x: "{{ item }}"}}
"#,
    )
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "each");
    assert!(message.contains("must give a list"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_halt_cancels_the_items_still_running() {
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = finished.clone();
    let slow_or_failing = func("slow_or_failing", move |input| {
        let counter = counter.clone();
        async move {
            if input["item"] == json!(0) {
                return Err("item 0 is broken".to_string());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(input["item"].clone())
        }
    });
    let ran = Setup::new(
        r#"
name: halt cancels
nodes:
  - id: each
    type: map
    over: "{{ range(6) | list }}"
    task: {type: function_task, function_identifier: slow_or_failing, input: {item: "{{ item }}"}}
"#,
    )
    .function(slow_or_failing)
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "each");
    assert!(message.contains("item 0"), "{message}");
    // Items run as tasks of their own: they must have been stopped, not
    // left to finish after the run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the other items were cancelled, not waited for or left running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_map_items_run_on_every_core() {
    // Each item holds its thread for 100 ms (CPU work, as a plugin call
    // is); items polled by one task would all run on one thread, one
    // after another.
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let seen = threads.clone();
    let busy = func("busy", move |input| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(Duration::from_millis(100));
            Ok(input["item"].clone())
        }
    });
    let ran = Setup::new(
        r#"
name: busy map
nodes:
  - id: each
    type: map
    over: "{{ range(6) | list }}"
    task: {type: function_task, function_identifier: busy, input: {item: "{{ item }}"}}
"#,
    )
    .function(busy)
    .run()
    .await;
    assert_eq!(ran.out("each"), &json!([0, 1, 2, 3, 4, 5]));
    let threads = threads.lock().unwrap().len();
    assert!(threads >= 2, "items ran on {threads} thread(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_can_run_a_sub_recipe_per_item() {
    let ran = Setup::new(
        r#"
name: map of recipes
nodes:
  - id: each
    type: map
    over: "{{ [{'subject': 'ants'}, {'subject': 'bees', 'style': 'long'}] }}"
    task: {type: recipe, recipe_path: sub/child.yaml}
"#,
    )
    .run()
    .await;
    assert_eq!(
        ran.out("each"),
        &json!([
            {"write": "[plain text about ants]", "heading": "[title for ants]"},
            {"write": "[long text about bees]", "heading": "[title for bees]"},
        ])
    );
    for path in ["each[0]/write", "each[1]/write", "each[1]/title"] {
        assert_eq!(ran.finished(path).len(), 1, "{path}\n{}", ran.describe());
    }
}
