//! Provider calls through the cache, counted by the fake server.

use super::{Env, Fake, Run};
use composer::cache::CacheMode;
use serde_json::{json, Value};
use std::time::Duration;

/// Two dependent language nodes and a three-item map, on the fake.
const PIPELINE: &str = r#"
name: cached pipeline
user_inputs:
  - {id: topic, type: string}
nodes:
  - id: outline
    type: language_task
    model: {provider: fake, model: small, temperature: 0.2}
    prompt: "Outline an article about {{ topic }}"
  - id: draft
    type: language_task
    model: {provider: fake, model: small, temperature: 0.2}
    prompt: "Write from this outline: {{ outline }}"
  - id: sections
    type: map
    over: "{{ ['intro', 'body', 'end'] }}"
    task:
      type: language_task
      model: {provider: fake, model: small, temperature: 0.2}
      prompt: "Write the {{ item }} of {{ topic }}"
final_outputs: [outline, draft, sections]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_makes_no_provider_call_and_returns_the_same_outputs() {
    let env = Env::new();
    let fake = Fake::start();
    let cache = env.cache();
    let run = |cache| {
        Run::new(&env, PIPELINE)
            .providers(fake.providers())
            .cache(cache)
            .input("topic", "otters")
    };

    let first = run(&cache).run().await;
    assert_eq!(fake.calls(), 5, "outline, draft and three sections");
    for node in ["outline", "draft", "sections"] {
        assert!(
            !first.cached(node),
            "{node} cannot be cached on a first run"
        );
    }
    assert_eq!(first.finished("outline").stats.calls, 1);
    assert_eq!(env.entries()["language_task"], 5);

    // Same process: the memory layer.
    let second = run(&cache).run().await;
    assert_eq!(fake.calls(), 5, "the second run made provider calls");
    assert_eq!(second.outputs(), first.outputs());

    // A new process: an empty memory layer over the same database.
    let third = run(&env.cache()).run().await;
    assert_eq!(fake.calls(), 5, "the run over SQLite made provider calls");
    assert_eq!(third.outputs(), first.outputs());
    for ran in [&second, &third] {
        for node in ["outline", "draft", "sections"] {
            let f = ran.finished(node);
            assert!(f.cached, "{node} not cached:\n{}", ran.describe());
            assert_eq!(f.stats.calls, 0, "a cached node reports no call");
            assert_eq!(f.stats.input_tokens, 0, "a cached node reports no tokens");
        }
    }
    assert_eq!(
        first.out("outline"),
        &json!("small answer #1 to: Outline an article about otters")
    );
}

/// `PIPELINE`'s first node alone, with the model mapping and prompt given.
fn single(model: &str, prompt: &str) -> String {
    format!(
        "name: single\nuser_inputs:\n  - {{id: topic, type: string}}\nnodes:\n  - id: ask\n    type: language_task\n    model: {model}\n    prompt: \"{prompt}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_model_a_parameter_or_the_prompt_misses() {
    let env = Env::new();
    let fake = Fake::start();
    let base_model = "{provider: fake, model: small, temperature: 0.2}";
    let base_prompt = "Facts about {{ topic }}";
    let run = |model: &str, prompt: &str, topic: &str| {
        Run::new(&env, &single(model, prompt))
            .providers(fake.providers())
            .cache(&env.cache())
            .input("topic", topic)
            .run()
    };

    let base = run(base_model, base_prompt, "otters").await;
    assert_eq!(fake.calls(), 1);
    let again = run(base_model, base_prompt, "otters").await;
    assert_eq!(fake.calls(), 1, "an identical call must hit");
    assert_eq!(again.out("ask"), base.out("ask"));

    let changes: [(&str, &str, &str, &str); 6] = [
        (
            "another model",
            "{provider: fake, model: large, temperature: 0.2}",
            base_prompt,
            "otters",
        ),
        (
            "another temperature",
            "{provider: fake, model: small, temperature: 0.7}",
            base_prompt,
            "otters",
        ),
        (
            "an added parameter",
            "{provider: fake, model: small, temperature: 0.2, max_tokens: 50}",
            base_prompt,
            "otters",
        ),
        (
            "another prompt template",
            base_model,
            "Tell me facts about {{ topic }}",
            "otters",
        ),
        (
            "another input in the prompt",
            base_model,
            base_prompt,
            "beavers",
        ),
        (
            "another provider",
            "{provider: mock, model: small, temperature: 0.2}",
            base_prompt,
            "otters",
        ),
    ];
    let mut expected_calls = 1;
    for (what, model, prompt, topic) in changes {
        let ran = run(model, prompt, topic).await;
        if !model.contains("mock") {
            expected_calls += 1;
        }
        assert!(!ran.cached("ask"), "{what} must miss");
        assert_eq!(fake.calls(), expected_calls, "{what} must make a call");
        assert_ne!(ran.out("ask"), base.out("ask"), "{what}");
    }
    // The fake saw the parameter that changed.
    let bodies = fake.bodies();
    assert_eq!(bodies[2]["temperature"], json!(0.7));
    assert_eq!(bodies[3]["max_tokens"], json!(50));

    // Every variant is now cached, the original included.
    let before = fake.calls();
    let base_again = run(base_model, base_prompt, "otters").await;
    assert_eq!(base_again.out("ask"), base.out("ask"));
    for (_, model, prompt, topic) in changes {
        assert!(run(model, prompt, topic).await.cached("ask"));
    }
    assert_eq!(fake.calls(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_off_makes_calls_and_stores_nothing() {
    let env = Env::new();
    let fake = Fake::start();
    let run = |mode| {
        Run::new(&env, PIPELINE)
            .providers(fake.providers())
            .cache(&env.cache())
            .input("topic", "otters")
            .mode(mode)
            .run()
    };
    let a = run(CacheMode::Off).await;
    let b = run(CacheMode::Off).await;
    assert_eq!(fake.calls(), 10, "every call made, twice");
    assert_eq!(env.entry_count(), 0, "--no-cache stored results");
    assert!(!b.cached("outline"));
    assert_ne!(
        a.out("outline"),
        b.out("outline"),
        "fresh answers each time"
    );

    // Nor does it read what is there.
    let cached = run(CacheMode::Use).await;
    assert_eq!(fake.calls(), 15);
    assert_eq!(env.entry_count(), 5);
    let off = run(CacheMode::Off).await;
    assert_eq!(fake.calls(), 20, "--no-cache read the cache");
    assert_ne!(off.out("outline"), cached.out("outline"));
    assert_eq!(env.entry_count(), 5);
    // ...and left the stored results as they were.
    let after = run(CacheMode::Use).await;
    assert_eq!(fake.calls(), 20);
    assert_eq!(after.outputs(), cached.outputs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_refresh_makes_calls_and_stores_them() {
    let env = Env::new();
    let fake = Fake::start();
    let cache = env.cache();
    let run = |cache, mode| {
        Run::new(&env, PIPELINE)
            .providers(fake.providers())
            .cache(cache)
            .input("topic", "otters")
            .mode(mode)
            .run()
    };
    let first = run(&cache, CacheMode::Use).await;
    assert_eq!(fake.calls(), 5);
    let refreshed = run(&cache, CacheMode::Refresh).await;
    assert_eq!(fake.calls(), 10, "--refresh read the cache");
    assert!(!refreshed.cached("outline"));
    assert_ne!(refreshed.out("outline"), first.out("outline"));
    // Refreshed entries replace the old ones; `draft`'s prompt holds the
    // new outline, so it is a new entry beside the old one.
    assert_eq!(env.entry_count(), 6);
    // The fresh results are what later runs get, from memory and from SQLite.
    for cache in [&cache, &env.cache()] {
        let later = run(cache, CacheMode::Use).await;
        assert_eq!(fake.calls(), 10);
        assert_eq!(later.outputs(), refreshed.outputs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_false_on_a_node_calls_every_time() {
    let env = Env::new();
    let fake = Fake::start();
    let yaml = r#"
name: partly cached
nodes:
  - id: fresh
    type: language_task
    model: {provider: fake, model: small}
    prompt: "Today's headline"
    cache: false
  - id: kept
    type: language_task
    model: {provider: fake, model: small}
    prompt: "A timeless proverb"
"#;
    let run = || {
        Run::new(&env, yaml)
            .providers(fake.providers())
            .cache(&env.cache())
            .run()
    };
    let a = run().await;
    let b = run().await;
    let c = run().await;
    assert_eq!(fake.calls(), 4, "fresh three times, kept once");
    assert!(!b.cached("fresh") && !c.cached("fresh"));
    assert!(b.cached("kept") && c.cached("kept"));
    assert_ne!(a.out("fresh"), c.out("fresh"));
    assert_eq!(a.out("kept"), c.out("kept"));
    assert_eq!(env.entry_count(), 1, "a `cache: false` result was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_makes_spellings_of_a_value_share_a_result() {
    let env = Env::new();
    let fake = Fake::start();
    let yaml = r#"
name: normalized
user_inputs:
  - {id: city, type: string}
nodes:
  - id: loose
    type: language_task
    model: {provider: fake, model: small}
    prompt: "Three facts about {{ city }}."
    cache: {normalize: true}
  - id: strict
    type: language_task
    model: {provider: fake, model: large}
    prompt: "Three facts about {{ city }}."
"#;
    let run = |city: &str| {
        Run::new(&env, yaml)
            .providers(fake.providers())
            .cache(&env.cache())
            .input("city", city)
            .run()
    };
    let first = run("  Paris").await;
    assert_eq!(fake.calls(), 2);
    let second = run("paris").await;
    assert_eq!(fake.calls(), 3, "only the strict node may call again");
    assert!(
        second.cached("loose"),
        "\"  Paris\" and \"paris\" must share"
    );
    assert!(!second.cached("strict"));
    assert_eq!(second.out("loose"), first.out("loose"));
    let third = run("PARIS").await;
    assert!(third.cached("loose"));
    assert_eq!(fake.calls(), 4);
    // Another city is another result.
    let other = run("Lyon").await;
    assert!(!other.cached("loose"));
    assert_eq!(fake.calls(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_fifty_identical_prompts_makes_one_call() {
    let env = Env::new();
    // Slow enough that every item asks while the first call is in flight.
    let fake = Fake::with_delay(Duration::from_millis(300));
    let cache = env.cache();
    let yaml = r#"
name: single flight
nodes:
  - id: answers
    type: map
    over: "{{ range(50) | list }}"
    max_concurrency: 50
    task:
      type: language_task
      model: {provider: fake, model: small}
      prompt: "What is the capital of France?"
"#;
    let ran = Run::new(&env, yaml)
        .providers(fake.providers())
        .cache(&cache)
        .run()
        .await;
    assert_eq!(fake.calls(), 1, "identical calls in flight were not merged");
    let answers = ran.out("answers").as_array().unwrap().clone();
    assert_eq!(answers.len(), 50);
    assert!(answers.iter().all(|a| a == &answers[0]));
    assert_eq!(
        answers[0],
        Value::from("small answer #1 to: What is the capital of France?")
    );
    let counters = cache.counters();
    assert_eq!((counters.misses, counters.hits), (1, 49));
    assert!(
        !ran.cached("answers"),
        "the map made a call, so it is not `cached`"
    );
}
