//! Anthropic's messages API (`/messages`, `x-api-key`, the
//! `anthropic-version` header, and the required `max_tokens`).

use super::http::{self, Auth, Connection};
use super::policy::estimate_tokens;
use super::*;
use serde_json::{json, Value};

/// The API version this client speaks.
pub const VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the API; used when the model names none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub struct Anthropic {
    pub conn: Connection,
}

impl Anthropic {
    pub fn new(conn: Connection) -> Anthropic {
        Anthropic { conn }
    }
}

pub fn messages_body(request: &LanguageRequest) -> Value {
    let model = &request.model;
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model.model));
    body.insert(
        "max_tokens".into(),
        json!(model
            .params
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    let mut prompt = request.prompt.clone();
    if request.json {
        // No JSON mode in this API: say it in the prompt.
        prompt.push_str("\n\nAnswer with JSON only.");
    }
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    body.extend(http::sampling(
        model,
        &[("temperature", "temperature"), ("top_p", "top_p")],
    ));
    Value::Object(body)
}

pub fn parse_messages(
    provider: &str,
    reply: &Value,
) -> Result<(String, Option<Usage>), ProviderError> {
    let blocks = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| http::malformed(provider, "message (no content)", reply))?;
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("");
    let usage = reply.get("usage").map(|u| Usage {
        input_tokens: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
    });
    Ok((text, usage))
}

#[async_trait]
impl LanguageProvider for Anthropic {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError> {
        let c = &self.conn;
        let body = messages_body(request);
        let estimate = estimate_tokens(
            &request.prompt,
            body.get("max_tokens").and_then(Value::as_u64),
        );
        c.complete_json(
            request,
            &c.url(&request.model, "/messages")?,
            &body,
            estimate,
            Auth::Header("x-api-key"),
            &[("anthropic-version", VERSION)],
            parse_messages,
        )
        .await
    }
}
