//! The recipe layer as the engine uses it (issue 9, items 7 and 8): one
//! model precedence (a map node's `model` reaches its items), sub-recipe
//! plans built once at load, typed `cache`/`retry` settings, self-loops as
//! entry nodes, and `max_concurrency: auto` sized by the function's
//! configured memory limit.

use super::{load, Setup};
use async_trait::async_trait;
use composer::engine::events::EventKind;
use composer::engine::plan::Plan;
use composer::plugins::{CallContext, CallError, Function, FunctionInfo};
use composer::recipe::model::{CachePolicy, NodeKind, RetryPolicy};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_map_nodes_model_applies_to_its_items() {
    // No `model_config`, and the task names no model: the map's model is
    // the one its items use; an item's `model_override` still wins.
    let ran = Setup::new(
        r#"
name: map model
nodes:
  - id: items
    type: function_task
    function_identifier: echo
    input:
      list: [{topic: a}, {topic: b, model_override: {provider: mock, model: item}}]
  - id: each
    type: map
    over: items.list
    model: {provider: mock, model: mapper, reply: "{{ model }} {{ prompt }}"}
    task:
      type: language_task
      prompt: "{{ topic }}"
final_outputs: [each]
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("each"), &json!(["mapper a", "b"]));
}

#[tokio::test]
async fn a_map_tasks_own_model_beats_the_map_nodes() {
    let ran = Setup::new(
        r#"
name: task model
model_config: {provider: mock, model: recipe}
nodes:
  - id: each
    type: map
    over: "{{ ['x'] }}"
    model: {provider: mock, model: mapper}
    task:
      type: language_task
      model: {provider: mock, model: task, reply: "{{ model }} {{ prompt }}"}
      prompt: "{{ item }}"
final_outputs: [each]
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("each"), &json!(["task x"]));
}

#[test]
fn sub_recipe_plans_are_built_once_at_load() {
    let recipe = load(
        r#"
name: twice
nodes:
  - id: first
    type: recipe
    recipe_path: sub/child.yaml
  - id: second
    type: recipe
    recipe_path: sub/child.yaml
"#,
    );
    let plans: Vec<_> = recipe
        .nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Recipe(sub) => {
                assert!(Arc::ptr_eq(&sub.plan.recipe, &sub.recipe));
                sub.plan.clone()
            }
            other => panic!("not a recipe node: {other:?}"),
        })
        .collect();
    assert!(
        Arc::ptr_eq(&plans[0], &plans[1]),
        "one sub-recipe file, one plan"
    );
}

#[test]
fn cache_and_retry_settings_are_typed_at_load() {
    let recipe = load(
        r#"
name: settings
nodes:
  - id: a
    type: language_task
    model: {provider: mock, model: echo}
    prompt: hi
    cache: {ttl: 30m, normalize: true}
    retry: {max_attempts: 2, base_delay: 10ms}
  - id: b
    type: language_task
    model: {provider: mock, model: echo}
    prompt: hi
    cache: false
    retry: 4
"#,
    );
    let a = &recipe.nodes[0].settings;
    assert_eq!(
        a.cache,
        CachePolicy {
            enabled: Some(true),
            ttl: Some(Duration::from_secs(1800)),
            normalize: true
        }
    );
    assert_eq!(
        a.retry,
        Some(RetryPolicy {
            max_attempts: Some(2),
            base_delay: Some(Duration::from_millis(10)),
            max_delay: None
        })
    );
    let b = &recipe.nodes[1].settings;
    assert_eq!(b.cache.enabled, Some(false));
    assert_eq!(b.retry.and_then(|r| r.max_attempts), Some(4));
}

const SPIN: &str = r#"
name: spin
nodes:
  - id: spin
    type: function_task
    function_identifier: count_up
    input:
      previous: "{{ spin or 0 }}"
edges:
  - {from: spin, to: spin, condition: "spin < 5", max_iterations: 5}
  - {from: spin, to: END, condition: "spin >= 5"}
final_outputs: [spin]
"#;

#[tokio::test]
async fn a_self_loop_is_an_entry_node_and_runs_to_its_bound() {
    let recipe = load(SPIN);
    let plan = Plan::build(recipe.clone()).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(plan.entries, vec![0]);
    assert_eq!(plan.loops.len(), 1);
    let ran = Setup::recipe(recipe).run().await;
    assert_eq!(ran.out("spin"), &json!(5));
    assert_eq!(ran.started("spin").len(), 5, "{}", ran.describe());
}

#[tokio::test]
async fn a_self_loop_past_its_bound_fails_naming_the_loop() {
    let ran = Setup::new(&SPIN.replace("spin < 5", "spin < 50"))
        .run()
        .await;
    let message = ran.error().to_string();
    assert!(message.contains("loop over spin ran 5 times"), "{message}");
    assert_eq!(ran.started("spin").len(), 5, "{}", ran.describe());
}

/// A function whose calls each claim more memory than any machine has:
/// an `auto` map over it runs one item at a time.
struct Greedy;

#[async_trait]
impl Function for Greedy {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "greedy".into(),
            description: "sleeps, with a huge memory limit".into(),
            pure: false,
            tags: Vec::new(),
            input_schema: None,
        }
    }

    fn memory_limit(&self) -> Option<u64> {
        Some(u64::MAX)
    }

    async fn call(&self, input: Value, _ctx: &CallContext) -> Result<Value, CallError> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(input)
    }
}

#[tokio::test]
async fn auto_maps_follow_the_functions_configured_memory_limit() {
    if composer::metrics::collector::read_available_memory().is_none() {
        return; // not Linux: free memory is unknown and does not size maps
    }
    let ran = Setup::new(
        r#"
name: greedy map
nodes:
  - id: each
    type: map
    over: "{{ [1, 2, 3, 4] }}"
    max_concurrency: auto
    task:
      type: function_task
      function_identifier: greedy
final_outputs: [each]
"#,
    )
    .function(Arc::new(Greedy))
    .run()
    .await;
    assert_eq!(ran.outputs()["each"].as_array().map(Vec::len), Some(4));
    let mut spans: Vec<(Duration, Duration)> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MapItem {
                started, duration, ..
            } => Some((*started, *started + *duration)),
            _ => None,
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "items overlapped: {spans:?}\n{}",
            ran.describe()
        );
    }
}
