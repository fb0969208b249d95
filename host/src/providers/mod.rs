//! Model providers: language, speech and transcription behind one trait
//! each, chosen by the `provider` of a node's model mapping.
//!
//! - `http`: one pooled client per provider (keep-alive, HTTP/2, timeouts);
//! - `openai` (and the OpenAI-compatible presets openrouter, groq, ollama),
//!   `anthropic`, `google`, `elevenlabs`: the protocols;
//! - `policy`: what every real call goes through — the process-wide rate
//!   limiter (`limiter`: budgets learned from the reply headers, configured
//!   buckets, AIMD), retries with full jitter (`retry`), usage and cost
//!   (`pricing`); reply bodies are size-capped (`http::send`);
//! - `keys`: API keys from the environment and `.env` files, checked before
//!   a run starts; a key goes only to its endpoint's configured host
//!   (`http::KeyScope`), and a run may be restricted to some endpoints
//!   (`Providers::restricted`);
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
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// What kind of failure a `ProviderError` is, for reports and for the
/// hosting core's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The provider said 429.
    RateLimit,
    /// No answer in time.
    Timeout,
    /// The provider failed or refused (HTTP errors, dropped connections,
    /// garbled or oversized replies).
    Provider,
    /// The call was not made: a setting forbids it (an endpoint not
    /// allowed for this run, a `base_url` that would carry a key elsewhere,
    /// a missing key, an unknown provider).
    Refused,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Provider => "provider",
            ErrorKind::Refused => "refused",
        }
    }
}

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
    /// Set where the error is made; `kind()` reads it (a 429 is always a
    /// rate limit).
    pub class: ErrorKind,
    /// The rate-limit headers of the reply, when there was one.
    pub limits: Option<Box<limiter::headers::LimitReport>>,
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
            class: ErrorKind::Provider,
            limits: None,
        }
    }

    /// A call refused before it was made (not retryable).
    pub fn refused(provider: &str, message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorKind::Refused,
            ..ProviderError::new(provider, message, false)
        }
    }

    /// A 429: the provider is rate limiting us.
    pub fn is_rate_limited(&self) -> bool {
        self.status == Some(429)
    }

    pub fn kind(&self) -> ErrorKind {
        if self.is_rate_limited() {
            ErrorKind::RateLimit
        } else {
            self.class
        }
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

/// The providers a process knows, by name, shared by every run; a run may
/// see them through an allow-list (`restricted`).
#[derive(Clone, Default)]
pub struct Providers {
    registry: Arc<Registry>,
    /// The endpoints this run may call (`None`: all).
    allowed: Option<Arc<HashSet<String>>>,
}

#[derive(Clone, Default)]
struct Registry {
    language: HashMap<String, Arc<dyn LanguageProvider>>,
    speech: HashMap<String, Arc<dyn SpeechProvider>>,
    transcription: HashMap<String, Arc<dyn TranscriptionProvider>>,
    /// Providers whose required key is not set, with the variable to set.
    missing_keys: HashMap<String, String>,
    /// The call policy (rate limiter, retries, prices) of each HTTP provider.
    policies: HashMap<String, Arc<policy::CallPolicy>>,
    /// Where each HTTP provider's key may go.
    scopes: HashMap<String, http::KeyScope>,
}

impl Providers {
    /// Only the offline mock provider (tests, and runs that need nothing else).
    pub fn builtin() -> Self {
        let mock = Arc::new(mock::MockProvider);
        let mut r = Registry::default();
        r.language.insert("mock".into(), mock.clone());
        r.speech.insert("mock".into(), mock.clone());
        r.transcription.insert("mock".into(), mock);
        Providers {
            registry: Arc::new(r),
            allowed: None,
        }
    }

    /// Every provider this build has, configured by `settings` and `keys`:
    /// one pooled client and one rate limiter per provider, shared by every
    /// run in the process.
    pub fn from_settings(
        settings: &settings::ProviderSettings,
        keys: &keys::Keys,
    ) -> Result<Self, String> {
        Self::from_settings_with(settings, keys, &policy::local_limiter)
    }

    /// The same, with limiters made by `make` (shared through Redis).
    pub fn from_settings_with(
        settings: &settings::ProviderSettings,
        keys: &keys::Keys,
        make: &policy::MakeLimiter,
    ) -> Result<Self, String> {
        let mut p = Providers::builtin();
        let r = Arc::make_mut(&mut p.registry);
        for (name, endpoint) in settings.endpoints() {
            let conn = http::Connection::new(&name, &endpoint, settings, keys, make)?;
            if let Some(var) = conn.missing_key() {
                r.missing_keys.insert(name.clone(), var.to_string());
            }
            r.policies.insert(name.clone(), conn.policy.clone());
            r.scopes.insert(name.clone(), conn.scope.clone());
            match endpoint.protocol {
                settings::Protocol::OpenAi => {
                    let client = Arc::new(openai::OpenAi::new(conn));
                    r.language.insert(name.clone(), client.clone());
                    if endpoint.speech {
                        r.speech.insert(name.clone(), client.clone());
                    }
                    if endpoint.transcription {
                        r.transcription.insert(name.clone(), client);
                    }
                }
                settings::Protocol::Anthropic => {
                    r.language
                        .insert(name.clone(), Arc::new(anthropic::Anthropic::new(conn)));
                }
                settings::Protocol::Google => {
                    r.language
                        .insert(name.clone(), Arc::new(google::Google::new(conn)));
                }
                settings::Protocol::ElevenLabs => {
                    r.speech
                        .insert(name.clone(), Arc::new(elevenlabs::ElevenLabs::new(conn)));
                }
            }
        }
        Ok(p)
    }

    /// The same providers (clients, limiters and all), of which a run may
    /// call only the endpoints in `allowed` (`None`: all). For hosting: each
    /// tenant's run gets its own view; a call to another endpoint fails
    /// before anything is sent, with a `Refused` error.
    pub fn restricted(&self, allowed: Option<Arc<HashSet<String>>>) -> Providers {
        Providers {
            registry: self.registry.clone(),
            allowed,
        }
    }

    fn check_allowed(&self, name: &str) -> Result<(), ProviderError> {
        match &self.allowed {
            Some(allowed) if !allowed.contains(name) => Err(ProviderError::refused(
                name,
                format!("endpoint `{name}` is not allowed for this tenant"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a call with this model mapping would be refused before it is
    /// sent (an endpoint not allowed, a `base_url` that would carry the key
    /// elsewhere): for checks before a run starts.
    pub fn check_model(&self, model: &ModelSpec) -> Result<(), ProviderError> {
        self.check_allowed(&model.provider)?;
        match self.registry.scopes.get(&model.provider) {
            Some(scope) => scope.base_for(model).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The environment variable a provider needs and lacks, if any.
    pub fn missing_key(&self, provider: &str) -> Option<&str> {
        self.registry.missing_keys.get(provider).map(String::as_str)
    }

    /// The call policy an HTTP provider's calls go through (its limiter's
    /// state, e.g. the AIMD concurrency limit, for metrics and tests).
    pub fn policy(&self, provider: &str) -> Option<Arc<policy::CallPolicy>> {
        self.registry.policies.get(provider).cloned()
    }

    pub fn add_language(&mut self, name: &str, provider: Arc<dyn LanguageProvider>) {
        Arc::make_mut(&mut self.registry)
            .language
            .insert(name.to_string(), provider);
    }

    pub fn language(&self, name: &str) -> Result<Arc<dyn LanguageProvider>, ProviderError> {
        self.check_allowed(name)?;
        let r = &self.registry;
        r.language
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, r.language.keys()))
    }

    pub fn speech(&self, name: &str) -> Result<Arc<dyn SpeechProvider>, ProviderError> {
        self.check_allowed(name)?;
        let r = &self.registry;
        r.speech
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, r.speech.keys()))
    }

    pub fn transcription(
        &self,
        name: &str,
    ) -> Result<Arc<dyn TranscriptionProvider>, ProviderError> {
        self.check_allowed(name)?;
        let r = &self.registry;
        r.transcription
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, r.transcription.keys()))
    }

    /// Whether `name` serves the given kind of node ("language", "speech",
    /// "transcription").
    pub fn has(&self, kind: &str, name: &str) -> bool {
        let r = &self.registry;
        match kind {
            "language" => r.language.contains_key(name),
            "speech" => r.speech.contains_key(name),
            _ => r.transcription.contains_key(name),
        }
    }
}

fn unknown<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> ProviderError {
    let mut names: Vec<&str> = known.map(String::as_str).collect();
    names.sort_unstable();
    ProviderError::refused(
        name,
        format!(
            "no such provider for this kind of node (available: {}); run offline with `--model mock/echo`",
            names.join(", ")
        ),
    )
}
