//! Outbound HTTP for plugins against issue 13, with `perplexity_search`
//! and a local fake of Perplexity's API: an allowed host answers; a host
//! not on the list, loopback through a wildcard and a redirect to a
//! disallowed host are refused before any byte reaches them, with an error
//! naming the host and the setting; a 100 MB response is cut at the cap; a
//! slow server hits the call's deadline; 429 and 500 are retried; secrets
//! reach the plugin only when granted, and missing ones are reported before
//! a run.

use super::fake_perplexity::{FakePerplexity, HUGE_BYTES, KEY};
use super::{dist, plugin_error, Env};
use composer::plugins::catalog::{describe_file, PluginHost, WasmFunction};
use composer::plugins::outbound::{HttpRequestRecord, OutboundProblem};
use composer::plugins::{CallContext, Function, LimitOverrides, PluginError};
use composer::providers::keys::Keys;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub type Records = Arc<Mutex<Vec<HttpRequestRecord>>>;

/// `[plugins.overrides.perplexity_search]` allowing `hosts`, granting the
/// key and pointing the plugin at `base`.
pub fn grants(hosts: &[&str], base: &str) -> LimitOverrides {
    LimitOverrides {
        allowed_hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
        secrets: Some(vec!["PERPLEXITY_API_KEY".into()]),
        env: Some(BTreeMap::from([
            ("PERPLEXITY_BASE_URL".to_string(), base.to_string()),
            ("PERPLEXITY_RETRY_BASE_MS".to_string(), "1".to_string()),
        ])),
        ..LimitOverrides::default()
    }
}

/// The `perplexity_search` function of a host with `grants` and the key.
async fn search(env: &Env, grants: LimitOverrides) -> WasmFunction {
    let mut settings = env.settings(vec![dist()]);
    settings
        .overrides
        .insert("perplexity_search".into(), grants);
    let keys = Keys::fixed([("PERPLEXITY_API_KEY".to_string(), KEY.to_string())]);
    let host = PluginHost::with_secrets(settings, keys);
    let file = dist().join("perplexity_search.wasm");
    let (plugin, functions) = describe_file(&host, &file)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let info = functions
        .into_iter()
        .find(|f| f.name == "perplexity_search")
        .expect("perplexity_search.wasm offers perplexity_search");
    WasmFunction { plugin, info }
}

/// A call context recording the call's HTTP requests.
fn context(env: &Env) -> (CallContext, Records) {
    let (mut ctx, _) = super::call_context(&env.out);
    let records: Records = Arc::default();
    let sink = records.clone();
    ctx.on_http = Some(Arc::new(move |r: HttpRequestRecord| {
        sink.lock().unwrap().push(r)
    }));
    (ctx, records)
}

fn query() -> Value {
    json!({"search_query": "latest news about Rust", "recency": "week", "mode": "fast"})
}

/// The refusal of a call that must have failed with one.
fn refusal(e: PluginError) -> (String, OutboundProblem, String) {
    let text = e.to_string();
    match e {
        PluginError::Outbound {
            plugin,
            url,
            problem,
            ..
        } => {
            assert_eq!(plugin, "perplexity_search");
            (url, problem, text)
        }
        other => panic!("expected a refused request, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calling_an_allowed_fake_host_succeeds() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let f = search(&env, grants(&[&fake.origin()], &fake.base("ok"))).await;
    let (ctx, records) = context(&env);
    let out = f
        .call(query(), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out["content"],
        "FAKE NEWS DIGEST for: latest news about Rust (recency week)"
    );
    assert_eq!(
        out["citations"],
        json!(["https://news.example/one", "https://news.example/two"])
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(seen[0].body["model"], "sonar");
    assert_eq!(seen[0].body["search_recency_filter"], "week");
    let records = records.lock().unwrap().clone();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.status, Some(200));
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        format!("http://127.0.0.1:{}/ok/chat/completions", fake.port())
    );
    assert!(r.request_bytes > 0 && r.response_bytes > 0, "{r:?}");
    assert!(!r.refused && r.error.is_none(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_on_the_list_is_refused_naming_the_host_and_the_setting() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let f = search(
        &env,
        grants(&["https://api.perplexity.ai"], &fake.base("ok")),
    )
    .await;
    let (ctx, records) = context(&env);
    let (url, problem, text) = refusal(plugin_error(f.call(query(), &ctx).await));
    assert!(
        matches!(problem, OutboundProblem::NotAllowed { .. }),
        "{problem:?}"
    );
    assert!(url.contains(&format!("127.0.0.1:{}", fake.port())), "{url}");
    super::assert_mentions(
        &text,
        &[
            "host not allowed",
            &format!("`http://127.0.0.1:{}`", fake.port()),
            "`allowed_hosts`",
            "[plugins.overrides.perplexity_search]",
        ],
    );
    assert!(
        fake.seen().is_empty(),
        "the refused request reached the fake"
    );
    let records = records.lock().unwrap().clone();
    assert_eq!(records.len(), 1, "not retried: {records:?}");
    assert!(records[0].refused && records[0].status.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_at_all_without_a_grant() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let mut g = grants(&[], &fake.base("ok"));
    g.allowed_hosts = None;
    let f = search(&env, g).await;
    let (ctx, _) = context(&env);
    let (_, _, text) = refusal(plugin_error(f.call(query(), &ctx).await));
    super::assert_mentions(&text, &["host not allowed", "which grants no host"]);
    assert!(fake.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_through_a_wildcard_is_refused() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    // Every origin allowed, but none naming the loopback address itself.
    let f = search(&env, grants(&["*://*:*"], &fake.base("ok"))).await;
    let (ctx, _) = context(&env);
    let (_, problem, text) = refusal(plugin_error(f.call(query(), &ctx).await));
    assert!(
        matches!(problem, OutboundProblem::PrivateAddress { .. }),
        "{problem:?}"
    );
    super::assert_mentions(
        &text,
        &[
            "host not allowed",
            "127.0.0.1",
            "loopback or private address",
            "allow_private_addresses",
            "[plugins.overrides.perplexity_search]",
        ],
    );
    assert!(
        fake.seen().is_empty(),
        "the refused request reached the fake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_disallowed_host_is_refused() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let f = search(&env, grants(&[&fake.origin()], &fake.base("redirect"))).await;
    let (ctx, records) = context(&env);
    let (url, problem, text) = refusal(plugin_error(f.call(query(), &ctx).await));
    assert!(
        matches!(problem, OutboundProblem::NotAllowed { .. }),
        "{problem:?}"
    );
    assert!(url.starts_with("http://evil.example:"), "{url}");
    super::assert_mentions(
        &text,
        &["host not allowed", "evil.example", "allowed_hosts"],
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "only the first hop reached the fake");
    let records = records.lock().unwrap().clone();
    let statuses: Vec<Option<u16>> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(307), None], "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_response_is_cut_at_the_cap() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let f = search(&env, grants(&[&fake.origin()], &fake.base("huge"))).await;
    let cap = f.plugin.limits().max_http_response_bytes;
    assert!(cap < HUGE_BYTES);
    let (ctx, records) = context(&env);
    let (_, problem, text) = refusal(plugin_error(f.call(query(), &ctx).await));
    assert_eq!(problem, OutboundProblem::ResponseTooLarge { limit: cap });
    super::assert_mentions(&text, &["cut at the cap", "max_http_response_bytes"]);
    let records = records.lock().unwrap().clone();
    let r = records.last().expect("a record");
    assert!(r.refused);
    assert!(r.response_bytes <= cap, "{} > {cap}", r.response_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_hits_the_call_deadline() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let mut g = grants(&[&fake.origin()], &fake.base("slow"));
    g.timeout_ms = Some(1_500);
    let f = search(&env, g).await;
    let (ctx, _) = context(&env);
    match plugin_error(f.call(query(), &ctx).await) {
        PluginError::Timeout {
            plugin, timeout_ms, ..
        } => {
            assert_eq!(plugin, "perplexity_search");
            assert_eq!(timeout_ms, 1_500);
        }
        other => panic!("expected the call's timeout, got {other:?}"),
    }
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let f = search(&env, grants(&[&fake.origin()], &fake.base("flaky"))).await;
    let (ctx, records) = context(&env);
    let out = f
        .call(query(), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out["content"]
        .as_str()
        .unwrap_or_default()
        .starts_with("FAKE NEWS DIGEST"));
    let statuses: Vec<Option<u16>> = records.lock().unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(429), Some(500), Some(200)]);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_a_plugin_only_when_granted_and_missing_ones_are_named() {
    let env = Env::new();
    let fake = FakePerplexity::start();
    let mut settings = env.settings(vec![dist()]);
    let mut g = grants(&[&fake.origin()], &fake.base("ok"));
    g.secrets = None;
    settings.overrides.insert("perplexity_search".into(), g);
    // The key is set, but not granted: the plugin does not see it.
    let keys = Keys::fixed([("PERPLEXITY_API_KEY".to_string(), KEY.to_string())]);
    let host = PluginHost::with_secrets(settings.clone(), keys);
    let (plugin, functions) = describe_file(&host, &dist().join("perplexity_search.wasm"))
        .await
        .unwrap();
    let f = WasmFunction {
        plugin,
        info: functions[0].clone(),
    };
    let (ctx, _) = context(&env);
    match plugin_error(f.call(query(), &ctx).await) {
        PluginError::Failed { message, .. } => {
            assert!(message.contains("PERPLEXITY_API_KEY"), "{message}");
        }
        other => panic!("expected the plugin's own error, got {other:?}"),
    }
    assert!(fake.seen().is_empty());

    // Granted but not set: named before any call.
    settings.overrides.insert(
        "perplexity_search".into(),
        grants(&[&fake.origin()], &fake.base("ok")),
    );
    let host = PluginHost::with_secrets(settings, Keys::fixed([]));
    let (plugin, functions) = describe_file(&host, &dist().join("perplexity_search.wasm"))
        .await
        .unwrap();
    let f = WasmFunction {
        plugin,
        info: functions[0].clone(),
    };
    assert_eq!(f.missing_secrets(None), vec!["PERPLEXITY_API_KEY"]);
    let e = plugin_error(f.call(query(), &ctx).await);
    assert!(matches!(e, PluginError::MissingSecrets { .. }), "{e:?}");
    super::assert_mentions(&e, &["`PERPLEXITY_API_KEY`", "not set", "secrets"]);
}
