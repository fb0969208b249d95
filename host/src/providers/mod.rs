//! Model providers: language, speech and transcription behind one trait
//! each, chosen by the `provider` of a node's model mapping.
//!
//! - `http`: one pooled client per provider (keep-alive, HTTP/2, timeouts);
//! - `openai` (and the OpenAI-compatible presets openrouter, groq, ollama),
//!   `anthropic`, `google`, `elevenlabs`: the protocols;
//! - `policy`: what every real call goes through — the process-wide rate
//!   limiter (`limiter`), retries with full jitter (`retry`), usage and cost
//!   (`pricing`);
//! - `keys`: API keys from the environment and `.env` files, checked before
//!   a run starts;
//! - `mock`: the offline provider.

pub mod anthropic;
pub mod elevenlabs;
pub mod google;
pub mod http;
pub mod keys;
pub mod limiter;
pub mod mock;
pub mod openai;
pub mod policy;
pub mod pricing;
pub mod retry;
pub mod settings;
pub mod wav;

use crate::recipe::model::ModelSpec;
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
#[error("provider `{provider}`: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub message: String,
    /// Worth retrying (429, 5xx, timeouts, dropped connections).
    pub retryable: bool,
    /// The HTTP status, when the provider answered.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// Attempts made before giving up (retries included).
    pub attempts: u32,
}

impl ProviderError {
    pub fn new(provider: &str, message: impl Into<String>, retryable: bool) -> Self {
        ProviderError {
            provider: provider.to_string(),
            message: message.into(),
            retryable,
            status: None,
            retry_after: None,
            attempts: 1,
        }
    }

    /// A 429: the provider is rate limiting us.
    pub fn is_rate_limited(&self) -> bool {
        self.status == Some(429)
    }
}

/// What happened during one provider call, for events and metrics.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallNote {
    /// Waited for the rate limiter before sending.
    RateLimitWait { provider: String, waited_ms: u64 },
    /// An attempt failed and will be retried after `delay_ms`.
    Retry {
        provider: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// The model failed for good; the next fallback model is tried.
    Fallback {
        from: String,
        to: String,
        reason: String,
    },
}

/// Receives the notes of a call (the node turns them into run events).
pub type CallObserver = std::sync::Arc<dyn Fn(CallNote) + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a node's provider calls cost, summed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallStats {
    pub calls: u32,
    pub retries: u32,
    pub rate_limit_wait_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// USD, when the model has a price.
    pub cost_usd: Option<f64>,
}

impl CallStats {
    pub fn add(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.retries += other.retries;
        self.rate_limit_wait_ms += other.rate_limit_wait_ms;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }
}

#[derive(Clone)]
pub struct LanguageRequest {
    pub model: ModelSpec,
    pub prompt: String,
    /// The node wants JSON back (`output_format: json`).
    pub json: bool,
    /// The node's `retry:` settings, laid over the provider's defaults.
    pub retry: Option<crate::recipe::policy::RetryPolicy>,
    pub observer: Option<CallObserver>,
}

#[derive(Debug, Clone)]
pub struct LanguageResponse {
    pub text: String,
    pub usage: Option<Usage>,
    /// Made by the mock provider, not a real model.
    pub mock: bool,
    pub stats: CallStats,
}

#[derive(Clone)]
pub struct SpeechRequest {
    pub model: ModelSpec,
    pub text: String,
    pub voice: Option<String>,
    /// Extra inputs (stability, speed, ...), passed to the provider.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Where to write the audio (without extension; the provider adds one).
    pub out_stem: PathBuf,
    /// The node's `retry:` settings, laid over the provider's defaults.
    pub retry: Option<crate::recipe::policy::RetryPolicy>,
    pub observer: Option<CallObserver>,
}

#[derive(Clone)]
pub struct TranscriptionRequest {
    pub model: ModelSpec,
    pub audio_file: PathBuf,
    pub language: Option<String>,
    pub response_format: Option<String>,
    /// The node's `retry:` settings, laid over the provider's defaults.
    pub retry: Option<crate::recipe::policy::RetryPolicy>,
    pub observer: Option<CallObserver>,
}

#[async_trait]
pub trait LanguageProvider: Send + Sync {
    async fn complete(&self, request: &LanguageRequest) -> Result<LanguageResponse, ProviderError>;
}

#[async_trait]
pub trait SpeechProvider: Send + Sync {
    /// Writes the audio and returns its path.
    async fn speak(&self, request: &SpeechRequest) -> Result<PathBuf, ProviderError>;
}

#[async_trait]
pub trait TranscriptionProvider: Send + Sync {
    async fn transcribe(&self, request: &TranscriptionRequest) -> Result<String, ProviderError>;
}

/// The providers a process knows, by name.
#[derive(Clone, Default)]
pub struct Providers {
    language: HashMap<String, Arc<dyn LanguageProvider>>,
    speech: HashMap<String, Arc<dyn SpeechProvider>>,
    transcription: HashMap<String, Arc<dyn TranscriptionProvider>>,
    /// Providers whose required key is not set, with the variable to set.
    missing_keys: HashMap<String, String>,
    /// The call policy (rate limiter, retries, prices) of each HTTP provider.
    policies: HashMap<String, Arc<policy::CallPolicy>>,
}

impl Providers {
    /// Only the offline mock provider (tests, and runs that need nothing else).
    pub fn builtin() -> Self {
        let mock = Arc::new(mock::MockProvider);
        let mut p = Providers::default();
        p.language.insert("mock".into(), mock.clone());
        p.speech.insert("mock".into(), mock.clone());
        p.transcription.insert("mock".into(), mock);
        p
    }

    /// Every provider this build has, configured by `settings` and `keys`:
    /// one pooled client and one rate limiter per provider, shared by every
    /// run in the process.
    pub fn from_settings(
        settings: &settings::ProviderSettings,
        keys: &keys::Keys,
    ) -> Result<Self, String> {
        let mut p = Providers::builtin();
        for (name, endpoint) in settings.endpoints() {
            let conn = http::Connection::new(&name, &endpoint, settings, keys)?;
            if let Some(var) = conn.missing_key() {
                p.missing_keys.insert(name.clone(), var.to_string());
            }
            p.policies.insert(name.clone(), conn.policy.clone());
            match endpoint.protocol {
                settings::Protocol::OpenAi => {
                    let client = Arc::new(openai::OpenAi::new(conn));
                    p.language.insert(name.clone(), client.clone());
                    if endpoint.speech {
                        p.speech.insert(name.clone(), client.clone());
                    }
                    if endpoint.transcription {
                        p.transcription.insert(name.clone(), client);
                    }
                }
                settings::Protocol::Anthropic => {
                    p.language
                        .insert(name.clone(), Arc::new(anthropic::Anthropic::new(conn)));
                }
                settings::Protocol::Google => {
                    p.language
                        .insert(name.clone(), Arc::new(google::Google::new(conn)));
                }
                settings::Protocol::ElevenLabs => {
                    p.speech
                        .insert(name.clone(), Arc::new(elevenlabs::ElevenLabs::new(conn)));
                }
            }
        }
        Ok(p)
    }

    /// The environment variable a provider needs and lacks, if any.
    pub fn missing_key(&self, provider: &str) -> Option<&str> {
        self.missing_keys.get(provider).map(String::as_str)
    }

    /// The call policy an HTTP provider's calls go through (its limiter's
    /// state, e.g. the AIMD concurrency limit, for metrics and tests).
    pub fn policy(&self, provider: &str) -> Option<Arc<policy::CallPolicy>> {
        self.policies.get(provider).cloned()
    }

    pub fn add_language(&mut self, name: &str, provider: Arc<dyn LanguageProvider>) {
        self.language.insert(name.to_string(), provider);
    }

    pub fn language(&self, name: &str) -> Result<Arc<dyn LanguageProvider>, ProviderError> {
        self.language
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, self.language.keys()))
    }

    pub fn speech(&self, name: &str) -> Result<Arc<dyn SpeechProvider>, ProviderError> {
        self.speech
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, self.speech.keys()))
    }

    pub fn transcription(
        &self,
        name: &str,
    ) -> Result<Arc<dyn TranscriptionProvider>, ProviderError> {
        self.transcription
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, self.transcription.keys()))
    }

    /// Whether `name` serves the given kind of node ("language", "speech",
    /// "transcription").
    pub fn has(&self, kind: &str, name: &str) -> bool {
        match kind {
            "language" => self.language.contains_key(name),
            "speech" => self.speech.contains_key(name),
            _ => self.transcription.contains_key(name),
        }
    }
}

fn unknown<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> ProviderError {
    let mut names: Vec<&str> = known.map(String::as_str).collect();
    names.sort_unstable();
    ProviderError::new(
        name,
        format!(
            "no such provider for this kind of node (available: {}); run offline with `--model mock/echo`",
            names.join(", ")
        ),
        false,
    )
}
