//! What the provider layer refuses, whatever a recipe says: reply bodies
//! beyond `max_response_bytes` (not read to the end), a model `base_url`
//! that would carry a configured key to another host, and endpoints a run
//! is not allowed to call.

use super::fake::{Fake, Fault};
use super::{providers, providers_with, settings, OPENAI_KEY};
use composer::providers::settings::{Endpoint, Protocol};
use composer::providers::{ErrorKind, LanguageRequest, Providers};
use composer::recipe::model::ModelSpec;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

const CHAT: &str = "/v1/chat/completions";
const GIB: u64 = 1 << 30;

fn request(provider: &str, base_url: Option<String>) -> LanguageRequest {
    let mut params = serde_json::Map::new();
    if let Some(b) = base_url {
        params.insert("base_url".into(), json!(b));
    }
    LanguageRequest {
        model: ModelSpec {
            provider: provider.into(),
            model: "gpt-4o-mini".into(),
            params,
        },
        prompt: "hello".into(),
        json: false,
        retry: None,
        observer: None,
    }
}

async fn huge_reply_is_refused(declare_length: bool) {
    let fake = Fake::start();
    fake.script(
        CHAT,
        [Fault::Huge {
            bytes: GIB,
            declare_length,
        }],
    );
    let providers = providers(&fake);
    let e = providers
        .language("openai")
        .unwrap()
        .complete(&request("openai", None))
        .await
        .unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
    assert!(e.message.contains("max_response_bytes"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Provider);
    assert_eq!(e.attempts, 1, "an oversized reply is not retried");
    // Far less than the gigabyte was sent before the client hung up (the
    // cap is 64 MiB; socket buffers hold a few more).
    let sent = fake.streamed_bytes();
    assert!(sent < GIB / 4, "the fake streamed {sent} bytes");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_reply_with_its_length_is_refused_unread() {
    huge_reply_is_refused(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_reply_streamed_without_a_length_is_cut_off() {
    huge_reply_is_refused(false).await;
}

#[tokio::test]
async fn a_base_url_on_another_host_never_gets_the_key() {
    let fake = Fake::start();
    let other = Fake::start();
    let providers = providers(&fake);
    let openai = providers.language("openai").unwrap();
    let stray = request("openai", Some(format!("{}/v1", other.url())));
    let e = openai.complete(&stray).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.message.contains("`base_url`"), "{e}");
    assert!(e.message.contains("OPENAI_API_KEY"), "{e}");
    assert!(e.message.contains("[providers.endpoint.NAME]"), "{e}");
    assert!(!e.message.contains(OPENAI_KEY), "{e}");
    assert_eq!(other.request_count(), 0);
    assert_eq!(fake.request_count(), 0);
    // The same check is there for checks before a run.
    assert!(providers.check_model(&stray.model).is_err());

    // Another path on the configured host is fine, key and all.
    let same = request("openai", Some(format!("{}/v1/", fake.url())));
    assert!(providers.check_model(&same.model).is_ok());
    openai.complete(&same).await.unwrap();
    let sent = fake.only_request();
    assert_eq!(sent.path, CHAT);
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
}

#[tokio::test]
async fn an_endpoint_without_a_key_may_point_anywhere() {
    let fake = Fake::start();
    let other = Fake::start();
    let mut s = settings(&fake);
    s.endpoint.insert(
        "local".into(),
        Endpoint {
            protocol: Protocol::OpenAi,
            base_url: format!("{}/v1", fake.url()),
            api_key_env: String::new(),
            key_required: false,
            ..Endpoint::default()
        },
    );
    let providers = providers_with(&s);
    let elsewhere = request("local", Some(format!("{}/v1", other.url())));
    providers
        .language("local")
        .unwrap()
        .complete(&elsewhere)
        .await
        .unwrap();
    assert_eq!(fake.request_count(), 0);
    assert_eq!(other.only_request().header("authorization"), None);
}

#[tokio::test]
async fn a_recipe_with_a_stray_base_url_is_refused_before_any_call() {
    let fake = Fake::start();
    let other = Fake::start();
    let yaml = format!(
        r#"
name: stray
nodes:
  - id: first
    type: language_task
    model: {{provider: openai, model: gpt-4o-mini}}
    prompt: "fine"
  - id: stray
    type: language_task
    model: {{provider: openai, model: gpt-4o-mini, base_url: "{}/v1"}}
    prompt: "where does the key go?"
"#,
        other.url()
    );
    let outcome = super::start(providers(&fake), &yaml, json!({})).await;
    let message = match outcome {
        Err(e) => e.0.to_string(),
        Ok(ran) => ran.error(),
    };
    assert!(message.contains("`base_url`"), "{message}");
    assert!(message.contains("stray"), "{message}");
    assert_eq!(other.request_count(), 0);
    assert_eq!(
        fake.request_count(),
        0,
        "a call was made before the refusal"
    );
}

#[tokio::test]
async fn a_run_calls_only_its_allowed_endpoints() {
    let fake = Fake::start();
    let all = providers(&fake);
    let allowed: HashSet<String> = ["anthropic".to_string()].into();
    let tenant: Providers = all.restricted(Some(Arc::new(allowed)));
    let e = match tenant.language("openai") {
        Err(e) => e,
        Ok(_) => panic!("openai is not allowed"),
    };
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert_eq!(
        e.to_string(),
        "provider `openai`: endpoint `openai` is not allowed for this tenant"
    );
    assert!(tenant.check_model(&request("openai", None).model).is_err());
    assert!(tenant.speech("openai").is_err());
    // Allowed ones work, and share the process's clients and limiters.
    let mut claude = request("anthropic", None);
    claude.model.model = "claude-3-5-haiku".into();
    tenant
        .language("anthropic")
        .unwrap()
        .complete(&claude)
        .await
        .unwrap();
    assert_eq!(fake.request_count(), 1);
    assert!(Arc::ptr_eq(
        &tenant.policy("anthropic").unwrap(),
        &all.policy("anthropic").unwrap()
    ));
    // The unrestricted view is unchanged.
    assert!(all.language("openai").is_ok());
}
