//! Time to live, on the test clock: the settings' default, a node's
//! `cache: {ttl}`, no TTL at all, and stats and prune of expired entries.

use super::{Env, Fake, Run};
use composer::cache::{CacheMode, CacheSettings, ResultCache};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

fn ask(cache_setting: &str) -> String {
    format!(
        "name: expiring\nnodes:\n  - id: ask\n    type: language_task\n    model: {{provider: fake, model: small}}\n    prompt: \"What day is it?\"\n{cache_setting}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_ttl_expires_results() {
    let env = Env::new();
    let fake = Fake::start();
    let settings = CacheSettings {
        ttl: "1h".into(),
        ..env.settings()
    };
    let memory = env.cache_with(&settings);
    let yaml = ask("");
    let run = |cache: &Arc<ResultCache>| {
        Run::new(&env, &yaml)
            .providers(fake.providers())
            .cache(cache)
            .run()
    };
    run(&memory).await;
    assert_eq!(fake.calls(), 1);

    env.clock.advance(HOUR - Duration::from_secs(1));
    assert!(
        run(&memory).await.cached("ask"),
        "valid for an hour (memory)"
    );
    assert!(
        run(&env.cache_with(&settings)).await.cached("ask"),
        "valid for an hour (SQLite)"
    );
    assert_eq!(fake.calls(), 1);

    env.clock.advance(Duration::from_secs(1));
    let expired = run(&memory).await;
    assert!(
        !expired.cached("ask"),
        "an expired result was used (memory)"
    );
    assert_eq!(fake.calls(), 2);
    // The fresh result replaced the expired one and lives another hour.
    env.clock.advance(HOUR - Duration::from_secs(1));
    let fresh = run(&env.cache_with(&settings)).await;
    assert!(fresh.cached("ask"));
    assert_eq!(fresh.out("ask"), expired.out("ask"));
    env.clock.advance(Duration::from_secs(1));
    assert!(
        !run(&env.cache_with(&settings)).await.cached("ask"),
        "an expired result was used (SQLite)"
    );
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ttl_of_one_second_beats_the_default() {
    let env = Env::new();
    let fake = Fake::start();
    let cache = env.cache(); // default ttl: 7 days
    let yaml = r#"
name: short lived
nodes:
  - id: quick
    type: language_task
    model: {provider: fake, model: small}
    prompt: "Latest price?"
    cache: {ttl: 1s}
  - id: slow
    type: language_task
    model: {provider: fake, model: small}
    prompt: "Capital of Peru?"
"#;
    let run = |cache: &Arc<ResultCache>| {
        Run::new(&env, yaml)
            .providers(fake.providers())
            .cache(cache)
            .run()
    };
    run(&cache).await;
    assert_eq!(fake.calls(), 2);
    let same_second = run(&cache).await;
    assert!(same_second.cached("quick") && same_second.cached("slow"));
    assert_eq!(fake.calls(), 2);

    for cache in [&cache, &env.cache()] {
        env.clock.advance(Duration::from_secs(1));
        let later = run(cache).await;
        assert!(!later.cached("quick"), "a 1 s result outlived its second");
        assert!(later.cached("slow"), "the default TTL is 7 days");
    }
    assert_eq!(fake.calls(), 4);

    env.clock.advance(Duration::from_secs(7 * 24 * 3600));
    let week = run(&env.cache()).await;
    assert!(!week.cached("slow"), "the default TTL of 7 days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_ttl_keeps_results_forever() {
    let env = Env::new();
    let fake = Fake::start();
    let settings = CacheSettings {
        ttl: String::new(),
        ..env.settings()
    };
    let yaml = ask("");
    let run = || {
        Run::new(&env, &yaml)
            .providers(fake.providers())
            .cache(&env.cache_with(&settings))
            .run()
    };
    run().await;
    env.clock.advance(Duration::from_secs(20 * 365 * 24 * 3600));
    assert!(run().await.cached("ask"));
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_and_prune_removes_expired_entries() {
    let env = Env::new();
    let cache = env.cache();
    let put = |key: &'static str, kind: &'static str, ttl: Option<Duration>| {
        let cache = cache.clone();
        async move {
            cache
                .get_or_compute(key, kind, ttl, CacheMode::Use, || async {
                    Ok::<_, String>(json!({"v": key}))
                })
                .await
                .unwrap()
        }
    };
    put("a", "language_task", Some(Duration::from_secs(10))).await;
    put("b", "language_task", None).await; // default: 7 days
    put("c", "function", Some(Duration::from_secs(10))).await;

    let kinds = |rows: Vec<(String, u64, u64, u64)>| {
        rows.into_iter()
            .map(|(kind, n, bytes, expired)| {
                assert!(bytes > 0, "{kind} has no size");
                (kind, n, expired)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(cache.stats().unwrap()),
        vec![("function".into(), 1, 0), ("language_task".into(), 2, 0)]
    );
    assert_eq!(cache.prune().unwrap(), 0, "nothing has expired yet");

    env.clock.advance(Duration::from_secs(10));
    assert_eq!(
        kinds(cache.stats().unwrap()),
        vec![("function".into(), 1, 1), ("language_task".into(), 2, 1)]
    );
    assert_eq!(cache.prune().unwrap(), 2);
    assert_eq!(
        kinds(cache.stats().unwrap()),
        vec![("language_task".into(), 1, 0)]
    );
    assert_eq!(env.entry_count(), 1);
}
