//! The offline `mock` provider: deterministic replies for tests, demos and
//! recipe development. Configured in the model mapping:
//!
//! ```yaml
//! model: {provider: mock, model: echo, reply: "Summary of {{ prompt | truncate(20) }}",
//!         latency_ms: [20, 80], fail_when: "FAIL"}
//! ```
//! - `reply`: a Jinja template over `prompt` and `model`; default: the prompt
//!   itself (for `output_format: json`, `{"echo": <prompt>}`);
//! - `latency_ms`: a number, or `[min, max]` (picked from the prompt's hash,
//!   so a given prompt always waits the same time);
//! - `fail_when`: a call whose prompt contains it fails (retryable);
//! - speech writes a silent WAV, 60 ms per word; transcription returns
//!   `transcript of <file name>`.

use super::*;
use crate::template;
use serde_json::Value;
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Silent audio per spoken word.
const MS_PER_WORD: u64 = 60;

pub struct MockProvider;

fn fingerprint(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn latency(model: &ModelSpec, key: &str) -> Duration {
    let ms = match model.params.get("latency_ms") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::Array(range)) if range.len() == 2 => {
            let lo = range[0].as_u64().unwrap_or(0);
            let hi = range[1].as_u64().unwrap_or(lo).max(lo);
            lo + fingerprint(key) % (hi - lo + 1)
        }
        _ => 0,
    };
    Duration::from_millis(ms)
}

fn check_failure(model: &ModelSpec, text: &str) -> Result<(), ProviderError> {
    if let Some(Value::String(marker)) = model.params.get("fail_when") {
        if !marker.is_empty() && text.contains(marker.as_str()) {
            return Err(ProviderError::new(
                "mock",
                format!("injected failure: input contains `{marker}`"),
                true,
            ));
        }
    }
    Ok(())
}

async fn wait(model: &ModelSpec, key: &str) {
    let d = latency(model, key);
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[async_trait]
impl LanguageProvider for MockProvider {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError> {
        let model = &request.model;
        wait(model, &request.prompt).await;
        check_failure(model, &request.prompt)?;
        let text = match model.params.get("reply") {
            Some(Value::String(reply)) => {
                let ctx = minijinja::context! { prompt => request.prompt.as_str(), model => model.model.as_str() };
                template::render(reply, &ctx).map_err(|e| {
                    ProviderError::new("mock", format!("`reply` template: {e}"), false)
                })?
            }
            Some(other) => other.to_string(),
            None if request.json => serde_json::json!({ "echo": request.prompt }).to_string(),
            None => request.prompt.clone(),
        };
        let usage = Usage {
            input_tokens: estimate_tokens(&request.prompt),
            output_tokens: estimate_tokens(&text),
        };
        Ok(LanguageResponse {
            stats: CallStats {
                calls: 1,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                ..CallStats::default()
            },
            text,
            usage: Some(usage),
            mock: true,
        })
    }
}

/// About four characters per token, as providers' own rules of thumb say.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[async_trait]
impl SpeechProvider for MockProvider {
    async fn speak(&self, request: &SpeechRequest) -> Result<PathBuf, ProviderError> {
        wait(&request.model, &request.text).await;
        check_failure(&request.model, &request.text)?;
        let words = request.text.split_whitespace().count().max(1) as u64;
        let path = request.out_stem.with_extension("wav");
        let write_path = path.clone();
        tokio::task::spawn_blocking(move || wav::write_silence(&write_path, words * MS_PER_WORD))
            .await
            .map_err(|e| io_error(e.to_string()))?
            .map_err(|e| io_error(format!("cannot write `{}`: {e}", path.display())))?;
        Ok(path)
    }
}

fn io_error(message: String) -> ProviderError {
    ProviderError::new("mock", message, false)
}

#[async_trait]
impl TranscriptionProvider for MockProvider {
    async fn transcribe(&self, request: &TranscriptionRequest) -> Result<String, ProviderError> {
        let name = request
            .audio_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        wait(&request.model, &name).await;
        check_failure(&request.model, &name)?;
        Ok(format!("transcript of {name}"))
    }
}
