//! Google's Gemini API (`/models/{model}:generateContent`, key in the
//! `x-goog-api-key` header).

use super::http::{self, Auth, Connection};
use super::policy::estimate_tokens;
use super::*;
use serde_json::{json, Value};

pub struct Google {
    pub conn: Connection,
}

impl Google {
    pub fn new(conn: Connection) -> Google {
        Google { conn }
    }
}

pub fn generate_body(request: &LanguageRequest) -> Value {
    let model = &request.model;
    let mut config = http::sampling(
        model,
        &[
            ("temperature", "temperature"),
            ("max_tokens", "maxOutputTokens"),
            ("top_p", "topP"),
        ],
    );
    // `params:` goes to the top level of the request, not into the config.
    config.retain(|k, _| ["temperature", "maxOutputTokens", "topP"].contains(&k.as_str()));
    if request.json {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    let mut body = serde_json::Map::new();
    body.insert(
        "contents".into(),
        json!([{"role": "user", "parts": [{"text": request.prompt}]}]),
    );
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(Value::Object(extra)) = model.params.get("params") {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    Value::Object(body)
}

pub fn parse_generate(
    provider: &str,
    reply: &Value,
) -> Result<(String, Option<Usage>), ProviderError> {
    let parts = reply
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            let reason = reply
                .pointer("/promptFeedback/blockReason")
                .or_else(|| reply.pointer("/candidates/0/finishReason"))
                .and_then(Value::as_str);
            match reason {
                Some(r) => ProviderError::new(provider, format!("no answer (reason: {r})"), false),
                None => http::malformed(provider, "reply (no candidates[0].content.parts)", reply),
            }
        })?;
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("");
    let usage = reply.get("usageMetadata").map(|u| Usage {
        input_tokens: u
            .get("promptTokenCount")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output_tokens: u
            .get("candidatesTokenCount")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok((text, usage))
}

#[async_trait]
impl LanguageProvider for Google {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError> {
        let c = &self.conn;
        let max_tokens = request
            .model
            .params
            .get("max_tokens")
            .and_then(Value::as_u64);
        c.complete_json(
            request,
            &c.url(
                &request.model,
                &format!("/models/{}:generateContent", request.model.model),
            )?,
            &generate_body(request),
            estimate_tokens(&request.prompt, max_tokens),
            Auth::Header("x-goog-api-key"),
            &[],
            parse_generate,
        )
        .await
    }
}
