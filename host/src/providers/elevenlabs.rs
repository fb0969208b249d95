//! ElevenLabs text to speech (`/text-to-speech/{voice_id}`, `xi-api-key`),
//! with the node's `stability`, `similarity_boost`, `style` and
//! `use_speaker_boost` as voice settings.

use super::http::{self, Auth, Connection};
use super::openai::{audio_extension, write_audio};
use super::policy::Answer;
use super::*;
use serde_json::{json, Value};

pub struct ElevenLabs {
    pub conn: Connection,
}

impl ElevenLabs {
    pub fn new(conn: Connection) -> ElevenLabs {
        ElevenLabs { conn }
    }
}

const VOICE_SETTINGS: [&str; 5] = [
    "stability",
    "similarity_boost",
    "style",
    "use_speaker_boost",
    "speed",
];

pub fn speech_body(request: &SpeechRequest) -> Value {
    let mut voice_settings = serde_json::Map::new();
    let mut body = serde_json::Map::new();
    body.insert("text".into(), json!(request.text));
    body.insert("model_id".into(), json!(request.model.model));
    for (k, v) in &request.params {
        if VOICE_SETTINGS.contains(&k.as_str()) {
            voice_settings.insert(k.clone(), v.clone());
        } else if k != "output_format" {
            body.insert(k.clone(), v.clone());
        }
    }
    if !voice_settings.is_empty() {
        body.insert("voice_settings".into(), Value::Object(voice_settings));
    }
    body.extend(http::sampling(&request.model, &[]));
    Value::Object(body)
}

#[async_trait]
impl SpeechProvider for ElevenLabs {
    async fn speak(&self, request: &SpeechRequest) -> Result<PathBuf, ProviderError> {
        let c = &self.conn;
        let voice = request.voice.clone().ok_or_else(|| {
            ProviderError::new(
                &c.name,
                "text_to_speech_task needs `input.voice` (an ElevenLabs voice id)",
                false,
            )
        })?;
        let format = request
            .params
            .get("output_format")
            .and_then(Value::as_str)
            .unwrap_or("mp3_44100_128")
            .to_string();
        let url = c.url(&request.model, &format!("/text-to-speech/{voice}"))?;
        let body = speech_body(request);
        let estimate = super::limiter::Cost::tokens((request.text.len() as u64).div_ceil(4));
        let (path, _) = c
            .policy
            .execute(
                &request.model.model,
                estimate,
                request.retry.as_ref(),
                request.observer.as_ref(),
                || async {
                    let r = c
                        .client
                        .post(&url)
                        .query(&[("output_format", format.as_str())])
                        .timeout(c.timeout(&request.model))
                        .json(&body);
                    let r = c.authorize(r, Auth::Header("xi-api-key"))?;
                    let reply = c.send(r).await?;
                    let ext = if format.starts_with("pcm") {
                        "pcm"
                    } else {
                        audio_extension(format.split('_').next(), &reply.content_type)
                    };
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
