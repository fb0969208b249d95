//! Limits learned from the providers' reply headers, against a fake that
//! enforces a real fixed window (N requests per period, 429 and
//! `Retry-After` beyond it) and reports it the way OpenAI or Anthropic do;
//! and the defaults, which do not throttle a provider that sends no limits.

use super::fake::{Fake, Fault, LimitHeaders};
use super::{providers_with, settings};
use composer::config::EngineSettings;
use composer::engine::events::EventKind;
use composer::providers::limiter::COLD_WAVE;
use composer::providers::settings::ProviderSettings;
use composer::providers::CallNote;
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

const WINDOW_LIMIT: u64 = 20;
const WINDOW: Duration = Duration::from_secs(1);

fn map_recipe(provider: &str, model: &str, items: usize) -> String {
    format!(
        r#"
name: windowed
nodes:
  - id: m
    type: map
    over: "{{{{ range({items}) | list }}}}"
    max_concurrency: 50
    task:
      type: language_task
      model: {{provider: {provider}, model: {model}}}
      prompt: "item {{{{ item }}}}"
"#
    )
}

/// 100 calls from a map against a window of 20 a second: all succeed, with
/// at most one 429 and none after the first answer (whose headers set the
/// limiter), in about the windows the limit needs.
async fn hundred_calls_within_a_window(style: LimitHeaders, provider: &str, model: &str) {
    let fake = Fake::start();
    fake.enforce_window(style, WINDOW_LIMIT, WINDOW);
    let ran = super::run(
        providers_with(&settings(&fake)),
        &map_recipe(provider, model, 100),
        json!({}),
    )
    .await;
    assert_eq!(
        ran.out("m").as_array().map(Vec::len),
        Some(100),
        "{}",
        ran.describe()
    );
    let admissions = fake.admissions();
    let rejected: Vec<_> = admissions.iter().filter(|a| !a.accepted).collect();
    assert!(
        rejected.len() <= 1,
        "{} requests got 429: {rejected:?}",
        rejected.len()
    );
    assert!(
        rejected.iter().all(|a| a.answers_before == 0),
        "a 429 after headers were seen: {rejected:?}"
    );
    assert_eq!(admissions.len(), 100 + rejected.len());
    // 100 calls at 20 a window need five windows; the limiter wastes few.
    let last = admissions.iter().map(|a| a.window).max().unwrap_or(0);
    assert!(
        (4..=7).contains(&last),
        "the calls went out over {} windows",
        last + 1
    );
    // Waiting for the window is reported.
    let waits = ran
        .events
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::Provider {
                    note: CallNote::RateLimitWait { .. },
                    ..
                }
            )
        })
        .count();
    assert!(waits >= 50, "only {waits} calls reported a wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_headers_keep_a_map_within_the_window() {
    hundred_calls_within_a_window(LimitHeaders::OpenAi, "openai", "gpt-4o-mini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_headers_keep_a_map_within_the_window() {
    hundred_calls_within_a_window(LimitHeaders::Anthropic, "anthropic", "claude-3-5-haiku").await;
}

/// No headers and no configured limit: nothing but the concurrency cap
/// holds calls back. The first wave (`COLD_WAVE`) goes, and the first
/// answer opens the cap: every other request is sent at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_100_goes_out_at_once_to_a_provider_without_limits() {
    assert!(ProviderSettings::default().rate_limits.is_empty());
    let fake = Fake::start();
    fake.always("gpt-4o-mini", Fault::Hang(Duration::from_millis(400)));
    let mut yaml = String::from("name: fan\nnodes:\n");
    for i in 0..100 {
        writeln!(
            yaml,
            "  - {{id: n{i}, type: language_task, model: {{provider: openai, model: gpt-4o-mini}}, prompt: \"branch {i}\"}}"
        )
        .unwrap();
    }
    yaml.push_str("  - {id: join, type: language_task, model: {provider: mock, model: echo}, prompt: \"joined\"}\nedges:\n");
    for i in 0..100 {
        writeln!(yaml, "  - START to n{i}\n  - n{i} to join").unwrap();
    }
    // Default engine settings too: they run 256 nodes of a recipe at once.
    let engine = EngineSettings::default();
    assert!(engine.max_parallel_nodes >= 100);
    let ran =
        match super::start_with(engine, providers_with(&settings(&fake)), &yaml, json!({})).await {
            Ok(ran) => ran,
            Err(e) => panic!("the run did not start: {}", e.0),
        };
    assert!(ran.outcome.success(), "{}", ran.describe());
    assert_eq!(fake.request_count(), 100);
    assert!(
        fake.max_in_flight() >= 100 - COLD_WAVE,
        "at most {} requests were in flight at once",
        fake.max_in_flight()
    );
    let waits = ran
        .events
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::Provider {
                    note: CallNote::RateLimitWait { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(waits, 0, "calls waited for a rate limit");
}
