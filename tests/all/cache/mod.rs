//! The result cache and the run store against issue 6.
//!
//! - `calls`: provider calls through `run_recipe` against `Fake`, a local
//!   OpenAI-compatible server that counts requests: a second run makes no
//!   call and returns the same outputs; model, parameter and prompt changes
//!   miss; `CacheMode::Off` / `Refresh`; `cache: false`; `normalize`;
//!   single flight in a map;
//! - `expiry`: TTLs (the settings' default and a node's `cache: {ttl}`) on
//!   an injected clock, stats and prune of expired entries;
//! - `functions`: native functions with a call counter (pure, impure,
//!   `cache: true|false`) and the hostile plugin's pure `echo` against its
//!   impure `count_calls`, and new plugin bytes;
//! - `audio`: speech restored from the blob store into a later run's folder
//!   after the first run's folder is gone; transcripts keyed by content;
//! - `layers`: `ResultCache` itself: memory layer, SQLite layer, memory
//!   only, errors, broken database files;
//! - `store`: what the run store holds after a run, a failed run, a cached
//!   run;
//! - `cli`: the real binary: `--no-cache`, `--refresh`, corrupted and
//!   locked database files, `composer cache` and `composer runs`, and a run
//!   killed mid-way that keeps its finished node.
//!
//! Every test has its own temporary folder holding the database (so the
//! blob folder beside it), the run folders and, for the binary, the working
//! directory.

mod audio;
mod calls;
mod cli;
mod expiry;
mod functions;
mod layers;
mod store;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use composer::cache::{CacheMode, CacheSettings, Clock, ResultCache};
use composer::config::EngineSettings;
use composer::engine::events::{CollectEvents, Event, EventKind, PluginUsage};
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, RunOutcome, RunRequest};
use composer::plugins::{CallContext, CallError, Function, FunctionInfo, Scope};
use composer::providers::keys::Keys;
use composer::providers::settings::{Endpoint, Protocol, ProviderSettings, RetrySettings};
use composer::providers::{CallStats, Providers};
use composer::recipe::model::Recipe;
use composer::store::{Database, SqliteStore};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `tests/fixtures/cache`.
pub fn fixtures() -> PathBuf {
    crate::support::fixture("cache")
}

// ---------------------------------------------------------------------------
// A counting fake of OpenAI's chat completions.

#[derive(Default)]
struct FakeState {
    calls: AtomicUsize,
    delay_ms: AtomicU64,
    /// Every request body, in arrival order.
    bodies: Mutex<Vec<Value>>,
}

/// `POST /v1/chat/completions` on 127.0.0.1, on its own thread and
/// runtime. Answer number n to a prompt p for model m reads
/// `m answer #n to: p`, so a result served from the cache is told apart
/// from a fresh one by its number.
pub struct Fake {
    url: String,
    state: Arc<FakeState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fake {
    pub fn start() -> Fake {
        Fake::with_delay(Duration::ZERO)
    }

    /// Each answer waits `delay` first.
    pub fn with_delay(delay: Duration) -> Fake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(FakeState::default());
        state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("cache-test-fake".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let app = Router::new()
                        .route("/v1/chat/completions", post(chat))
                        .with_state(shared);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })
            .expect("start the fake's thread");
        Fake {
            url,
            state,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the endpoint's base URL.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Requests answered (or being answered) so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The request bodies so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// `Providers` with `fake` (OpenAI protocol, no key) pointed here, no
    /// rate limit and no retries.
    pub fn providers(&self) -> Providers {
        let mut settings = ProviderSettings {
            rate_limits: BTreeMap::new(),
            retry: RetrySettings {
                max_retries: 0,
                base_delay_ms: 1,
                max_delay_ms: 1,
                max_retry_after_ms: 1,
            },
            request_timeout_secs: 20.0,
            ..ProviderSettings::default()
        };
        settings.endpoint.insert(
            "fake".into(),
            Endpoint {
                protocol: Protocol::OpenAi,
                base_url: self.base_url(),
                api_key_env: String::new(),
                key_required: false,
                ..Endpoint::default()
            },
        );
        Providers::from_settings(&settings, &Keys::fixed(Vec::new())).expect("providers")
    }

    /// `composer.toml` text declaring the `fake` provider, for the binary.
    pub fn config(&self) -> String {
        format!(
            "[providers.endpoint.fake]\nprotocol = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"\"\nkey_required = false\n\n[providers.retry]\nmax_retries = 0\n",
            self.base_url()
        )
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn chat(State(state): State<Arc<FakeState>>, Json(body): Json<Value>) -> Json<Value> {
    let n = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    state.bodies.lock().unwrap().push(body.clone());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let model = body["model"].as_str().unwrap_or_default();
    let prompt = body
        .pointer("/messages/0/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": format!("{model} answer #{n} to: {prompt}")},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

// ---------------------------------------------------------------------------
// Time, folders, caches.

/// A clock the test moves by hand (seconds since the epoch).
pub struct TestClock(AtomicU64);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One test's folder: the database `.composer/composer.db` (blobs beside
/// it in `.composer/blobs`) and the run folders under `out`.
pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub db: PathBuf,
    pub out: PathBuf,
    pub clock: Arc<TestClock>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("composer-cache-test-")
            .tempdir()
            .expect("cannot create a temporary folder");
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let out = root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        Env {
            _dir: dir,
            db: root.join(".composer").join("composer.db"),
            out,
            root,
            // A fixed, realistic start, so expiry never depends on the wall clock.
            clock: Arc::new(TestClock(AtomicU64::new(1_800_000_000))),
        }
    }

    /// The default settings with this test's database.
    pub fn settings(&self) -> CacheSettings {
        CacheSettings {
            path: self.db.clone(),
            ..CacheSettings::default()
        }
    }

    /// A new connection to the database.
    pub fn database(&self) -> Arc<Database> {
        Arc::new(Database::open(&self.db).expect("open the test database"))
    }

    /// A new cache over the database with an empty memory layer (what the
    /// next process would see), on the test clock.
    pub fn cache(&self) -> Arc<ResultCache> {
        self.cache_with(&self.settings())
    }

    pub fn cache_with(&self, settings: &CacheSettings) -> Arc<ResultCache> {
        Arc::new(
            ResultCache::new(settings, Some(self.database()))
                .expect("cache settings")
                .with_clock(self.clock.clone()),
        )
    }

    pub fn store(&self) -> Arc<SqliteStore> {
        Arc::new(SqliteStore::new(self.database()))
    }

    /// Rows in the cache table, by kind.
    pub fn entries(&self) -> BTreeMap<String, u64> {
        if !self.db.exists() {
            return BTreeMap::new();
        }
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn
            .prepare("SELECT kind, COUNT(*) FROM cache GROUP BY kind")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Total rows in the cache table.
    pub fn entry_count(&self) -> u64 {
        self.entries().values().sum()
    }
}

// ---------------------------------------------------------------------------
// Functions with a call counter.

/// A native function that counts its calls and answers
/// `{"input": <input>, "call": <n>}`.
pub struct Counting {
    name: String,
    pure: bool,
    calls: Arc<AtomicUsize>,
}

impl Counting {
    pub fn make(name: &str, pure: bool) -> (Arc<dyn Function>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let f = Arc::new(Counting {
            name: name.to_string(),
            pure,
            calls: calls.clone(),
        });
        (f, calls)
    }
}

#[async_trait]
impl Function for Counting {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.clone(),
            description: "counts its calls".into(),
            pure: self.pure,
            tags: Vec::new(),
            input_schema: None,
        }
    }

    async fn call(&self, input: Value, _ctx: &CallContext) -> Result<Value, CallError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(json!({"input": input, "call": n}))
    }
}

pub fn count(calls: &AtomicUsize) -> usize {
    calls.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Runs.

/// Loads an inline YAML recipe (relative paths from `fixtures()`).
pub fn load(yaml: &str) -> Arc<Recipe> {
    crate::support::load_yaml(yaml, &fixtures())
}

/// One run to make: services, recipe, inputs, cache mode.
pub struct Run {
    services: Services,
    recipe: Arc<Recipe>,
    inputs: Map<String, Value>,
    mode: CacheMode,
    out: PathBuf,
}

impl Run {
    /// `yaml` with no cache, no store and the default providers, writing
    /// its run folder under `env.out`.
    pub fn new(env: &Env, yaml: &str) -> Run {
        Run::recipe(env, load(yaml))
    }

    pub fn recipe(env: &Env, recipe: Arc<Recipe>) -> Run {
        Run {
            services: Services::new(EngineSettings::default()),
            recipe,
            inputs: Map::new(),
            mode: CacheMode::Use,
            out: env.out.clone(),
        }
    }

    pub fn cache(mut self, cache: &Arc<ResultCache>) -> Run {
        self.services.cache = Some(cache.clone());
        self
    }

    pub fn store(mut self, store: &Arc<SqliteStore>) -> Run {
        self.services.store = Some(store.clone());
        self
    }

    pub fn providers(mut self, providers: Providers) -> Run {
        self.services.providers = providers;
        self
    }

    pub fn function(mut self, f: Arc<dyn Function>) -> Run {
        self.services.functions.register(Scope::Core, f);
        self
    }

    pub fn services(mut self, change: impl FnOnce(&mut Services)) -> Run {
        change(&mut self.services);
        self
    }

    pub fn input(mut self, key: &str, value: impl Into<Value>) -> Run {
        self.inputs.insert(key.into(), value.into());
        self
    }

    pub fn mode(mut self, mode: CacheMode) -> Run {
        self.mode = mode;
        self
    }

    /// Runs to the end; the run must start.
    pub async fn run(self) -> Ran {
        let sink = CollectEvents::new();
        let request = RunRequest {
            recipe: self.recipe,
            inputs: self.inputs,
            model_override: None,
            out_root: self.out,
            replies: Default::default(),
            events: sink.clone(),
            allow_extra_inputs: false,
            cache_mode: self.mode,
        };
        match run_recipe(Arc::new(self.services), request).await {
            Ok(outcome) => Ran {
                outcome,
                events: sink.events(),
            },
            Err(e) => panic!("the run did not start: {}", e.0),
        }
    }
}

/// A finished run and its events.
pub struct Ran {
    pub outcome: RunOutcome,
    pub events: Vec<Event>,
}

/// What a node's NodeFinished event said.
#[derive(Debug, Clone)]
pub struct Finished {
    pub cached: bool,
    pub stats: CallStats,
    pub plugin: Option<PluginUsage>,
}

impl Ran {
    /// The final outputs of a run that must have succeeded.
    pub fn outputs(&self) -> &Map<String, Value> {
        if let Some(e) = &self.outcome.error {
            panic!("the run failed: {e}\nevents:\n{}", self.describe());
        }
        &self.outcome.outputs
    }

    /// One final output of a run that must have succeeded.
    pub fn out(&self, key: &str) -> &Value {
        self.outputs()
            .get(key)
            .unwrap_or_else(|| panic!("no final output `{key}` in {:?}", self.outcome.outputs))
    }

    /// The error of a run that must have failed, as text.
    pub fn error(&self) -> String {
        match &self.outcome.error {
            Some(e) => e.to_string(),
            None => panic!(
                "the run succeeded but should have failed: {:?}",
                self.outcome.outputs
            ),
        }
    }

    /// `node`'s NodeFinished event.
    pub fn finished(&self, node: &str) -> Finished {
        self.events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::NodeFinished {
                    node: n,
                    cached,
                    stats,
                    plugin,
                    ..
                } if n == node => Some(Finished {
                    cached: *cached,
                    stats: stats.clone(),
                    plugin: *plugin,
                }),
                _ => None,
            })
            .unwrap_or_else(|| panic!("`{node}` did not finish:\n{}", self.describe()))
    }

    /// Whether `node` was served from the cache.
    pub fn cached(&self, node: &str) -> bool {
        self.finished(node).cached
    }

    /// The event stream, one line each, for failure messages.
    pub fn describe(&self) -> String {
        self.events
            .iter()
            .map(|e| format!("{:>8.4}s {:?}", e.at.as_secs_f64(), e.kind))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Files in `dir` (not recursive), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
