//! `[providers]` in composer.toml: endpoints (with presets), client
//! timeouts and pool, retry defaults, rate limits and prices.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenAI chat completions, audio speech and transcriptions (and every
    /// server that speaks them: OpenRouter, Groq, Ollama, vLLM, LM Studio).
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    Google,
    #[serde(rename = "elevenlabs")]
    ElevenLabs,
}

/// Where a provider lives and how it authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub base_url: String,
    /// Environment variable holding the API key ("" for none).
    pub api_key_env: String,
    /// Environment variable that, when set, replaces `base_url`.
    pub base_url_env: String,
    /// Whether the key is required (local servers such as Ollama need none).
    pub key_required: bool,
    pub speech: bool,
    pub transcription: bool,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            protocol: Protocol::OpenAi,
            base_url: String::new(),
            api_key_env: String::new(),
            base_url_env: String::new(),
            key_required: true,
            speech: false,
            transcription: false,
        }
    }
}

fn preset(
    protocol: Protocol,
    base_url: &str,
    key: &str,
    speech: bool,
    transcription: bool,
) -> Endpoint {
    Endpoint {
        protocol,
        base_url: base_url.to_string(),
        api_key_env: key.to_string(),
        base_url_env: String::new(),
        key_required: !key.is_empty(),
        speech,
        transcription,
    }
}

/// The providers composer knows without configuration.
pub fn presets() -> BTreeMap<String, Endpoint> {
    let mut m = BTreeMap::new();
    let mut openai = preset(
        Protocol::OpenAi,
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        true,
        true,
    );
    openai.base_url_env = "OPENAI_BASE_URL".into();
    m.insert("openai".into(), openai);
    m.insert(
        "openrouter".into(),
        preset(
            Protocol::OpenAi,
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            false,
            false,
        ),
    );
    m.insert(
        "groq".into(),
        preset(
            Protocol::OpenAi,
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            false,
            true,
        ),
    );
    let mut ollama = preset(
        Protocol::OpenAi,
        "http://localhost:11434/v1",
        "",
        false,
        false,
    );
    ollama.base_url_env = "OLLAMA_BASE_URL".into();
    m.insert("ollama".into(), ollama);
    m.insert(
        "anthropic".into(),
        preset(
            Protocol::Anthropic,
            "https://api.anthropic.com/v1",
            "ANTHROPIC_API_KEY",
            false,
            false,
        ),
    );
    m.insert(
        "google".into(),
        preset(
            Protocol::Google,
            "https://generativelanguage.googleapis.com/v1beta",
            "GOOGLE_API_KEY",
            false,
            false,
        ),
    );
    m.insert(
        "elevenlabs".into(),
        preset(
            Protocol::ElevenLabs,
            "https://api.elevenlabs.io/v1",
            "ELEVENLABS_API_KEY",
            true,
            false,
        ),
    );
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RateLimit {
    pub calls_per_minute: f64,
    pub tokens_per_minute: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // Only what is configured limits: `calls_per_minute` alone leaves
        // tokens unlimited.
        RateLimit {
            calls_per_minute: 0.0,
            tokens_per_minute: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// The longest `Retry-After` honoured; longer ones fail the call.
    pub max_retry_after_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 60_000,
            max_retry_after_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// Extra or changed endpoints, by provider name (merged over presets).
    pub endpoint: BTreeMap<String, Endpoint>,
    pub connect_timeout_secs: f64,
    /// Per request, unless the model mapping says `timeout`.
    pub request_timeout_secs: f64,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout_secs: f64,
    pub retry: RetrySettings,
    /// Per provider (`openai`), and optionally per model
    /// (`"openai/gpt-4o"`, on top of its provider's), each a bucket holding
    /// a minute's worth. None by default: the limits the provider's reply
    /// headers report are what holds calls back.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Calls in flight per provider before AIMD halves it on 429s.
    pub max_concurrency: usize,
    /// A reply body larger than this is refused without reading the rest
    /// (speech audio is the largest legitimate reply).
    pub max_response_bytes: u64,
    /// USD per million tokens, by `provider/model` (merged over defaults).
    pub prices: BTreeMap<String, super::pricing::Price>,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            endpoint: BTreeMap::new(),
            connect_timeout_secs: 10.0,
            request_timeout_secs: 120.0,
            pool_max_idle_per_host: 32,
            pool_idle_timeout_secs: 90.0,
            retry: RetrySettings::default(),
            rate_limits: BTreeMap::new(),
            max_concurrency: 256,
            max_response_bytes: 64 << 20,
            prices: BTreeMap::new(),
        }
    }
}

impl ProviderSettings {
    /// Presets with the configured endpoints laid over them.
    pub fn endpoints(&self) -> BTreeMap<String, Endpoint> {
        let mut all = presets();
        for (name, e) in &self.endpoint {
            all.insert(name.clone(), e.clone());
        }
        all
    }
}
