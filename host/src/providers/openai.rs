//! OpenAI's protocol: chat completions (`/chat/completions`, JSON mode for
//! `output_format: json`), speech (`/audio/speech`) and transcription
//! (`/audio/transcriptions`, multipart). OpenRouter, Groq, Ollama, vLLM and
//! LM Studio speak it too (presets in `settings`).

use super::http::{self, Auth, Connection};
use super::policy::{estimate_tokens, Answer};
use super::*;
use serde_json::{json, Value};

pub struct OpenAi {
    pub conn: Connection,
}

impl OpenAi {
    pub fn new(conn: Connection) -> OpenAi {
        OpenAi { conn }
    }
}

/// The chat completions request body.
pub fn chat_body(request: &LanguageRequest) -> Value {
    let model = &request.model;
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model.model));
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": request.prompt}]),
    );
    if request.json {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    body.extend(http::sampling(
        model,
        &[
            ("temperature", "temperature"),
            ("max_tokens", "max_tokens"),
            ("top_p", "top_p"),
        ],
    ));
    Value::Object(body)
}

/// Reads a chat completions reply.
pub fn parse_chat(provider: &str, reply: &Value) -> Result<(String, Option<Usage>), ProviderError> {
    let text = reply
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            http::malformed(
                provider,
                "chat completion (no choices[0].message.content)",
                reply,
            )
        })?;
    let usage = reply.get("usage").map(|u| Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok((text.to_string(), usage))
}

#[async_trait]
impl LanguageProvider for OpenAi {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError> {
        let c = &self.conn;
        let max_tokens = request
            .model
            .params
            .get("max_tokens")
            .and_then(Value::as_u64);
        c.complete_json(
            request,
            &c.url(&request.model, "/chat/completions")?,
            &chat_body(request),
            estimate_tokens(&request.prompt, max_tokens),
            Auth::Bearer,
            &[],
            parse_chat,
        )
        .await
    }
}

/// The audio file extension for a `response_format` or content type.
pub fn audio_extension(format: Option<&str>, content_type: &str) -> &'static str {
    match format.unwrap_or_default() {
        "wav" => return "wav",
        "opus" => return "opus",
        "aac" => return "aac",
        "flac" => return "flac",
        "pcm" => return "pcm",
        "mp3" => return "mp3",
        _ => {}
    }
    match content_type {
        t if t.contains("wav") => "wav",
        t if t.contains("ogg") || t.contains("opus") => "opus",
        t if t.contains("flac") => "flac",
        t if t.contains("aac") => "aac",
        _ => "mp3",
    }
}

/// Writes audio bytes next to `stem` with the right extension.
pub async fn write_audio(
    provider: &str,
    stem: &std::path::Path,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, ProviderError> {
    let path = stem.with_extension(ext);
    tokio::fs::write(&path, bytes).await.map_err(|e| {
        ProviderError::new(
            provider,
            format!("cannot write `{}`: {e}", path.display()),
            false,
        )
    })?;
    Ok(path)
}

#[async_trait]
impl SpeechProvider for OpenAi {
    async fn speak(&self, request: &SpeechRequest) -> Result<PathBuf, ProviderError> {
        let c = &self.conn;
        let url = c.url(&request.model, "/audio/speech")?;
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(request.model.model));
        body.insert("input".into(), json!(request.text));
        body.insert(
            "voice".into(),
            json!(request.voice.as_deref().unwrap_or("alloy")),
        );
        for (k, v) in &request.params {
            body.insert(k.clone(), v.clone());
        }
        body.extend(http::sampling(&request.model, &[]));
        let format = body
            .get("response_format")
            .and_then(Value::as_str)
            .map(str::to_string);
        let estimate = super::limiter::Cost::tokens((request.text.len() as u64).div_ceil(4));
        let (path, _) = c
            .policy
            .execute(
                &request.model.model,
                estimate,
                request.retry.as_ref(),
                request.observer.as_ref(),
                || async {
                    let http_request = c.authorize(
                        c.client
                            .post(&url)
                            .timeout(c.timeout(&request.model))
                            .json(&body),
                        Auth::Bearer,
                    )?;
                    let reply = c.send(http_request).await?;
                    let ext = audio_extension(format.as_deref(), &reply.content_type);
                    let path = write_audio(&c.name, &request.out_stem, ext, &reply.bytes).await?;
                    Ok(Answer {
                        value: path,
                        usage: None,
                        limits: Some(reply.limits),
                    })
                },
            )
            .await?;
        Ok(path)
    }
}

#[async_trait]
impl TranscriptionProvider for OpenAi {
    async fn transcribe(&self, request: &TranscriptionRequest) -> Result<String, ProviderError> {
        let c = &self.conn;
        let url = c.url(&request.model, "/audio/transcriptions")?;
        let audio = tokio::fs::read(&request.audio_file).await.map_err(|e| {
            ProviderError::new(
                &c.name,
                format!("cannot read `{}`: {e}", request.audio_file.display()),
                false,
            )
        })?;
        let file_name = request
            .audio_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audio".into());
        let estimate = super::limiter::Cost::tokens((audio.len() as u64 / 4000).max(1));
        let (text, _) = c
            .policy
            .execute(
                &request.model.model,
                estimate,
                request.retry.as_ref(),
                request.observer.as_ref(),
                || async {
                    let mut form = reqwest::multipart::Form::new()
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(audio.clone())
                                .file_name(file_name.clone()),
                        )
                        .text("model", request.model.model.clone());
                    if let Some(language) = &request.language {
                        form = form.text("language", language.clone());
                    }
                    if let Some(format) = &request.response_format {
                        form = form.text("response_format", format.clone());
                    }
                    let http_request = c.authorize(
                        c.client
                            .post(&url)
                            .timeout(c.timeout(&request.model))
                            .multipart(form),
                        Auth::Bearer,
                    )?;
                    let reply = c.send(http_request).await?;
                    // `json` and `verbose_json` answer {"text": ...}; `text`,
                    // `srt` and `vtt` answer the text itself.
                    let text = if reply.content_type.contains("json") {
                        let v: Value = reply.json(&c.name)?;
                        v.get("text")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                http::malformed(&c.name, "transcription (no `text`)", &v)
                            })?
                    } else {
                        String::from_utf8_lossy(&reply.bytes).into_owned()
                    };
                    Ok(Answer {
                        value: text,
                        usage: None,
                        limits: Some(reply.limits),
                    })
                },
            )
            .await?;
        Ok(text)
    }
}
