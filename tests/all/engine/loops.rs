//! Loops (RECIPES.md section 6): a back edge re-runs the loop body, which
//! sees the previous pass's outputs; edges leaving the loop settle once it
//! stops; every loop has a bound.

use super::Setup;
use composer::engine::error::RunError;
use composer::engine::events::EventKind;
use serde_json::json;

/// draft → review → (back to draft while `count < {until}`) → publish.
fn revise_loop(until: u32, back_edge_extra: &str, recipe_extra: &str) -> String {
    format!(
        r#"
name: revise
{recipe_extra}
nodes:
  - id: draft
    type: language_task
    model: {{provider: mock, model: echo, reply: "draft: {{{{ prompt }}}}"}}
    prompt: "pass {{{{ count | default(0) + 1 }}}}{{% if draft is defined %}} after [{{{{ draft }}}}]{{% endif %}}"
  - id: review
    type: function_task
    function_identifier: count_up
    input:
      previous: "{{{{ count | default(0) }}}}"
    output: count
  - id: publish
    type: function_task
    function_identifier: echo
    input:
      text: draft
      passes: count
edges:
  - START to draft
  - draft to review
  - {{from: review, to: draft, condition: "count < {until}"{back_edge_extra}}}
  - {{from: review, to: publish, condition: "count >= {until}"}}
"#
    )
}

fn loop_iterations(ran: &super::Ran) -> Vec<(Vec<String>, u32)> {
    ran.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LoopIteration { nodes, iteration } => Some((nodes.clone(), *iteration)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_runs_until_its_condition_stops_it_then_exits_once() {
    let ran = Setup::new(&revise_loop(3, "", "")).run().await;
    assert_eq!(ran.started("draft").len(), 3, "\n{}", ran.describe());
    assert_eq!(ran.started("review").len(), 3, "\n{}", ran.describe());
    assert_eq!(ran.started("publish").len(), 1, "\n{}", ran.describe());
    let nodes = vec!["draft".to_string(), "review".to_string()];
    assert_eq!(
        loop_iterations(&ran),
        [(nodes.clone(), 2), (nodes, 3)],
        "\n{}",
        ran.describe()
    );
    // Each pass saw the previous one's output; publish sees the last pass.
    assert_eq!(
        ran.out("publish"),
        &json!({
            "text": "draft: pass 3 after [draft: pass 2 after [draft: pass 1]]",
            "passes": 3
        })
    );
    // publish starts after the last review finished.
    let last_review = *ran.finished("review").last().unwrap();
    assert!(
        ran.started("publish")[0] >= last_review,
        "\n{}",
        ran.describe()
    );
    assert!(ran.skipped().is_empty(), "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_whose_condition_is_false_at_once_runs_one_pass() {
    let ran = Setup::new(&revise_loop(1, "", "")).run().await;
    assert_eq!(ran.started("draft").len(), 1, "\n{}", ran.describe());
    assert!(loop_iterations(&ran).is_empty());
    assert_eq!(ran.out("publish")["passes"], json!(1));
}

async fn loop_limit(back_edge_extra: &str, recipe_extra: &str, expected_limit: u32) {
    let ran = Setup::new(&revise_loop(1000, back_edge_extra, recipe_extra))
        .run()
        .await;
    match ran.error() {
        RunError::LoopLimit { nodes, limit } => {
            assert_eq!(nodes, &["draft", "review"]);
            assert_eq!(*limit, expected_limit);
        }
        other => panic!("expected a loop limit error, got {other:?}"),
    }
    let message = ran.error().to_string();
    assert!(
        message.contains("draft") && message.contains("review"),
        "{message}"
    );
    assert_eq!(
        ran.started("draft").len(),
        expected_limit as usize,
        "the loop runs exactly its bound of passes\n{}",
        ran.describe()
    );
    assert!(ran.started("publish").is_empty(), "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_past_the_bound_on_its_back_edge_fails_the_run() {
    loop_limit(", max_iterations: 2", "", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_past_the_recipe_bound_fails_the_run() {
    loop_limit("", "max_iterations: 4", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_past_the_default_bound_of_ten_fails_the_run() {
    loop_limit("", "", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_while_loop_whose_body_is_skipped_on_the_last_pass_exits() {
    // check → body (while count < 3) → back to check; check → done after.
    let ran = Setup::new(
        r#"
name: while
nodes:
  - id: check
    type: function_task
    function_identifier: count_up
    input: {previous: "{{ count | default(0) }}"}
    output: count
  - id: body
    type: function_task
    function_identifier: echo
    input: {seen: count}
  - id: done
    type: function_task
    function_identifier: echo
    input: {count: count, last_body: body}
edges:
  - START to check
  - {from: check, to: body, condition: "count < 3"}
  - body to check
  - {from: check, to: done, condition: "count >= 3"}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.started("check").len(), 3, "\n{}", ran.describe());
    assert_eq!(ran.started("body").len(), 2, "\n{}", ran.describe());
    assert_eq!(ran.skipped(), ["body"], "\n{}", ran.describe());
    assert_eq!(ran.started("done").len(), 1, "\n{}", ran.describe());
    // The body's output from its last pass that ran stays in the state.
    assert_eq!(
        ran.out("done"),
        &json!({"count": 3, "last_body": {"seen": 2}})
    );
}
