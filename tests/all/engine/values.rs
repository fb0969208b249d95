//! The values a node sees (RECIPES.md section 5), templates, output
//! formats, final outputs (section 8) and input checks before a run
//! (section 4).

use super::{failed_node, func, mock_model, Setup};
use composer::engine::error::RunError;
use composer::plugins::Function;
use serde_json::json;
use std::sync::Arc;

/// `phrases`: needs `voices` as a JSON object; returns
/// `{"phrases": [{text, speaker, voice_id}, ...]}`.
fn phrases() -> Arc<dyn Function> {
    func("phrases", |input| async move {
        let voices = input["voices"]
            .as_object()
            .ok_or_else(|| format!("`voices` must be an object, got {}", input["voices"]))?;
        Ok(json!({"phrases": [
            {"text": "hello there", "speaker": "A", "voice_id": voices["A"]},
            {"text": "hi", "speaker": "B", "voice_id": voices["B"]},
            {"text": "how are you today", "speaker": "A", "voice_id": voices["A"]},
        ]}))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_entries_follow_the_template_and_lookup_rules() {
    let ran = Setup::new(
        r#"
name: values
user_inputs:
  - {id: a, type: string, default: voice-a}
  - {id: b, type: string, default: voice-b}
nodes:
  - id: split
    type: function_task
    function_identifier: phrases
    input:
      voices: "{{ {'A': a, 'B': b} }}"
  - id: shapes
    type: function_task
    function_identifier: echo
    input:
      voices: "{{ {'A': a, 'B': b} }}"
      texts: "{{ split.phrases | map(attribute='text') | list }}"
      count: "{{ split.phrases | length }}"
      rendered: "n={{ split.phrases | length }}"
      whole: split
      dotted: split.phrases.1.text
      literal: just some words
      number: 7
      nested: ["{{ a }}", a, {k: "{{ b | upper }}"}]
  - id: per_phrase
    type: map
    over: split.phrases
    input: {prefix: "{{ a | upper }}"}
    task:
      type: function_task
      function_identifier: echo
      input:
        text: text
        voice: voice_id
        at: "{{ index }}"
        same: "{{ item.text == text }}"
        prefix: prefix
"#,
    )
    .function(phrases())
    .run()
    .await;
    let shapes = ran.out("shapes");
    let expected_phrases = ran.out("split")["phrases"].clone();
    assert_eq!(
        shapes,
        &json!({
            "voices": {"A": "voice-a", "B": "voice-b"},
            "texts": ["hello there", "hi", "how are you today"],
            "count": 3,
            "rendered": "n=3",
            "whole": {"phrases": expected_phrases},
            "dotted": "hi",
            "literal": "just some words",
            "number": 7,
            "nested": ["voice-a", "a", {"k": "VOICE-B"}],
        })
    );
    assert_eq!(
        ran.out("per_phrase"),
        &json!([
            {"text": "hello there", "voice": "voice-a", "at": 0, "same": true, "prefix": "VOICE-A"},
            {"text": "hi", "voice": "voice-b", "at": 1, "same": true, "prefix": "VOICE-A"},
            {"text": "how are you today", "voice": "voice-a", "at": 2, "same": true, "prefix": "VOICE-A"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_input_a_node_sees_the_whole_state() {
    let ran = Setup::new(
        r#"
name: whole state
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: first, type: function_task, function_identifier: echo, input: {x: 1}}
  - {id: everything, type: function_task, function_identifier: echo}
"#,
    )
    .input("topic", "AI")
    .run()
    .await;
    assert_eq!(
        ran.out("everything"),
        &json!({"topic": "AI", "first": {"x": 1}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_an_undefined_variable_fails_naming_node_and_variable() {
    let ran = Setup::new(
        r#"
name: typo
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: write, type: language_task, model: {provider: mock, model: echo}, prompt: "About {{ tpoic }}"}
"#,
    )
    .input("topic", "AI")
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "write");
    assert!(message.contains("undefined variable `tpoic`"), "{message}");
    assert!(ran.finished("write").is_empty());

    // The same in a template input.
    let ran = Setup::new(
        r#"
name: typo in input
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: call, type: function_task, function_identifier: echo, input: {t: "{{ tpoic }}"}}
"#,
    )
    .input("topic", "AI")
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "call");
    assert!(message.contains("undefined variable `tpoic`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_an_undefined_variable_is_fine() {
    let ran = Setup::new(
        r#"
name: tests
user_inputs: [{id: topic, type: string}]
nodes:
  - id: write
    type: language_task
    model: {provider: mock, model: echo}
    prompt: "{% if extra is defined %}{{ extra }}{% else %}none{% endif %}/{{ style | default('d') }}/{% if missing %}yes{% endif %}/{{ topic }}"
"#,
    )
    .input("topic", "AI")
    .run()
    .await;
    assert_eq!(ran.out("write"), "none/d//AI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_file_is_a_jinja_template_relative_to_the_recipe() {
    let ran = Setup::new(
        r#"
name: prompt file
nodes:
  - {id: words, type: function_task, function_identifier: echo, input: {list: [red, green]}}
  - id: greet
    type: language_task
    model: {provider: mock, model: echo}
    prompt: prompts/greet.jinja
    input: {name: ada, words: words.list}
"#,
    )
    .run()
    .await;
    assert_eq!(
        ran.out("greet").as_str().map(str::trim_end),
        Some("Hello ADA! 1:red 2:green")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_parsed_and_dotted_access_works_downstream() {
    let ran = Setup::new(
        r#"
name: json
nodes:
  - id: outline
    type: language_task
    model: {provider: mock, model: echo, reply: '{"title": "Rust", "points": ["fast", "safe"]}'}
    output_format: json
    prompt: "make an outline"
  - id: write
    type: language_task
    model: {provider: mock, model: echo}
    prompt: "{{ outline.title }}: {{ outline.points | join(', ') }}"
  - id: pick
    type: function_task
    function_identifier: echo
    input: {first: outline.points.0, n: "{{ outline.points | length }}"}
  - id: fenced
    type: language_task
    model: {provider: mock, model: echo}
    output_format: json
    prompt: "no reply template: the mock wraps the prompt"
"#,
    )
    .run()
    .await;
    assert_eq!(
        ran.out("outline"),
        &json!({"title": "Rust", "points": ["fast", "safe"]})
    );
    assert_eq!(ran.out("write"), "Rust: fast, safe");
    assert_eq!(ran.out("pick"), &json!({"first": "fast", "n": 2}));
    assert_eq!(
        ran.out("fenced"),
        &json!({"echo": "no reply template: the mock wraps the prompt"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_is_not_json_is_a_node_error() {
    let ran = Setup::new(
        r#"
name: not json
nodes:
  - id: outline
    type: language_task
    model: {provider: mock, model: echo, reply: "Sure! Here is your outline."}
    output_format: json
    prompt: "make an outline"
"#,
    )
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "outline");
    assert!(message.contains("not JSON"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_output_is_a_mapping_with_lower_case_keys() {
    let ran = Setup::new(
        r#"
name: sections
nodes:
  - id: parts
    type: language_task
    model: {provider: mock, model: echo, reply: "TITLE: Hello\nKey Points: first line\nsecond line"}
    output_format: sections
    prompt: "split it"
  - id: use
    type: function_task
    function_identifier: echo
    input: {title: parts.title, points: "{{ parts.key_points.splitlines() }}"}
"#,
    )
    .run()
    .await;
    assert_eq!(
        ran.out("parts"),
        &json!({"title": "Hello", "key_points": "first line\nsecond line"})
    );
    assert_eq!(
        ran.out("use"),
        &json!({"title": "Hello", "points": ["first line", "second line"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_outputs_select_shape_and_leave_out_entries() {
    let ran = Setup::new(
        r#"
name: finals
user_inputs: [{id: flag, type: bool, default: false}]
nodes:
  - {id: result, type: function_task, function_identifier: echo, input: {title: T, body: B}}
  - {id: maybe, type: function_task, function_identifier: echo, input: {x: 1}}
edges:
  - START to result
  - {from: result, to: maybe, condition: flag}
final_outputs:
  - result.title
  - maybe
  - {id: shout, value: "{{ result.title | lower }}!"}
  - {id: typed, value: "{{ [result.title, result.body] }}"}
  - {id: hidden, value: result.body, condition: flag}
  - {id: shown, value: result.body, condition: "{{ not flag }}"}
  - {id: gone, value: maybe}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.skipped(), ["maybe"], "\n{}", ran.describe());
    assert_eq!(
        ran.outputs(),
        json!({
            "result.title": "T",
            "maybe": null,
            "shout": "t!",
            "typed": ["T", "B"],
            "shown": "B",
            "gone": null,
        })
        .as_object()
        .unwrap()
    );
    let keys: Vec<&String> = ran.outputs().keys().collect();
    assert_eq!(
        keys,
        ["result.title", "maybe", "shout", "typed", "shown", "gone"],
        "final outputs keep the listed order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_final_outputs_every_node_output_is_returned() {
    let ran = Setup::new(
        r#"
name: all outputs
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: a, type: function_task, function_identifier: echo, input: {t: topic}, output: first}
  - {id: b, type: language_task, model: {provider: mock, model: echo}, prompt: "{{ first.t }}!"}
"#,
    )
    .input("topic", "AI")
    .run()
    .await;
    assert_eq!(
        ran.outputs(),
        json!({"first": {"t": "AI"}, "b": "AI!"})
            .as_object()
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_coerced_to_their_types() {
    let ran = Setup::new(
        r#"
name: coercion
user_inputs:
  - {id: n, type: int}
  - {id: ratio, type: float}
  - {id: loud, type: bool, default: "no"}
  - {id: topic, type: string}
nodes:
  - id: show
    type: function_task
    function_identifier: echo
    input: {n: n, next: "{{ n + 1 }}", ratio: ratio, loud: loud, topic: topic}
"#,
    )
    .input("n", "42")
    .input("ratio", "0.5")
    .input("topic", "AI")
    .run()
    .await;
    assert_eq!(
        ran.out("show"),
        &json!({"n": 42, "next": 43, "ratio": 0.5, "loud": false, "topic": "AI"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_problems_are_all_reported_before_anything_runs() {
    let setup = Setup::new(
        r#"
name: inputs
user_inputs:
  - {id: n, type: int}
  - {id: topic, type: string}
  - {id: count, type: int, default: 3}
nodes:
  - {id: show, type: function_task, function_identifier: echo, input: {n: n}}
"#,
    )
    .input("tpoic", "AI")
    .input("count", "many");
    let Err((not_started, events)) = setup.start().await else {
        panic!("the run must not start");
    };
    assert!(events.is_empty(), "nothing ran: {events:?}");
    let RunError::Inputs(problems) = &not_started.0 else {
        panic!("expected input problems, got {:?}", not_started.0);
    };
    let mut named: Vec<&str> = problems.iter().map(|p| p.input.as_str()).collect();
    named.sort_unstable();
    assert_eq!(named, ["count", "n", "topic", "tpoic"]);
    let message = not_started.0.to_string();
    assert!(message.contains("did you mean `topic`"), "{message}");
    assert!(message.contains("input `n`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_function_is_reported_before_the_run_with_close_names() {
    let setup = Setup::new(
        r#"
name: unknown function
nodes:
  - {id: split, type: function_task, function_identifier: split_transcrip}
"#,
    )
    .function(func("split_transcript", |v| async move { Ok(v) }));
    let Err((not_started, events)) = setup.start().await else {
        panic!("the run must not start");
    };
    assert!(events.is_empty(), "nothing ran: {events:?}");
    let RunError::Preflight(problems) = &not_started.0 else {
        panic!("expected a preflight error, got {:?}", not_started.0);
    };
    let message = problems.join("\n");
    assert!(message.contains("node `split`"), "{message}");
    assert!(message.contains("`split_transcrip`"), "{message}");
    assert!(
        message.contains("did you mean `split_transcript`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_this_build_lacks_is_reported_unless_the_model_is_overridden() {
    let recipe = r#"
name: real provider
nodes:
  - {id: write, type: language_task, model: {provider: openai, model: gpt-4o-mini}, prompt: "hi"}
"#;
    let Err((not_started, _)) = Setup::new(recipe).start().await else {
        panic!("the run must not start");
    };
    let message = not_started.0.to_string();
    assert!(
        message.contains("node `write`") && message.contains("openai"),
        "{message}"
    );
    let ran = Setup::new(recipe)
        .model(mock_model("echo", json!({})))
        .run()
        .await;
    assert_eq!(ran.out("write"), "hi");
    assert!(ran.outcome.mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_fails_the_node_naming_the_function() {
    let ran = Setup::new(
        r#"
name: function error
nodes:
  - {id: call, type: function_task, function_identifier: fails, input: {x: 1}}
"#,
    )
    .function(func(
        "fails",
        |_| async move { Err("disk full".to_string()) },
    ))
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "call");
    assert!(message.contains("function `fails`"), "{message}");
    assert!(message.contains("disk full"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_inputs_reach_the_state_when_allowed() {
    let mut setup = Setup::new(
        r#"
name: extra
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: show, type: function_task, function_identifier: echo, input: {t: topic, e: "{{ extra }}"}}
"#,
    )
    .input("topic", "AI")
    .input("extra", json!([1, 2]));
    setup.allow_extra_inputs = true;
    let ran = setup.run().await;
    assert_eq!(ran.out("show"), &json!({"t": "AI", "e": [1, 2]}));
}
