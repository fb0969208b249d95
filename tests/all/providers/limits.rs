//! Connection pooling, the AIMD concurrency cap and the configured rate
//! limits, as seen through the provider layer: the fake counts connections and calls
//! in flight; the rate limiter runs on tokio's paused clock (no sockets).

use super::fake::{Fake, Fault};
use super::{providers_with, settings};
use composer::providers::limiter::Cost;
use composer::providers::policy::{Answer, CallPolicy};
use composer::providers::settings::{ProviderSettings, RateLimit, RetrySettings};
use composer::providers::{CallNote, CallObserver, LanguageRequest, ProviderError};
use composer::recipe::model::ModelSpec;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHAT: &str = "/v1/chat/completions";

fn request(retry: Option<composer::recipe::policy::RetryPolicy>) -> LanguageRequest {
    LanguageRequest {
        model: ModelSpec {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            params: serde_json::Map::new(),
        },
        prompt: "hello".into(),
        json: false,
        retry,
        observer: None,
    }
}

#[tokio::test]
async fn sequential_calls_share_a_handful_of_connections() {
    let fake = Fake::start();
    let providers = providers_with(&settings(&fake));
    let openai = providers.language("openai").unwrap();
    let request = request(None);
    for _ in 0..200 {
        let answer = openai.complete(&request).await.unwrap();
        assert_eq!(answer.text, "fake answer from gpt-4o-mini");
    }
    assert_eq!(fake.request_count(), 200);
    assert!(
        fake.connections() <= 4,
        "200 sequential calls opened {} connections",
        fake.connections()
    );
    assert_eq!(fake.peers(), fake.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aimd_halves_the_concurrency_on_429s_and_recovers() {
    let fake = Fake::start();
    let mut s = settings(&fake);
    s.max_concurrency = 16;
    let providers = Arc::new(providers_with(&s));
    let policy = providers.policy("openai").expect("openai has a policy");
    let limit = || policy.limiter.concurrency_limit();
    assert_eq!(limit(), 16);

    // Three 429s, each a call of one attempt: 16 → 8 → 4 → 2.
    fake.script(CHAT, (0..3).map(|_| Fault::rate_limited(Some("0"))));
    let openai = providers.language("openai").unwrap();
    let once = request(Some(composer::recipe::policy::RetryPolicy {
        max_attempts: Some(1),
        ..Default::default()
    }));
    for expected in [8, 4, 2] {
        let e = openai.complete(&once).await.unwrap_err();
        assert_eq!(e.status, Some(429), "{e}");
        assert_eq!(limit(), expected);
    }

    // With the cap at 2, six calls at once (each held 150 ms by the fake)
    // go two at a time first; each success lets one more in.
    fake.script(
        CHAT,
        (0..6).map(|_| Fault::Hang(Duration::from_millis(150))),
    );
    let calls = (0..6).map(|_| {
        let openai = openai.clone();
        tokio::spawn(async move { openai.complete(&request(None)).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let mut arrivals: Vec<_> = fake.requests().iter().skip(3).map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 6);
    assert!(
        arrivals[2].duration_since(arrivals[0]) >= Duration::from_millis(140),
        "a third call went out while two were in flight: {:?}",
        arrivals[2].duration_since(arrivals[0])
    );
    assert!(fake.max_in_flight() <= 4, "{}", fake.max_in_flight());
    assert_eq!(limit(), 8, "two plus one per success");

    // Successes bring it back up to the configured maximum, and no further.
    for _ in 0..20 {
        openai.complete(&request(None)).await.unwrap();
    }
    assert_eq!(limit(), 16);
}

#[tokio::test]
async fn retries_within_one_call_keep_halving() {
    let fake = Fake::start();
    let mut s = settings(&fake);
    s.max_concurrency = 32;
    let providers = providers_with(&s);
    fake.script(CHAT, (0..3).map(|_| Fault::rate_limited(None)));
    let answer = providers
        .language("openai")
        .unwrap()
        .complete(&request(None))
        .await
        .unwrap();
    assert_eq!(answer.stats.retries, 3);
    // 32 → 16 → 8 → 4, then one success: 5.
    let policy = providers.policy("openai").unwrap();
    assert_eq!(policy.limiter.concurrency_limit(), 5);
}

/// Records every note of a call.
fn observer() -> (CallObserver, Arc<Mutex<Vec<CallNote>>>) {
    let notes = Arc::new(Mutex::new(Vec::new()));
    let sink = notes.clone();
    let observer: CallObserver = Arc::new(move |n| sink.lock().unwrap().push(n));
    (observer, notes)
}

/// A configured limit is a bucket holding a minute's worth: 60 calls a
/// minute let a burst of 60 through at once; the 61st waits (a second, the
/// refill of one call), and so does every later one.
#[tokio::test(start_paused = true)]
async fn sixty_calls_a_minute_let_a_burst_of_sixty_through_and_the_61st_waits() {
    let settings = ProviderSettings {
        rate_limits: BTreeMap::from([(
            "openai".to_string(),
            RateLimit {
                calls_per_minute: 60.0,
                tokens_per_minute: 0.0,
            },
        )]),
        ..ProviderSettings::default()
    };
    let policy = CallPolicy::new("openai", &settings).unwrap();
    let (observer, notes) = observer();
    let start = tokio::time::Instant::now();
    // All at once: the limiter, not the caller, holds them back.
    let calls = (0..62).map(|_| {
        policy.execute(
            "gpt-4o-mini",
            Cost::tokens(10),
            None,
            Some(&observer),
            || async { Ok::<_, ProviderError>(Answer::new(tokio::time::Instant::now(), None)) },
        )
    });
    let results = futures::future::join_all(calls).await;
    let mut sent: Vec<Duration> = Vec::new();
    for r in results {
        let (at, stats) = r.unwrap();
        assert_eq!((stats.calls, stats.retries), (1, 0));
        sent.push(at.duration_since(start));
    }
    sent.sort();
    assert!(sent[..60].iter().all(|d| d.is_zero()), "{sent:?}");
    assert_eq!(sent[60], Duration::from_secs(1));
    assert_eq!(sent[61], Duration::from_secs(2));
    let waits: Vec<u64> = notes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            CallNote::RateLimitWait { waited_ms, .. } => Some(*waited_ms),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 2, "only the 61st and 62nd waited: {waits:?}");
}

#[tokio::test(start_paused = true)]
async fn backoff_is_bounded_and_on_tokios_clock() {
    let settings = ProviderSettings {
        rate_limits: BTreeMap::new(),
        retry: RetrySettings {
            max_retries: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 60_000,
            max_retry_after_ms: 120_000,
        },
        ..ProviderSettings::default()
    };
    let policy = CallPolicy::new("openai", &settings).unwrap();
    let (observer, notes) = observer();
    let start = tokio::time::Instant::now();
    let mut failures = 3;
    let (_, stats) = policy
        .execute(
            "gpt-4o-mini",
            Cost::tokens(10),
            None,
            Some(&observer),
            || {
                let fail = failures > 0;
                failures -= 1;
                async move {
                    if fail {
                        Err(ProviderError::new("openai", "HTTP 503: busy", true))
                    } else {
                        Ok(Answer::new((), None))
                    }
                }
            },
        )
        .await
        .unwrap();
    assert_eq!((stats.calls, stats.retries), (4, 3));
    // Full jitter: at most 1 + 2 + 4 seconds in all.
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(7), "{took:?}");
    let delays: Vec<u64> = notes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            CallNote::Retry { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 3);
    for (i, d) in delays.iter().enumerate() {
        assert!(*d <= 1000 << i, "retry {i} waited {d}ms");
    }
}

/// `max_concurrency: auto` is sized by the calls the provider allows in
/// flight: with a cap of 3, no more than 3 items start before one ends
/// (the others do not even start to wait inside the limiter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_map_is_sized_by_the_provider_calls_in_flight() {
    let fake = Fake::start();
    fake.always("gpt-4o-mini", Fault::Hang(Duration::from_millis(80)));
    let mut s = settings(&fake);
    s.max_concurrency = 3;
    let yaml = r#"
name: auto
nodes:
  - id: m
    type: map
    over: "{{ range(9) | list }}"
    task:
      type: language_task
      model: {provider: openai, model: gpt-4o-mini}
      prompt: "item {{ item }}"
"#;
    let ran = super::run(providers_with(&s), yaml, json!({})).await;
    assert!(ran.outcome.success(), "{:?}", ran.outcome.error);
    let starts: Vec<Duration> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            composer::engine::events::EventKind::MapItem { started, .. } => Some(*started),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 9);
    let first = starts.iter().min().copied().unwrap_or_default();
    let early = starts
        .iter()
        .filter(|s| s.saturating_sub(first) < Duration::from_millis(40))
        .count();
    assert_eq!(early, 3, "items started together: {starts:?}");
    assert!(fake.max_in_flight() <= 3);
}
