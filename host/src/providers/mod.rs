//! Model providers: language, speech and transcription behind one trait
//! each, chosen by the `provider` of a node's model mapping. Only the
//! offline `mock` provider exists so far; real HTTP protocols, retries and
//! rate limits come with the providers issue and slot in behind these traits.

pub mod mock;
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
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct LanguageRequest {
    pub model: ModelSpec,
    pub prompt: String,
    /// The node wants JSON back (`output_format: json`).
    pub json: bool,
}

#[derive(Debug, Clone)]
pub struct LanguageResponse {
    pub text: String,
    pub usage: Option<Usage>,
    /// Made by the mock provider, not a real model.
    pub mock: bool,
}

#[derive(Debug, Clone)]
pub struct SpeechRequest {
    pub model: ModelSpec,
    pub text: String,
    pub voice: Option<String>,
    /// Extra inputs (stability, speed, ...), passed to the provider.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Where to write the audio (without extension; the provider adds one).
    pub out_stem: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TranscriptionRequest {
    pub model: ModelSpec,
    pub audio_file: PathBuf,
    pub language: Option<String>,
    pub response_format: Option<String>,
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
}

impl Providers {
    /// Every provider this build has.
    pub fn builtin() -> Self {
        let mock = Arc::new(mock::MockProvider);
        let mut p = Providers::default();
        p.language.insert("mock".into(), mock.clone());
        p.speech.insert("mock".into(), mock.clone());
        p.transcription.insert("mock".into(), mock);
        p
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
    ProviderError {
        provider: name.to_string(),
        message: format!(
            "no such provider in this build (available: {}); run offline with `--model mock/echo`",
            names.join(", ")
        ),
        retryable: false,
    }
}
