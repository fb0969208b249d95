//! What the run store holds after a run: status, inputs, final outputs,
//! each node's record with its output, the events, and a failed run's
//! error.

use super::{Env, Run};
use composer::store::RunFilter;
use serde_json::{json, Value};

const RECIPE: &str = r#"
name: stored run
user_inputs:
  - {id: topic, type: string}
nodes:
  - id: outline
    type: language_task
    model: {provider: mock, model: echo, reply: "outline of {{ prompt }}"}
    prompt: "{{ topic }}"
  - id: parts
    type: map
    over: "{{ ['a', 'b'] }}"
    task:
      type: language_task
      model: {provider: mock, model: echo}
      prompt: "part {{ item }}"
  - id: check
    type: language_task
    model: {provider: mock, model: echo, fail_when: "BREAK"}
    prompt: "check {{ outline }}"
edges:
  - outline to parts
  - parts to check
final_outputs: [outline, parts, check]
"#;

/// Event names of a stored run, in order.
fn event_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_is_recorded_with_its_nodes_outputs_and_events() {
    let env = Env::new();
    let store = env.store();
    let ran = Run::new(&env, RECIPE)
        .store(&store)
        .cache(&env.cache())
        .input("topic", "otters")
        .run()
        .await;
    let outputs = ran.outputs().clone();

    let (run, nodes) = store
        .get(&ran.outcome.run_id)
        .unwrap()
        .expect("the run is recorded");
    assert_eq!(run.recipe, "stored run");
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.inputs, json!({"topic": "otters"}));
    assert_eq!(run.outputs, Some(Value::Object(outputs.clone())));
    assert_eq!(run.error, None);
    let finished = run.finished_at.expect("finished_at");
    assert!(finished >= run.started_at);

    let by_name: std::collections::BTreeMap<_, _> =
        nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        vec!["check", "outline", "parts"],
        "one record per node"
    );
    for (name, node) in &by_name {
        assert_eq!(node.status, "completed", "{name}");
        assert_eq!(node.output.as_ref(), Some(&outputs[*name]), "{name}");
        assert!(node.duration.is_some(), "{name} has no duration");
        assert_eq!(node.error, None);
        assert!(node.stats.is_some(), "{name} has no stats");
    }
    assert_eq!(by_name["outline"].output, Some(json!("outline of otters")));
    assert_eq!(by_name["parts"].output, Some(json!(["part a", "part b"])));
    assert_eq!(
        by_name["outline"].stats.as_ref().unwrap()["calls"],
        json!(1)
    );

    let events = store.events(&ran.outcome.run_id).unwrap();
    let names = event_names(&events);
    assert_eq!(names.first().map(String::as_str), Some("run_started"));
    assert_eq!(names.last().map(String::as_str), Some("run_finished"));
    assert_eq!(names.iter().filter(|n| *n == "node_finished").count(), 3);
    assert!(
        !names.iter().any(|n| n == "map_item"),
        "per-item events are not stored: {names:?}"
    );
    let outline_done = events
        .iter()
        .find(|e| e["event"] == "node_finished" && e["node"] == "outline")
        .unwrap();
    assert_eq!(outline_done["cached"], json!(false));

    // A second run of the same recipe: its nodes are `cached`.
    let again = Run::new(&env, RECIPE)
        .store(&store)
        .cache(&env.cache())
        .input("topic", "otters")
        .run()
        .await;
    let (run2, nodes2) = store.get(&again.outcome.run_id).unwrap().unwrap();
    assert_eq!(run2.status, "succeeded");
    assert_eq!(run2.outputs, run.outputs);
    for node in &nodes2 {
        assert_eq!(node.status, "cached", "{}", node.node);
        assert_eq!(node.output.as_ref(), Some(&outputs[&node.node]));
    }

    // Listing: newest first, by recipe, limited.
    let all = store.list(&RunFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![again.outcome.run_id.as_str(), ran.outcome.run_id.as_str()]
    );
    let limited = store
        .list(&RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);
    let other = store
        .list(&RunFilter {
            recipe: Some("another recipe".into()),
            ..RunFilter::default()
        })
        .unwrap();
    assert!(other.is_empty());
    assert!(store.get("run-that-never-was").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_recorded_with_its_error() {
    let env = Env::new();
    let store = env.store();
    let ran = Run::new(&env, RECIPE)
        .store(&store)
        .input("topic", "BREAK it")
        .run()
        .await;
    let error = ran.error();
    assert!(error.contains("injected failure"), "{error}");

    let (run, nodes) = store.get(&ran.outcome.run_id).unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert_eq!(run.error.as_deref(), Some(error.as_str()));
    assert_eq!(run.outputs, None);
    assert!(run.finished_at.is_some());

    let check = nodes.iter().find(|n| n.node == "check").unwrap();
    assert_eq!(check.status, "failed");
    assert!(
        check.error.as_deref().unwrap_or_default().contains("BREAK"),
        "{check:?}"
    );
    assert_eq!(check.output, None);
    let outline = nodes.iter().find(|n| n.node == "outline").unwrap();
    assert_eq!(outline.status, "completed");
    assert_eq!(outline.output, Some(json!("outline of BREAK it")));

    let names = event_names(&store.events(&ran.outcome.run_id).unwrap());
    assert!(names.contains(&"node_failed".to_string()), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("run_finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_do_not_start_are_not_recorded() {
    let env = Env::new();
    let store = env.store();
    let recipe = super::load(RECIPE);
    let request = composer::engine::runner::RunRequest {
        recipe,
        inputs: Default::default(), // `topic` is missing
        model_override: None,
        out_root: env.out.clone(),
        replies: Default::default(),
        events: composer::engine::events::CollectEvents::new(),
        allow_extra_inputs: false,
        cache_mode: Default::default(),
    };
    let mut services = composer::engine::run::Services::new(Default::default());
    services.store = Some(store.clone());
    let refused =
        composer::engine::runner::run_recipe(std::sync::Arc::new(services), request).await;
    assert!(refused.is_err());
    assert!(store.list(&RunFilter::default()).unwrap().is_empty());
}
