//! `hitl` nodes (RECIPES.md section 5): scripted replies, interactive
//! humans, required fields, timeouts with and without a default.

use super::{failed_node, Setup};
use async_trait::async_trait;
use composer::nodes::{HumanInput, HumanRequest};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn approval(hitl_extra: &str) -> String {
    format!(
        r#"
name: approval
model_config: {{provider: mock, model: echo}}
nodes:
  - {{id: draft, type: language_task, prompt: "a draft"}}
  - id: approve
    type: hitl
    input: {{draft: draft}}
    required_fields: [approved]
    {hitl_extra}
  - id: after
    type: function_task
    function_identifier: echo
    input: {{ok: approve.approved, note: "{{{{ approve.note | default('none') }}}}"}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_reply_is_the_output() {
    let reply = json!({"approved": true, "note": "ship it"});
    let ran = Setup::new(&approval(""))
        .reply("approve", reply.clone())
        .run()
        .await;
    assert_eq!(ran.out("approve"), &reply);
    assert_eq!(ran.out("after"), &json!({"ok": true, "note": "ship it"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_without_a_required_field_fails_the_node() {
    let ran = Setup::new(&approval(""))
        .reply("approve", json!({"note": "forgot the decision"}))
        .run()
        .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "approve");
    assert!(message.contains("required field"), "{message}");
    assert!(message.contains("`approved`"), "{message}");
    assert!(ran.started("after").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_and_no_human_fails_naming_the_node() {
    let ran = Setup::new(&approval("")).run().await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "approve");
    assert!(message.contains("--reply"), "{message}");
    assert_eq!(ran.finished("draft").len(), 1, "\n{}", ran.describe());
}

/// A human that answers at once and remembers what it was shown.
struct Answers {
    reply: Value,
    asked: Mutex<Vec<HumanRequest>>,
}

#[async_trait]
impl HumanInput for Answers {
    async fn ask(&self, request: HumanRequest) -> Result<Value, String> {
        self.asked.lock().unwrap().push(request);
        Ok(self.reply.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_is_shown_the_inputs_and_answers() {
    let human = Arc::new(Answers {
        reply: json!({"approved": false}),
        asked: Mutex::new(Vec::new()),
    });
    let mut setup = Setup::new(&approval("prompt: \"Approve {{ draft }}?\""));
    setup.services.human = Some(human.clone());
    let ran = setup.run().await;
    assert_eq!(ran.out("approve"), &json!({"approved": false}));
    assert_eq!(ran.out("after"), &json!({"ok": false, "note": "none"}));
    let asked = human.asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].node, "approve");
    assert_eq!(asked[0].prompt.as_deref(), Some("Approve a draft?"));
    assert_eq!(asked[0].shown, json!({"draft": "a draft"}));
    assert_eq!(asked[0].required_fields, ["approved"]);
}

/// A human who never answers.
struct Silent;

#[async_trait]
impl HumanInput for Silent {
    async fn ask(&self, _request: HumanRequest) -> Result<Value, String> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_takes_the_default_or_fails() {
    let mut setup = Setup::new(&approval(
        "timeout: 0.05\n    default: {approved: false, note: timed out}",
    ));
    setup.services.human = Some(Arc::new(Silent));
    let ran = setup.run().await;
    assert_eq!(
        ran.out("approve"),
        &json!({"approved": false, "note": "timed out"})
    );

    let mut setup = Setup::new(&approval("timeout: 0.05"));
    setup.services.human = Some(Arc::new(Silent));
    let ran = setup.run().await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "approve");
    assert!(message.contains("timed out"), "{message}");
}
