//! The WebAssembly plugin host against issue 4: every limit and every
//! hostile behaviour (with the exact `PluginError` and a message naming the
//! plugin, the function, the limit and its value), the sandbox, a fresh
//! instance per call, scopes, unknown functions, laziness and the compiled
//! code cache, maps of plugin calls under `on_error: skip`, the corpus
//! recipes that call plugins, and `composer plugin`.
//!
//! The components come from `plugins/dist` (built by
//! `scripts/build-plugins.sh`, run here once if they are missing). Every
//! test has its own cache and output folders; caches start as a copy of one
//! warm cache (compiled once per engine into the target folder) so tests do
//! not each compile the same components, except where the cache itself is
//! under test.

mod cli;
/// The corpus validates and runs from its own folders after install.
mod corpus_folder;
/// A fake of Perplexity's chat-completions API (issue 13).
pub mod fake_perplexity;
/// Outbound HTTP: allowed hosts, refusals, caps, deadlines, secrets.
mod http;
mod isolation;
/// Python and JavaScript plugins: the examples, hostile guests, maps, the
/// three-language recipe.
mod languages;
mod limits;
/// `--profile-plugins`: guest profiles of calls.
mod profile;
mod recipes;
mod registry;
mod sandbox;
/// `composer plugin new|build|test` for Python and JavaScript.
mod scaffold;

use composer::config::EngineSettings;
use composer::engine::events::{CollectEvents, Event, EventKind};
use composer::engine::run::Services;
use composer::engine::runner::{run_recipe, NotStarted, RunOutcome, RunRequest};
use composer::plugins::catalog::{
    describe_file, register_project_plugins, PluginHost, PluginSettings, WasmFunction,
};
use composer::plugins::{CallContext, CallError, PluginError, PluginLimits};
use composer::recipe::model::Recipe;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

pub const MIB: u64 = 1024 * 1024;

/// The components `scripts/build-plugins.sh` makes, relative to
/// `plugins/dist`, without `.wasm`.
const COMPONENTS: &[&str] = &[
    "combine_audio_files",
    "extract_file_content",
    "markup",
    "perplexity_search",
    "prepare_agent_configs",
    "prepare_summaries_for_synthesis",
    "split_transcript",
    "text_insights",
    "test/hostile",
    "test/hostile_js",
    "test/hostile_py",
];

/// The repository root.
pub fn repo() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `plugins/dist`, built first if a component is missing (once per
/// process, however many tests ask at the same time).
pub fn dist() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dist = repo().join("plugins").join("dist");
    BUILT.get_or_init(|| {
        let missing = COMPONENTS
            .iter()
            .any(|c| !dist.join(format!("{c}.wasm")).is_file());
        if missing {
            let status = Command::new("bash")
                .arg("scripts/build-plugins.sh")
                .current_dir(repo())
                .status()
                .expect("cannot run scripts/build-plugins.sh");
            assert!(status.success(), "scripts/build-plugins.sh failed");
        }
    });
    dist
}

/// The test-only component that misbehaves on purpose.
pub fn hostile_wasm() -> PathBuf {
    dist().join("test").join("hostile.wasm")
}

/// `tests/fixtures/plugins/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    repo()
        .join("tests")
        .join("fixtures")
        .join("plugins")
        .join(name)
}

/// `tests/fixtures/corpus/<relative>`.
pub fn corpus(relative: &str) -> PathBuf {
    repo()
        .join("tests")
        .join("fixtures")
        .join("corpus")
        .join(relative)
}

/// A cache holding every component's compiled code and metadata, made once
/// per process (and kept in the target folder between runs: entries are
/// named by content hash and engine, so stale ones are never used).
fn warm_cache() -> &'static Path {
    static WARM: OnceLock<PathBuf> = OnceLock::new();
    WARM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
        let files: Vec<PathBuf> = COMPONENTS
            .iter()
            .map(|c| dist().join(format!("{c}.wasm")))
            .collect();
        let cache = dir.clone();
        // Its own thread and runtime: callers are often inside a runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let host = PluginHost::new(PluginSettings {
                    paths: Vec::new(),
                    cache_dir: cache,
                    max_instances: 1,
                    ..PluginSettings::default()
                });
                for file in files {
                    let (plugin, _) = describe_file(&host, &file)
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    plugin
                        .loaded()
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                }
            });
        })
        .join()
        .expect("warming the plugin cache failed");
        dir
    })
}

/// One test's folders: a plugin cache and an output root, inside a
/// temporary folder removed at the end of the test.
pub struct Env {
    _dir: tempfile::TempDir,
    /// The temporary folder itself (canonical).
    pub root: PathBuf,
    pub cache: PathBuf,
    pub out: PathBuf,
}

impl Env {
    /// Folders with a cache already holding every component's compiled
    /// code and metadata.
    pub fn new() -> Env {
        let env = Env::cold();
        for entry in std::fs::read_dir(warm_cache()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with('.') && !name.ends_with(".tmp") && path.is_file() {
                // Linked, not copied: the compiled Python and JavaScript
                // runtimes are tens of MB, and cache files are never
                // changed in place (new ones are renamed into the folder).
                let to = env.cache.join(&name);
                if std::fs::hard_link(&path, &to).is_err() {
                    std::fs::copy(&path, &to).unwrap();
                }
            }
        }
        env
    }

    /// Folders with an empty cache.
    pub fn cold() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("composer-plugin-test-")
            .tempdir()
            .expect("cannot create a temporary folder");
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let cache = root.join("cache");
        let out = root.join("out");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        Env {
            _dir: dir,
            root,
            cache,
            out,
        }
    }

    /// Plugin settings reading `paths`, with this test's cache.
    pub fn settings(&self, paths: Vec<PathBuf>) -> PluginSettings {
        PluginSettings {
            paths,
            cache_dir: self.cache.clone(),
            max_instances: 16,
            limits: PluginLimits::default(),
            overrides: BTreeMap::new(),
            grants: Vec::new(),
            profile_dir: None,
        }
    }

    /// A host for the hostile component with `limits`.
    pub fn hostile_host(&self, limits: PluginLimits) -> Arc<PluginHost> {
        PluginHost::new(PluginSettings {
            limits,
            ..self.settings(vec![hostile_wasm()])
        })
    }

    /// `composer.toml` in `root`, reading plugins from `paths` and caching
    /// in this test's cache.
    pub fn write_config(&self, paths: &[PathBuf]) {
        let quoted: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.to_string_lossy()))
            .collect();
        let text = format!(
            "[plugins]\npaths = [{}]\ncache_dir = {:?}\n",
            quoted.join(", "),
            self.cache.to_string_lossy()
        );
        std::fs::write(self.root.join("composer.toml"), text).unwrap();
    }
}

/// The default limits with some changed.
pub fn limits(change: impl FnOnce(&mut PluginLimits)) -> PluginLimits {
    let mut l = PluginLimits::default();
    change(&mut l);
    l
}

/// One function of the hostile component, as the registry would hold it.
pub async fn hostile_function(host: &Arc<PluginHost>, name: &str) -> WasmFunction {
    let (plugin, functions) = describe_file(host, &hostile_wasm())
        .await
        .unwrap_or_else(|e| panic!("cannot describe hostile.wasm: {e}"));
    let info = functions
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("hostile.wasm has no function `{name}`"));
    WasmFunction { plugin, info }
}

/// Log lines a call reported: (level or stream, message).
pub type Logs = Arc<Mutex<Vec<(String, String)>>>;

/// What a call in a run with output folder `out` may use, and where its
/// log lines go.
pub fn call_context(out: &Path) -> (CallContext, Logs) {
    let logs: Logs = Arc::default();
    let sink = logs.clone();
    let ctx = CallContext {
        on_log: Some(Arc::new(move |level: &str, message: &str| {
            sink.lock()
                .unwrap()
                .push((level.to_string(), message.to_string()));
        })),
        ..CallContext::bare(out, "test")
    };
    (ctx, logs)
}

/// The plugin error of a call that must have failed with one.
pub fn plugin_error(result: Result<Value, CallError>) -> PluginError {
    match result {
        Err(CallError::Plugin(e)) => e,
        Err(CallError::Message(m)) => panic!("expected a plugin error, got a message: {m}"),
        Ok(v) => panic!("expected a plugin error, got {v}"),
    }
}

/// Asserts that an error's message holds every one of `parts`.
pub fn assert_mentions(error: &dyn std::fmt::Display, parts: &[&str]) {
    let text = error.to_string();
    for part in parts {
        assert!(text.contains(part), "`{part}` is missing from: {text}");
    }
}

/// Services with the plugins of `host` registered in the PROJECT scope;
/// also returns the registration warnings.
pub async fn project_services(host: &Arc<PluginHost>) -> (Services, Vec<String>) {
    let mut services = Services::new(EngineSettings::default());
    let warnings = register_project_plugins(host, &mut services.functions).await;
    (services, warnings)
}

/// Loads a recipe from `tests/fixtures/plugins`.
pub fn recipe(name: &str) -> Arc<Recipe> {
    let path = fixture(name);
    match composer::recipe::load_file(&path) {
        Ok(loaded) => {
            let errors: Vec<String> = loaded
                .warnings
                .iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect();
            assert!(errors.is_empty(), "{name} has errors: {errors:?}");
            loaded.recipe
        }
        Err(failure) => panic!("{name} does not load:\n{failure}"),
    }
}

/// A finished run and its events.
pub struct Ran {
    pub outcome: RunOutcome,
    pub events: Vec<Event>,
}

impl Ran {
    /// A final output of a run that must have succeeded.
    pub fn out(&self, key: &str) -> &Value {
        if let Some(e) = &self.outcome.error {
            panic!("the run failed: {e}");
        }
        self.outcome
            .outputs
            .get(key)
            .unwrap_or_else(|| panic!("no output `{key}` in {:?}", self.outcome.outputs))
    }

    /// `(level, message)` of the Log events of nodes starting with `node`.
    pub fn logs(&self, node: &str) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Log {
                    node: n,
                    level,
                    message,
                    ..
                } if n.starts_with(node) => Some((level.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Runs `recipe` (inputs `inputs`, models replaced by `mock/echo`) with
/// `services`, writing under `out_root`.
pub async fn run(
    services: Services,
    recipe: Arc<Recipe>,
    inputs: Value,
    out_root: &Path,
) -> Result<Ran, (NotStarted, Vec<Event>)> {
    let sink = CollectEvents::new();
    let request = RunRequest {
        recipe,
        inputs: inputs.as_object().cloned().unwrap_or_default(),
        model_override: Some(composer::recipe::model::ModelSpec {
            provider: "mock".into(),
            model: "echo".into(),
            params: serde_json::Map::new(),
        }),
        out_root: out_root.to_path_buf(),
        replies: Default::default(),
        events: sink.clone(),
        allow_extra_inputs: false,
        cache_mode: Default::default(),
    };
    match run_recipe(Arc::new(services), request).await {
        Ok(outcome) => Ok(Ran {
            outcome,
            events: sink.events(),
        }),
        Err(e) => Err((e, sink.events())),
    }
}

/// What a run of the `composer` binary did.
pub struct Cli {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `composer` binary with `args` in `cwd`, with extra environment.
pub fn bin_with_env<S: AsRef<std::ffi::OsStr>>(
    cwd: &Path,
    args: &[S],
    env: &[(&str, &str)],
) -> Cli {
    let mut command = crate::support::composer_command(cwd);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("cannot run the composer binary");
    Cli {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the `composer` binary with `args` in `cwd`.
pub fn bin<S: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[S]) -> Cli {
    bin_with_env(cwd, args, &[])
}
