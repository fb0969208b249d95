//! From plugin folders to registered functions, lazily.
//!
//! Discovery lists the `.wasm` files of the configured folders and learns
//! each one's functions from a metadata file cached by content hash (only a
//! component never seen before is compiled and asked to `describe` itself).
//! The engine starts, and a component's compiled code loads, on the first
//! call: a run that calls no plugin pays nothing for the plugin runtime.

use super::error::PluginError;
use super::limits::{LimitOverrides, PluginLimits};
use super::registry::{CallContext, CallError, Function, FunctionInfo, FunctionRegistry, Scope};
use super::runtime::{content_hash, LoadedComponent, PluginRuntime, ProgressFn, RuntimeSettings};
use super::sandbox::Grant;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// `[plugins]` in composer.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PluginSettings {
    /// Folders (their `.wasm` files, not recursive) and single `.wasm` files.
    pub paths: Vec<PathBuf>,
    /// Compiled code and metadata, by content hash.
    pub cache_dir: PathBuf,
    /// Plugin calls running at once; more wait for a free slot.
    pub max_instances: u32,
    /// Limits of every call unless overridden.
    pub limits: PluginLimits,
    /// Per-plugin (file stem) limit overrides.
    pub overrides: BTreeMap<String, LimitOverrides>,
    /// Folders every call may use, besides the run's own output folder
    /// (read-write) and the folders of `file` inputs (read-only).
    pub grants: Vec<Grant>,
    /// Write a guest profile of every plugin call into this folder.
    pub profile_dir: Option<PathBuf>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            paths: vec![PathBuf::from("plugins/dist")],
            cache_dir: PathBuf::from(".composer/plugin-cache"),
            max_instances: 64,
            limits: PluginLimits::default(),
            overrides: BTreeMap::new(),
            grants: Vec::new(),
            profile_dir: None,
        }
    }
}

/// The plugin runtime of a process, made on first use.
pub struct PluginHost {
    settings: PluginSettings,
    runtime: OnceLock<Result<Arc<PluginRuntime>, String>>,
}

impl PluginHost {
    pub fn new(settings: PluginSettings) -> Arc<PluginHost> {
        Arc::new(PluginHost {
            settings,
            runtime: OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Whether the engine has been started (for tests of laziness).
    pub fn started(&self) -> bool {
        self.runtime.get().is_some()
    }

    pub fn runtime(&self) -> Result<Arc<PluginRuntime>, String> {
        self.runtime
            .get_or_init(|| {
                let max_memory = self
                    .settings
                    .overrides
                    .values()
                    .filter_map(|o| o.memory_bytes)
                    .fold(self.settings.limits.memory_bytes, u64::max);
                let max_table = self
                    .settings
                    .overrides
                    .values()
                    .filter_map(|o| o.table_elements)
                    .fold(self.settings.limits.table_elements, u64::max);
                PluginRuntime::new(RuntimeSettings {
                    max_instances: self.settings.max_instances,
                    max_memory_bytes: max_memory,
                    max_table_elements: max_table,
                    cache_dir: Some(self.settings.cache_dir.clone()),
                    profile_dir: self.settings.profile_dir.clone(),
                })
                .map(Arc::new)
            })
            .clone()
    }

    pub fn limits_for(&self, plugin: &str) -> PluginLimits {
        match self.settings.overrides.get(plugin) {
            Some(o) => self.settings.limits.with(o),
            None => self.settings.limits.clone(),
        }
    }
}

/// One `.wasm` file; its compiled code loads on first use.
pub struct WasmPlugin {
    pub name: String,
    pub path: PathBuf,
    pub hash: String,
    host: Arc<PluginHost>,
    loaded: tokio::sync::OnceCell<Arc<LoadedComponent>>,
}

impl WasmPlugin {
    pub async fn loaded(&self) -> Result<Arc<LoadedComponent>, PluginError> {
        self.loaded
            .get_or_try_init(|| async {
                let runtime = self.host.runtime().map_err(|message| PluginError::Load {
                    plugin: self.name.clone(),
                    message,
                })?;
                let (name, path) = (self.name.clone(), self.path.clone());
                // Compiling is CPU work: keep it off the async workers.
                tokio::task::spawn_blocking(move || runtime.load(&name, &path).map(Arc::new))
                    .await
                    .map_err(|e| PluginError::Load {
                        plugin: self.name.clone(),
                        message: format!("loading stopped: {e}"),
                    })?
            })
            .await
            .cloned()
    }
}

/// A function offered by a plugin.
pub struct WasmFunction {
    pub plugin: Arc<WasmPlugin>,
    pub info: FunctionInfo,
}

#[async_trait]
impl Function for WasmFunction {
    fn info(&self) -> FunctionInfo {
        self.info.clone()
    }

    fn origin(&self) -> String {
        format!(
            "{} ({})",
            self.plugin.path.display(),
            &self.plugin.hash[..12.min(self.plugin.hash.len())]
        )
    }

    fn content_hash(&self) -> Option<String> {
        Some(self.plugin.hash.clone())
    }

    fn memory_limit(&self) -> Option<u64> {
        Some(self.plugin.host.limits_for(&self.plugin.name).memory_bytes)
    }

    async fn call(
        &self,
        input: serde_json::Value,
        ctx: &CallContext,
    ) -> Result<serde_json::Value, CallError> {
        let plugin = &self.plugin;
        let loaded = plugin.loaded().await?;
        let runtime = plugin.host.runtime().map_err(|message| PluginError::Load {
            plugin: plugin.name.clone(),
            message,
        })?;
        let mut grants = vec![Grant {
            path: ctx.out_dir.clone(),
            writable: true,
        }];
        for dir in &ctx.read_grants {
            if !grants.iter().any(|g| g.path == *dir) {
                grants.push(Grant {
                    path: dir.clone(),
                    writable: false,
                });
            }
        }
        grants.extend(plugin.host.settings.grants.iter().cloned());
        let input = serde_json::to_string(&input)
            .map_err(|e| CallError::Message(format!("cannot encode input: {e}")))?;
        let limits = plugin
            .host
            .limits_for(&plugin.name)
            .capped(ctx.caps.as_ref());
        let progress: Option<ProgressFn> = ctx.on_progress.clone();
        let outcome = runtime
            .call(&loaded, &self.info.name, &input, &limits, &grants, progress)
            .await?;
        if let Some(usage) = &ctx.on_usage {
            usage(crate::engine::events::PluginUsage {
                calls: 1,
                fuel: outcome.fuel_used,
                peak_memory_bytes: outcome.peak_memory_bytes,
            });
        }
        if let Some(log) = &ctx.on_log {
            for line in &outcome.logs {
                log(line.level, &line.message);
            }
            for (stream, text) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    log(stream, line);
                }
            }
        }
        Ok(outcome.output)
    }
}

/// Lists the components of the configured plugin paths.
fn component_files(settings: &PluginSettings, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let default_paths = PluginSettings::default().paths;
    let mut files = Vec::new();
    for path in &settings.paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wasm"))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(_) if default_paths.contains(path) => {}
            Err(e) => warnings.push(format!("plugin path `{}`: {e}", path.display())),
        }
    }
    files
}

/// Finds the plugins of the configured paths and registers their functions
/// in the PROJECT scope. Returns warnings (shadowed names, unreadable
/// plugins): a broken plugin never stops a run that does not call it.
pub async fn register_project_plugins(
    host: &Arc<PluginHost>,
    registry: &mut FunctionRegistry,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in component_files(&host.settings, &mut warnings) {
        match describe_file(host, &file).await {
            Ok((plugin, functions)) => {
                for info in functions {
                    if let Some(first) = seen.get(&info.name) {
                        warnings.push(format!(
                            "function `{}` is offered by `{}` and `{}`; the first is used",
                            info.name,
                            first.display(),
                            file.display()
                        ));
                        continue;
                    }
                    seen.insert(info.name.clone(), file.clone());
                    let function = Arc::new(WasmFunction {
                        plugin: plugin.clone(),
                        info,
                    });
                    if let Some(w) = registry.register(Scope::Project, function) {
                        warnings.push(w);
                    }
                }
            }
            Err(e) => warnings.push(format!("plugin `{}` skipped: {e}", file.display())),
        }
    }
    warnings
}

/// A plugin and its functions, from the metadata cache when possible.
pub async fn describe_file(
    host: &Arc<PluginHost>,
    file: &Path,
) -> Result<(Arc<WasmPlugin>, Vec<FunctionInfo>), PluginError> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let bytes = std::fs::read(file).map_err(|e| PluginError::Load {
        plugin: name.clone(),
        message: format!("cannot read `{}`: {e}", file.display()),
    })?;
    let hash = content_hash(&bytes);
    drop(bytes);
    let plugin = Arc::new(WasmPlugin {
        name: name.clone(),
        path: file.to_path_buf(),
        hash: hash.clone(),
        host: host.clone(),
        loaded: tokio::sync::OnceCell::new(),
    });
    let meta = host
        .settings
        .cache_dir
        .join(format!("{hash}.describe.json"));
    if let Ok(text) = std::fs::read_to_string(&meta) {
        if let Ok(functions) = serde_json::from_str::<Vec<FunctionInfo>>(&text) {
            return Ok((plugin, functions));
        }
    }
    let loaded = plugin.loaded().await?;
    let runtime = host.runtime().map_err(|message| PluginError::Load {
        plugin: name.clone(),
        message,
    })?;
    let functions: Vec<FunctionInfo> = runtime
        .describe(&loaded, &host.limits_for(&name))
        .await?
        .into_iter()
        .map(|f| FunctionInfo {
            name: f.name,
            description: f.description,
            pure: f.pure,
            tags: f.tags,
            input_schema: f.input_schema,
        })
        .collect();
    if let Ok(text) = serde_json::to_string(&functions) {
        let _ = std::fs::create_dir_all(&host.settings.cache_dir);
        let tmp = meta.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &meta);
        }
    }
    Ok((plugin, functions))
}
