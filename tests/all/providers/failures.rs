//! Failures the fake plays, and what the provider layer makes of them:
//! which are retried, how long it waits, what the run reports (Retry and
//! Fallback events, stats, error text) and how many requests were made.

use super::fake::{Fake, Fault};
use super::{providers, providers_with, run, settings};
use composer::providers::CallNote;
use serde_json::json;
use std::time::{Duration, Instant};

const CHAT: &str = "/v1/chat/completions";

/// One language node `ask` on openai/gpt-4o-mini, with extra model keys
/// and node settings (YAML lines at node level).
fn ask(model_extra: &str, node_extra: &str) -> String {
    format!(
        r#"
name: failures
nodes:
  - id: ask
    type: language_task
    model: {{provider: openai, model: gpt-4o-mini{model_extra}}}
    prompt: hello
{node_extra}
"#
    )
}

#[tokio::test]
async fn two_429s_then_success_retries_twice_honouring_retry_after() {
    let fake = Fake::start();
    fake.script(
        CHAT,
        [
            Fault::rate_limited(Some("1")),
            Fault::rate_limited(Some("0")),
        ],
    );
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");

    let requests = fake.requests_to(CHAT);
    assert_eq!(requests.len(), 3, "two 429s and the success");
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: the retry came {gap:?} after the 429"
    );
    let gap = requests[2].at.duration_since(requests[1].at);
    assert!(
        gap < Duration::from_millis(900),
        "Retry-After: 0 means at once, not backoff: {gap:?}"
    );

    let retries = ran.retries("ask");
    assert_eq!(retries.len(), 2, "{}", ran.describe());
    assert_eq!((retries[0].0, retries[0].1), (1, 1000));
    assert_eq!((retries[1].0, retries[1].1), (2, 0));
    for (_, _, reason) in &retries {
        assert!(
            reason.contains("429") && reason.contains("Rate limit reached"),
            "{reason}"
        );
    }
    let stats = ran.stats("ask");
    assert_eq!((stats.calls, stats.retries), (3, 2));
}

#[tokio::test]
async fn a_400_is_not_retried_and_its_message_is_shown() {
    let fake = Fake::start();
    fake.script(
        CHAT,
        [Fault::with_body(
            400,
            r#"{"error": {"message": "Invalid value for 'temperature': must be at most 2.", "type": "invalid_request_error", "param": "temperature", "code": null}}"#,
        )],
    );
    let ran = run(providers(&fake), &ask(", temperature: 5", ""), json!({})).await;
    let error = ran.error();
    assert!(
        error.contains("node `ask` failed")
            && error.contains("HTTP 400")
            && error.contains("Invalid value for 'temperature': must be at most 2."),
        "{error}"
    );
    assert!(!error.contains("attempts"), "{error}");
    assert_eq!(fake.request_count(), 1);
    assert!(ran.retries("ask").is_empty());
}

#[tokio::test]
async fn an_unauthorized_key_is_not_retried_and_says_so() {
    let fake = Fake::start();
    fake.script(
        "/v1/messages",
        [Fault::with_body(
            401,
            r#"{"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}"#,
        )],
    );
    let ran = run(
        providers(&fake),
        r#"
name: auth
nodes:
  - id: ask
    type: language_task
    model: {provider: anthropic, model: claude-3-5-haiku-latest}
    prompt: hello
"#,
        json!({}),
    )
    .await;
    let error = ran.error();
    assert!(
        error.contains("HTTP 401")
            && error.contains("invalid x-api-key")
            && error.contains("check the API key"),
        "{error}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_hang_longer_than_the_model_timeout_times_out_then_retries() {
    let fake = Fake::start();
    fake.script(CHAT, [Fault::Hang(Duration::from_secs(5))]);
    let start = Instant::now();
    let ran = run(providers(&fake), &ask(", timeout: 0.3", ""), json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the hang was waited out: {:?}",
        start.elapsed()
    );
    let requests = fake.requests_to(CHAT);
    assert_eq!(requests.len(), 2);
    // The client gave up 0.3 s after sending (a little before the fake saw
    // the request), then retried.
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(250), "{gap:?}");
    let retries = ran.retries("ask");
    assert_eq!(retries.len(), 1);
    assert!(retries[0].2.contains("timed out"), "{}", retries[0].2);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let fake = Fake::start();
    fake.script(CHAT, [Fault::Drop]);
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");
    assert_eq!(fake.request_count(), 2);
    let retries = ran.retries("ask");
    assert_eq!(retries.len(), 1);
    assert!(
        retries[0]
            .2
            .contains("connection closed before message completed"),
        "{}",
        retries[0].2
    );
    // The dropped connection is not reused.
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn malformed_json_is_retried() {
    let fake = Fake::start();
    fake.script(CHAT, [Fault::Malformed]);
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");
    assert_eq!(fake.request_count(), 2);
    let retries = ran.retries("ask");
    assert_eq!(retries.len(), 1);
    assert!(retries[0].2.contains("malformed JSON"), "{}", retries[0].2);
}

#[tokio::test]
async fn server_errors_are_retried_until_attempts_run_out() {
    // A 500 and a 503, then an answer: two retries.
    let fake = Fake::start();
    fake.script(CHAT, [Fault::status(500), Fault::status(503)]);
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");
    assert_eq!(ran.stats("ask").retries, 2);

    // 503 every time: the first attempt and max_retries (3) more.
    let fake = Fake::start();
    fake.always(CHAT, Fault::status(503));
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    let error = ran.error();
    assert!(
        error.contains("HTTP 503") && error.contains("after 4 attempts"),
        "{error}"
    );
    assert_eq!(fake.request_count(), 4);
    assert_eq!(ran.retries("ask").len(), 3);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_fails_at_once() {
    let fake = Fake::start();
    fake.always(CHAT, Fault::rate_limited(Some("3600")));
    let start = Instant::now();
    let ran = run(providers(&fake), &ask("", ""), json!({})).await;
    assert!(ran.error().contains("HTTP 429"), "{}", ran.error());
    assert_eq!(fake.request_count(), 1);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn node_retry_settings_are_honoured() {
    let fake = Fake::start();
    fake.always(CHAT, Fault::status(500));
    let ran = run(
        providers(&fake),
        &ask("", "    retry: {max_attempts: 2, base_delay: 10ms}"),
        json!({}),
    )
    .await;
    let error = ran.error();
    assert!(error.contains("after 2 attempts"), "{error}");
    assert_eq!(fake.request_count(), 2);
    let retries = ran.retries("ask");
    assert_eq!(retries.len(), 1);
    assert!(
        retries[0].1 <= 10,
        "base_delay 10ms: waited {}ms",
        retries[0].1
    );

    // One attempt: no retry at all, whatever the provider default.
    let fake = Fake::start();
    fake.always(CHAT, Fault::status(502));
    let mut s = settings(&fake);
    s.retry.max_retries = 5;
    let ran = run(
        providers_with(&s),
        &ask("", "    retry: {max_attempts: 1}"),
        json!({}),
    )
    .await;
    assert!(ran.error().contains("HTTP 502"), "{}", ran.error());
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn failing_models_fall_back_to_the_next_in_order() {
    let fake = Fake::start();
    // gpt-4o fails with 500s until its attempts run out; gpt-4.1-mini's 400
    // is final at once; anthropic answers.
    fake.always("gpt-4o", Fault::status(500));
    fake.always(
        "gpt-4.1-mini",
        Fault::with_body(400, r#"{"error": {"message": "model not available"}}"#),
    );
    let ran = run(
        providers(&fake),
        r#"
name: fallback
nodes:
  - id: ask
    type: language_task
    model: {provider: openai, model: gpt-4o}
    retry: {max_attempts: 2, base_delay: 5ms}
    fallback:
      - {provider: openai, model: gpt-4.1-mini}
      - {provider: anthropic, model: claude-3-5-haiku-latest}
    prompt: hello
"#,
        json!({}),
    )
    .await;
    assert_eq!(ran.out("ask"), "fake answer from claude-3-5-haiku-latest");

    let models: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.model.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        models,
        [
            "gpt-4o",
            "gpt-4o",
            "gpt-4.1-mini",
            "claude-3-5-haiku-latest"
        ]
    );

    let fallbacks: Vec<(String, String, String)> = ran
        .notes("ask")
        .into_iter()
        .filter_map(|n| match n {
            CallNote::Fallback { from, to, reason } => Some((from, to, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(fallbacks.len(), 2, "{}", ran.describe());
    assert_eq!(
        (fallbacks[0].0.as_str(), fallbacks[0].1.as_str()),
        ("openai/gpt-4o", "openai/gpt-4.1-mini")
    );
    assert!(
        fallbacks[0].2.contains("HTTP 500") && fallbacks[0].2.contains("after 2 attempts"),
        "{}",
        fallbacks[0].2
    );
    assert_eq!(
        (fallbacks[1].0.as_str(), fallbacks[1].1.as_str()),
        ("openai/gpt-4.1-mini", "anthropic/claude-3-5-haiku-latest")
    );
    assert!(
        fallbacks[1].2.contains("model not available"),
        "{}",
        fallbacks[1].2
    );
    // The answering model's usage is the node's.
    let stats = ran.stats("ask");
    assert_eq!(stats.input_tokens, super::fake::PROMPT_TOKENS);
}

#[tokio::test]
async fn when_every_model_fails_the_last_error_is_reported() {
    let fake = Fake::start();
    fake.always(CHAT, Fault::status(500));
    fake.always(
        "/v1/messages",
        Fault::with_body(
            529,
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ),
    );
    let ran = run(
        providers(&fake),
        r#"
name: all fail
nodes:
  - id: ask
    type: language_task
    model: {provider: openai, model: gpt-4o}
    retry: {max_attempts: 1}
    fallback: [{provider: anthropic, model: claude-3-5-haiku-latest}]
    prompt: hello
"#,
        json!({}),
    )
    .await;
    let error = ran.error();
    assert!(
        error.contains("anthropic") && error.contains("HTTP 529") && error.contains("Overloaded"),
        "{error}"
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn speech_and_transcription_count_their_real_calls_and_retries() {
    let fake = Fake::start();
    fake.script(
        "/v1/audio/speech",
        [Fault::status(500), Fault::rate_limited(Some("0"))],
    );
    fake.script("/v1/audio/transcriptions", [Fault::status(503)]);
    let dir = super::temp_dir();
    let audio = dir.path().join("clip.mp3");
    std::fs::write(&audio, [1u8; 64]).unwrap();
    let ran = run(
        providers(&fake),
        r#"
name: audio
user_inputs:
  - {id: audio, type: file}
nodes:
  - id: say
    type: text_to_speech_task
    model: {provider: openai, model: tts-1}
    input: {text: "Hello"}
  - id: hear
    type: speech_to_text_task
    model: {provider: openai, model: whisper-1}
    input: {audio_file: audio}
"#,
        json!({"audio": audio.display().to_string()}),
    )
    .await;
    assert_eq!(fake.requests_to("/v1/audio/speech").len(), 3);
    assert_eq!(fake.requests_to("/v1/audio/transcriptions").len(), 2);
    let say = ran.stats("say");
    assert_eq!((say.calls, say.retries), (3, 2), "{}", ran.describe());
    let hear = ran.stats("hear");
    assert_eq!((hear.calls, hear.retries), (2, 1), "{}", ran.describe());
}
