//! The one library entry point: `Composer::open` builds, once per process,
//! what every run shares (provider clients and their limiters, the plugin
//! engine, the result cache, the run store and work queue); each run then
//! gets a `RunScope` with what differs per tenant or per run. The CLI, the
//! server and the worker are thin callers of it.

use crate::cache::{CacheMode, ResultCache};
use crate::config::Settings;
use crate::engine::durable::StoredOutput;
use crate::engine::events::{EventSink, RunStatus};
use crate::engine::run::Services;
use crate::engine::runner::{self, Attempt, NotStarted, RunOutcome, RunRequest, RunScope};
use crate::nodes::HumanInput;
use crate::plugins::catalog::{register_project_plugins, PluginHost};
use crate::plugins::FunctionRegistry;
use crate::providers::keys::Keys;
use crate::providers::Providers;
use crate::recipe::document::Format;
use crate::recipe::model::{ModelSpec, Recipe};
use crate::store::postgres::{queue::PgQueue, runs::PgStore, PgDatabase};
use crate::store::redis::Redis;
use crate::store::{Database, RunStore, SqliteQueue, SqliteStore, StoreError, WorkQueue};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("cache settings: {0}")]
    Cache(String),
    #[error("provider settings: {0}")]
    Providers(String),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error("`[storage] url = \"{0}\"`: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")]
    StorageUrl(String),
}

/// Why a stored run cannot be continued.
#[derive(Debug, Error)]
pub enum ResumeError {
    #[error("there is no run store (the database could not be opened)")]
    NoStore,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run `{0}` is not in the run store")]
    Unknown(String),
    #[error("run `{id}` has already ended ({status}); there is nothing to continue")]
    Ended { id: String, status: &'static str },
    #[error("run `{id}` cannot be continued: {message}")]
    Recipe { id: String, message: String },
    #[error("run `{id}` cannot start again: {source}")]
    NotStarted {
        id: String,
        #[source]
        source: crate::engine::error::RunError,
    },
}

/// Where a run's recipe comes from, stored with the run so that another
/// process can load it again to continue the run.
#[derive(Debug, Clone)]
pub enum RecipeSource {
    File(PathBuf),
    /// An inline recipe (the server's `POST /v1/runs`): its text, resolved
    /// against `base_dir`.
    Inline {
        text: String,
        base_dir: PathBuf,
    },
}

impl RecipeSource {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RecipeSource::File(p) => serde_json::json!({"kind": "file", "path": p}),
            RecipeSource::Inline { text, base_dir } => {
                serde_json::json!({"kind": "inline", "text": text, "base_dir": base_dir})
            }
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Option<RecipeSource> {
        match v.get("kind")?.as_str()? {
            "file" => Some(RecipeSource::File(PathBuf::from(v.get("path")?.as_str()?))),
            "inline" => Some(RecipeSource::Inline {
                text: v.get("text")?.as_str()?.to_string(),
                base_dir: PathBuf::from(v.get("base_dir")?.as_str()?),
            }),
            _ => None,
        }
    }

    /// Where a stored run's recipe came from: its spec, or (runs stored
    /// before specs named their source) its recipe path.
    pub fn of_record(record: &crate::store::RunRecord) -> Option<RecipeSource> {
        record
            .spec
            .as_ref()
            .and_then(|spec| spec.get("source"))
            .and_then(RecipeSource::from_json)
            .or_else(|| {
                record
                    .recipe_path
                    .as_ref()
                    .map(|p| RecipeSource::File(p.into()))
            })
    }

    pub fn load(&self) -> Result<Arc<Recipe>, crate::recipe::LoadFailure> {
        let loaded = match self {
            RecipeSource::File(p) => crate::recipe::load_file(p),
            RecipeSource::Inline { text, base_dir } => {
                // JSON is YAML: the YAML reader takes both.
                crate::recipe::load_str(text, Format::Yaml, base_dir)
            }
        };
        loaded.map(|l| l.recipe)
    }
}

/// What a run asks for beyond its recipe and inputs.
pub struct RunOptions {
    pub model_override: Option<ModelSpec>,
    pub out_root: PathBuf,
    pub replies: HashMap<String, serde_json::Value>,
    pub events: Arc<dyn EventSink>,
    pub allow_extra_inputs: bool,
    pub cache_mode: CacheMode,
    /// Someone to ask when a `hitl` node has no reply (a terminal).
    pub human: Option<Arc<dyn HumanInput>>,
    /// The tenant's uploaded functions (LOCAL scope), over the project's.
    pub local_functions: Option<FunctionRegistry>,
    /// The tenant's plugin grants (hosts, secrets, limits) over the
    /// process config's; None: the config's alone.
    pub plugin_policy: Option<Arc<crate::plugins::RunPluginPolicy>>,
}

pub struct Composer {
    settings: Settings,
    providers: Providers,
    plugins: Arc<PluginHost>,
    /// The project's plugin folders, read on first need.
    project_functions: tokio::sync::OnceCell<(FunctionRegistry, Vec<String>)>,
    cache: Option<Arc<ResultCache>>,
    store: Option<Arc<dyn RunStore>>,
    queue: Option<Arc<dyn WorkQueue>>,
    /// The embedded database (`[cache] path`), when it opened.
    database: Option<Arc<Database>>,
    /// The shared backends of `connect`, for health and notifications.
    postgres: Option<Arc<PgDatabase>>,
    redis: Option<Redis>,
    warnings: Vec<String>,
}

impl Composer {
    /// Builds what every run shares. Keys come from the environment and
    /// the `.env` files of `key_dirs`. A database that cannot be used is a
    /// warning: runs go on without the cache and the store.
    pub fn open(settings: Settings, key_dirs: &[&Path]) -> Result<Composer, AppError> {
        Self::build(settings, key_dirs, None)
    }

    /// `open` for a service process: with `[storage] url = "postgres://..."`
    /// runs, events and the work queue are in PostgreSQL; with `[cache]
    /// redis_url` the result cache and provider rate limits are shared
    /// through Redis. Other processes with the same settings share them.
    pub async fn connect(settings: Settings, key_dirs: &[&Path]) -> Result<Composer, AppError> {
        let mut settings = settings;
        let mut postgres_url = None;
        match settings.storage.url.as_deref().map(str::trim) {
            None | Some("") => {}
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                postgres_url = Some(url.to_string());
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => settings.cache.path = path.into(),
                None => return Err(AppError::StorageUrl(url.to_string())),
            },
        }
        let redis = settings
            .cache
            .redis_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(Redis::open)
            .transpose()?;
        let pool_size = settings.storage.pool_size;
        let mut app = Self::build(settings, key_dirs, redis.clone())?;
        if let Some(url) = postgres_url {
            let db = PgDatabase::connect(&url, pool_size).await?;
            app.store = Some(Arc::new(PgStore::new(db.clone())));
            app.queue = Some(Arc::new(PgQueue::new(db.clone())));
            app.postgres = Some(db);
        }
        if let Some(redis) = &redis {
            if let Err(e) = redis.ping().await {
                app.warnings.push(format!(
                    "{e}: until it answers, the result cache is skipped, rate limits are per process, and servers refuse runs of tenants with quotas (they fail closed)"
                ));
            }
        }
        app.redis = redis;
        Ok(app)
    }

    fn build(
        settings: Settings,
        key_dirs: &[&Path],
        redis: Option<Redis>,
    ) -> Result<Composer, AppError> {
        let mut warnings = Vec::new();
        let (mut cache, mut store, mut queue, mut database) = (None, None, None, None);
        match Database::open(&settings.cache.path) {
            Ok(db) => {
                let db = Arc::new(db);
                database = Some(db.clone());
                if settings.cache.enabled {
                    let mut c = ResultCache::new(&settings.cache, Some(db.clone()))
                        .map_err(AppError::Cache)?;
                    if let Some(redis) = &redis {
                        c = c.with_backend(Arc::new(crate::store::redis::cache::RedisCache::new(
                            redis.clone(),
                        )?));
                    }
                    cache = Some(Arc::new(c));
                }
                store = Some(Arc::new(SqliteStore::new(db.clone())) as Arc<dyn RunStore>);
                queue = Some(Arc::new(SqliteQueue::new(db)) as Arc<dyn WorkQueue>);
            }
            Err(e) => {
                warnings.push(format!(
                    "{e}; running without the result cache and the run store"
                ));
            }
        }
        let keys = Keys::load(key_dirs);
        let providers = match &redis {
            Some(redis) => Providers::from_settings_with(
                &settings.providers,
                &keys,
                &crate::store::redis::limits::SharedLimiter::maker(redis.clone()),
            ),
            None => Providers::from_settings(&settings.providers, &keys),
        }
        .map_err(AppError::Providers)?;
        // Plugins get only the secrets granted to them, from the same
        // environment and `.env` files as provider keys.
        let plugins = PluginHost::with_secrets(settings.plugins.clone(), keys.clone());
        Ok(Composer {
            settings,
            providers,
            plugins,
            project_functions: tokio::sync::OnceCell::new(),
            cache,
            store,
            queue,
            database,
            postgres: None,
            redis: None,
            warnings,
        })
    }

    /// The embedded SQLite database (`[cache] path`), for what else a
    /// process keeps beside its runs and cache (a server's daily usage).
    pub fn database(&self) -> Option<&Arc<Database>> {
        self.database.as_ref()
    }

    /// Where runs are recorded, for messages: PostgreSQL's `host:port/db`
    /// or the SQLite file.
    pub fn storage_location(&self) -> String {
        match &self.postgres {
            Some(db) => format!("PostgreSQL {}", db.target()),
            None => self.settings.cache.path.display().to_string(),
        }
    }

    /// The shared PostgreSQL database (`connect` with a postgres URL).
    pub fn postgres(&self) -> Option<&Arc<PgDatabase>> {
        self.postgres.as_ref()
    }

    /// The shared Redis (`connect` with `redis_url`).
    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same app without the run store: runs are not recorded (the
    /// result cache stays). For load tests, which would otherwise add
    /// thousands of runs to the user's store.
    pub fn without_run_store(mut self) -> Composer {
        self.store = None;
        self.queue = None;
        self
    }

    /// Problems met while opening (shown once by the caller).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn cache(&self) -> Option<&Arc<ResultCache>> {
        self.cache.as_ref()
    }

    pub fn store(&self) -> Option<Arc<dyn RunStore>> {
        self.store.clone()
    }

    pub fn queue(&self) -> Option<Arc<dyn WorkQueue>> {
        self.queue.clone()
    }

    pub fn plugin_host(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    /// The project's functions (plugin folders are read on first call),
    /// with the warnings of reading them.
    pub async fn project_functions(&self) -> &(FunctionRegistry, Vec<String>) {
        self.project_functions
            .get_or_init(|| async {
                let mut registry = FunctionRegistry::default();
                let warnings = register_project_plugins(&self.plugins, &mut registry).await;
                (registry, warnings)
            })
            .await
    }

    /// The services one run uses: shared clients, cache and store, the
    /// functions it may call, who to ask for replies.
    pub async fn services(&self, recipe: &Recipe, options: &RunOptions) -> Arc<Services> {
        let mut functions = if recipe.functions().is_empty() {
            FunctionRegistry::default()
        } else {
            self.project_functions().await.0.clone()
        };
        if let Some(local) = &options.local_functions {
            functions.overlay(local);
        }
        Arc::new(Services {
            providers: self.providers.clone(),
            functions,
            human: options.human.clone(),
            settings: self.settings.engine.clone(),
            cache: self.cache.clone(),
            store: self.store(),
            plugin_policy: options.plugin_policy.clone(),
        })
    }

    /// Runs a recipe to its end (or until it waits for a human).
    pub async fn run(
        &self,
        recipe: Arc<Recipe>,
        inputs: serde_json::Map<String, serde_json::Value>,
        options: RunOptions,
        scope: RunScope,
    ) -> Result<RunOutcome, NotStarted> {
        let services = self.services(&recipe, &options).await;
        let request = RunRequest {
            recipe,
            inputs,
            model_override: options.model_override,
            out_root: options.out_root,
            replies: options.replies,
            events: options.events,
            allow_extra_inputs: options.allow_extra_inputs,
            cache_mode: options.cache_mode,
        };
        runner::run_scoped(services, request, scope).await
    }

    /// Continues a recorded run whose process died, or that waited for a
    /// human: finished nodes are restored from their checkpoints, the rest
    /// runs. `options.replies` add to the replies already stored.
    pub async fn resume(
        &self,
        run_id: &str,
        mut options: RunOptions,
        scope: RunScope,
    ) -> Result<RunOutcome, ResumeError> {
        let store = self.store.clone().ok_or(ResumeError::NoStore)?;
        let record = store
            .run(run_id)
            .await?
            .ok_or_else(|| ResumeError::Unknown(run_id.to_string()))?;
        let status = record.run_status();
        if status.is_final() {
            return Err(ResumeError::Ended {
                id: run_id.to_string(),
                status: status.as_str(),
            });
        }
        let spec = record.spec.clone().unwrap_or_default();
        let recipe = RecipeSource::of_record(&record)
            .ok_or_else(|| ResumeError::Recipe {
                id: run_id.to_string(),
                message: "the run store does not say where its recipe is".into(),
            })?
            .load()
            .map_err(|f| ResumeError::Recipe {
                id: run_id.to_string(),
                message: f
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
        if options.model_override.is_none() {
            options.model_override = spec
                .get("model_override")
                .filter(|m| !m.is_null())
                .and_then(|m| crate::recipe::validate::model_spec_from(m).ok());
        }
        options.cache_mode = match spec.get("cache_mode").and_then(|m| m.as_str()) {
            Some("off") => CacheMode::Off,
            Some("refresh") => CacheMode::Refresh,
            _ => options.cache_mode,
        };
        let inputs = match &record.inputs {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let services = self.services(&recipe, &options).await;
        let prepared = runner::prepare(
            &services,
            &recipe,
            &inputs,
            true,
            options.model_override.as_ref(),
            None,
        )
        .map_err(|e| ResumeError::NotStarted {
            id: run_id.to_string(),
            source: e.0,
        })?;
        let mut replies = store.replies(run_id).await?;
        replies.extend(options.replies);
        let restored: HashMap<String, StoredOutput> = store.checkpoints(run_id).await?;
        let last_seq = store.last_seq(run_id).await?;
        let journal = store.journal(run_id, restored, scope.lease.clone())?;
        let out_dir = spec
            .get("out_dir")
            .and_then(|d| d.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| options.out_root.join(run_id));
        if let Err(e) = std::fs::create_dir_all(&out_dir) {
            return Err(ResumeError::Recipe {
                id: run_id.to_string(),
                message: format!("cannot create `{}`: {e}", out_dir.display()),
            });
        }
        let attempt = Attempt {
            run_id: run_id.to_string(),
            prepared,
            out_dir,
            model_override: options.model_override,
            replies,
            events: options.events,
            cache_mode: options.cache_mode,
            journal: Some(journal),
            last_seq,
            scope,
        };
        Ok(runner::drive(services, attempt).await)
    }

    /// Stores a human reply for a waiting run (it continues on resume).
    pub async fn reply(
        &self,
        run_id: &str,
        node: &str,
        reply: &serde_json::Value,
    ) -> Result<(), ResumeError> {
        let store = self.store.clone().ok_or(ResumeError::NoStore)?;
        let record = store
            .run(run_id)
            .await?
            .ok_or_else(|| ResumeError::Unknown(run_id.to_string()))?;
        if record.run_status() != RunStatus::Waiting {
            return Err(ResumeError::Ended {
                id: run_id.to_string(),
                status: record.run_status().as_str(),
            });
        }
        store.add_reply(run_id, node, reply).await?;
        Ok(())
    }
}
