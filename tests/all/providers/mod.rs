//! The provider layer against `fake`, a local server speaking the
//! providers' real HTTP protocols (OpenAI, Anthropic, Gemini, ElevenLabs),
//! their failures included. Nothing here reaches the internet: every
//! endpoint is pointed at 127.0.0.1 through `ProviderSettings.endpoint` or a
//! model mapping's `base_url`, with keys from `Keys::fixed` (or a `.env`
//! file for the binary).
//!
//! - `protocols`: request path, headers and body per protocol, reply
//!   parsing, usage and cost, speech files, multipart transcription;
//! - `failures`: retry sequences (429 with `Retry-After`, 400, hangs,
//!   dropped connections, malformed JSON, 5xx until attempts run out), node
//!   `retry:` settings and `fallback` models;
//! - `preflight`: missing keys are named before any request, through
//!   `run_recipe` and `composer run`;
//! - `limits`: connection pooling, AIMD and the rate limiter through the
//!   call policy;
//! - `learned`: limits learned from the providers' headers against a fake
//!   that enforces a real window, the cold first wave, defaults that do not
//!   throttle;
//! - `guards`: reply size cap, keys kept to their host, the per-run
//!   endpoint allow-list.

pub mod fake;

mod failures;
mod guards;
mod learned;
mod limits;
mod preflight;
mod protocols;

use composer::config::EngineSettings;
use composer::engine::events::{CollectEvents, Event, EventKind};
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, NotStarted, RunOutcome, RunRequest};
use composer::providers::keys::Keys;
use composer::providers::settings::{presets, ProviderSettings, RetrySettings};
use composer::providers::{CallNote, CallStats, Providers};
use composer::recipe::model::Recipe;
use fake::Fake;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The keys `keys()` holds.
pub const OPENAI_KEY: &str = "sk-test-openai";
pub const ANTHROPIC_KEY: &str = "sk-ant-test";
pub const GOOGLE_KEY: &str = "goog-test";
pub const ELEVENLABS_KEY: &str = "xi-test";
pub const GROQ_KEY: &str = "gsk-test";

/// Every provider key, fixed (the environment is not read).
pub fn keys() -> Keys {
    Keys::fixed(
        [
            ("OPENAI_API_KEY", OPENAI_KEY),
            ("ANTHROPIC_API_KEY", ANTHROPIC_KEY),
            ("GOOGLE_API_KEY", GOOGLE_KEY),
            ("ELEVENLABS_API_KEY", ELEVENLABS_KEY),
            ("GROQ_API_KEY", GROQ_KEY),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// Settings with openai, anthropic, google and elevenlabs pointed at the
/// fake, no rate limits and fast retries (3 retries, 5-20 ms backoff).
pub fn settings(fake: &Fake) -> ProviderSettings {
    let mut s = ProviderSettings {
        request_timeout_secs: 10.0,
        connect_timeout_secs: 2.0,
        retry: RetrySettings {
            max_retries: 3,
            base_delay_ms: 5,
            max_delay_ms: 20,
            max_retry_after_ms: 5_000,
        },
        rate_limits: BTreeMap::new(),
        ..ProviderSettings::default()
    };
    let all = presets();
    for (name, base) in [
        ("openai", "/v1"),
        ("anthropic", "/v1"),
        ("google", "/v1beta"),
        ("elevenlabs", "/v1"),
    ] {
        let mut endpoint = all[name].clone();
        endpoint.base_url = format!("{}{base}", fake.url());
        s.endpoint.insert(name.to_string(), endpoint);
    }
    s
}

/// `Providers` for `settings` and `keys()`.
pub fn providers_with(settings: &ProviderSettings) -> Providers {
    Providers::from_settings(settings, &keys()).expect("providers")
}

pub fn providers(fake: &Fake) -> Providers {
    providers_with(&settings(fake))
}

/// Loads an inline YAML recipe (relative paths start at `dir`).
pub fn load(yaml: &str, dir: &Path) -> Arc<Recipe> {
    crate::support::load_yaml(yaml, dir)
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("composer-providers-test-")
        .tempdir()
        .expect("cannot create a temporary folder")
}

/// A finished run, its events and its folder.
pub struct Ran {
    pub outcome: RunOutcome,
    pub events: Vec<Event>,
    /// Holds the run folder until the test ends.
    _dir: tempfile::TempDir,
}

/// Runs `yaml` with `providers` and `inputs`; the run must start.
pub async fn run(providers: Providers, yaml: &str, inputs: Value) -> Ran {
    match start(providers, yaml, inputs).await {
        Ok(ran) => ran,
        Err(e) => panic!("the run did not start: {}", e.0),
    }
}

/// Runs `yaml`; `Err` when the run was refused before anything ran.
pub async fn start(providers: Providers, yaml: &str, inputs: Value) -> Result<Ran, NotStarted> {
    start_with(EngineSettings::default(), providers, yaml, inputs).await
}

/// `start` with these engine settings.
pub async fn start_with(
    engine: EngineSettings,
    providers: Providers,
    yaml: &str,
    inputs: Value,
) -> Result<Ran, NotStarted> {
    let dir = temp_dir();
    let recipe = load(yaml, dir.path());
    let mut services = Services::new(engine);
    services.providers = providers;
    let sink = CollectEvents::new();
    let request = RunRequest {
        recipe,
        inputs: inputs.as_object().cloned().unwrap_or_else(Map::new),
        model_override: None,
        out_root: dir.path().join("out"),
        replies: Default::default(),
        events: sink.clone(),
        allow_extra_inputs: false,
        cache_mode: Default::default(),
    };
    let outcome = run_recipe(Arc::new(services), request).await?;
    Ok(Ran {
        outcome,
        events: sink.events(),
        _dir: dir,
    })
}

impl Ran {
    /// One final output of a run that must have succeeded.
    pub fn out(&self, key: &str) -> &Value {
        if let Some(e) = &self.outcome.error {
            panic!("the run failed: {e}\nevents:\n{}", self.describe());
        }
        self.outcome
            .outputs
            .get(key)
            .unwrap_or_else(|| panic!("no output `{key}` in {:?}", self.outcome.outputs))
    }

    /// The error of a run that must have failed, as text.
    pub fn error(&self) -> String {
        match &self.outcome.error {
            Some(e) => e.to_string(),
            None => panic!(
                "the run succeeded but should have failed; outputs {:?}",
                self.outcome.outputs
            ),
        }
    }

    /// The provider notes of `node`, in order.
    pub fn notes(&self, node: &str) -> Vec<CallNote> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Provider { node: n, note } if n == node => Some(note.clone()),
                _ => None,
            })
            .collect()
    }

    /// `(attempt, delay_ms, reason)` of every Retry note of `node`.
    pub fn retries(&self, node: &str) -> Vec<(u32, u64, String)> {
        self.notes(node)
            .into_iter()
            .filter_map(|n| match n {
                CallNote::Retry {
                    attempt,
                    delay_ms,
                    reason,
                    ..
                } => Some((attempt, delay_ms, reason)),
                _ => None,
            })
            .collect()
    }

    /// The stats of `node`'s NodeFinished event.
    pub fn stats(&self, node: &str) -> CallStats {
        self.events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::NodeFinished { node: n, stats, .. } if n == node => Some(stats.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("`{node}` did not finish:\n{}", self.describe()))
    }

    pub fn describe(&self) -> String {
        self.events
            .iter()
            .map(|e| format!("{:>8.4}s {:?}", e.at.as_secs_f64(), e.kind))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `a` and `b` within a relative 1e-9.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
}
