//! From plugin folders to registered functions, lazily.
//!
//! Discovery lists the `.wasm` files of the configured folders and learns
//! each one's functions from a metadata file cached by content hash (only a
//! component never seen before is compiled and asked to `describe` itself).
//! The engine starts, and a component's compiled code loads, on the first
//! call: a run that calls no plugin pays nothing for the plugin runtime.

use super::error::PluginError;
use super::limits::{LimitOverrides, PluginLimits};
use super::outbound::{AllowList, HttpPolicy};
use super::registry::{
    CallContext, CallError, Function, FunctionInfo, FunctionRegistry, RunPluginPolicy, Scope,
};
use super::runtime::{content_hash, CallSettings, LoadedComponent, PluginRuntime, RuntimeSettings};
use super::sandbox::Grant;
use crate::providers::keys::Keys;
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
    /// Per-plugin (file stem) limit overrides and grants (`allowed_hosts`,
    /// `secrets`, `env`).
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

impl PluginSettings {
    /// Makes relative paths relative to `dir` (the config file's folder).
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        self.paths.iter_mut().for_each(fix);
        fix(&mut self.cache_dir);
        self.grants.iter_mut().for_each(|g| fix(&mut g.path));
        if let Some(p) = self.profile_dir.as_mut() {
            fix(p);
        }
    }

    /// Values that parse but cannot work (an `allowed_hosts` entry that is
    /// not an origin), named with their table.
    pub fn check(&self) -> Result<(), String> {
        for (plugin, o) in &self.overrides {
            if let Some(hosts) = &o.allowed_hosts {
                AllowList::parse(hosts).map_err(|e| format!("[plugins.overrides.{plugin}] {e}"))?;
            }
        }
        Ok(())
    }
}

/// The plugin runtime of a process, made on first use.
pub struct PluginHost {
    settings: PluginSettings,
    /// Where granted secrets are read from.
    secrets: Keys,
    runtime: OnceLock<Result<Arc<PluginRuntime>, String>>,
}

impl PluginHost {
    /// A host whose plugins' secrets come from the environment or a `.env`
    /// file in the working directory.
    pub fn new(settings: PluginSettings) -> Arc<PluginHost> {
        PluginHost::with_secrets(settings, Keys::load(&[Path::new(".")]))
    }

    /// A host whose plugins' secrets come from `secrets` (the run's keys:
    /// environment, `.env` in the working directory or the recipe's).
    pub fn with_secrets(settings: PluginSettings, secrets: Keys) -> Arc<PluginHost> {
        Arc::new(PluginHost {
            settings,
            secrets,
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
                    reset_in_place: true,
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

    /// The override table of `plugin` in effect for a run: the run's own
    /// (a tenant's), key by key, over the process config's.
    fn override_for(&self, plugin: &str, run: Option<&RunPluginPolicy>) -> LimitOverrides {
        let base = self
            .settings
            .overrides
            .get(plugin)
            .cloned()
            .unwrap_or_default();
        match run.and_then(|r| r.overrides.get(plugin)) {
            Some(top) => top.over(&base),
            None => base,
        }
    }

    fn secrets_for<'a>(&'a self, run: Option<&'a RunPluginPolicy>) -> &'a Keys {
        run.and_then(|r| r.secrets.as_ref())
            .unwrap_or(&self.secrets)
    }

    /// The granted secrets of `plugin` that are not set (checked before a
    /// run starts).
    pub fn missing_secrets(&self, plugin: &str, run: Option<&RunPluginPolicy>) -> Vec<String> {
        let keys = self.secrets_for(run);
        self.override_for(plugin, run)
            .secrets
            .unwrap_or_default()
            .into_iter()
            .filter(|name| keys.get(name).is_none())
            .collect()
    }

    /// The per-call settings of `plugin`: limits, the environment it sees
    /// (its secrets and `env`, nothing else) and its HTTP policy, from
    /// config and the run's own overrides. Folders are added by the caller.
    pub fn call_settings(
        &self,
        plugin: &str,
        run: Option<&RunPluginPolicy>,
    ) -> Result<CallSettings, PluginError> {
        let o = self.override_for(plugin, run);
        let limits = self.settings.limits.with(&o);
        let allowed =
            AllowList::parse(o.allowed_hosts.as_deref().unwrap_or_default()).map_err(|e| {
                PluginError::Sandbox {
                    plugin: plugin.to_string(),
                    message: format!("[plugins.overrides.{plugin}] {e}"),
                }
            })?;
        let keys = self.secrets_for(run);
        let mut env = Vec::new();
        let mut missing = Vec::new();
        for name in o.secrets.iter().flatten() {
            match keys.get(name) {
                Some(value) => env.push((name.clone(), value)),
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(PluginError::MissingSecrets {
                plugin: plugin.to_string(),
                missing,
            });
        }
        for (name, value) in o.env.iter().flatten() {
            if !env.iter().any(|(n, _)| n == name) {
                env.push((name.clone(), value.clone()));
            }
        }
        let http = HttpPolicy {
            plugin: plugin.to_string(),
            allowed,
            allow_private_addresses: o.allow_private_addresses.unwrap_or(false),
            max_requests: limits.max_http_requests,
            max_request_bytes: limits.max_http_request_bytes,
            max_response_bytes: limits.max_http_response_bytes,
            request_timeout: std::time::Duration::from_millis(limits.http_timeout_ms),
        };
        Ok(CallSettings {
            limits,
            grants: Vec::new(),
            opened: None,
            env,
            http: Some(http),
            progress: None,
            on_http: None,
        })
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
    /// The limits its calls run under (from config).
    pub fn limits(&self) -> PluginLimits {
        self.host.limits_for(&self.name)
    }

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

    fn missing_secrets(&self, run: Option<&RunPluginPolicy>) -> Vec<String> {
        self.plugin.host.missing_secrets(&self.plugin.name, run)
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
        let mut settings = plugin
            .host
            .call_settings(&plugin.name, ctx.policy.as_deref())?;
        settings.grants = grants;
        settings.opened = ctx.opened.clone();
        settings.progress = ctx.on_progress.clone();
        settings.on_http = ctx.on_http.clone();
        settings.limits = settings.limits.capped(ctx.caps.as_ref());
        let outcome = runtime
            .call_with(&loaded, &self.info.name, &input, &settings)
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

/// The granted secrets that the functions `recipe` calls need and that are
/// not set, one line per variable naming the functions (for the checks
/// before a run).
pub fn missing_secrets(
    registry: &FunctionRegistry,
    recipe: &crate::recipe::model::Recipe,
    policy: Option<&RunPluginPolicy>,
) -> Vec<String> {
    let mut by_var: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, name) in recipe.functions() {
        let Some((_, f)) = registry.get(&name) else {
            continue;
        };
        for var in f.missing_secrets(policy) {
            let users = by_var.entry(var).or_default();
            if !users.contains(&name) {
                users.push(name.clone());
            }
        }
    }
    by_var
        .into_iter()
        .map(|(var, users)| {
            let users: Vec<String> = users.iter().map(|u| format!("`{u}`")).collect();
            format!(
                "`{var}` is not set; it is a secret granted to function {} (`secrets` in `[plugins.overrides]`); set it in the environment or a .env file",
                users.join(", ")
            )
        })
        .collect()
}

/// The `.wasm` files directly inside `dir`, sorted.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    found.sort();
    Ok(found)
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
        match wasm_files(path) {
            Ok(found) => files.extend(found),
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
    let mut seen: HashMap<String, (PathBuf, String)> = HashMap::new();
    for file in component_files(&host.settings, &mut warnings) {
        match describe_file(host, &file).await {
            Ok((plugin, functions)) => {
                for info in functions {
                    if let Some((first, hash)) = seen.get(&info.name) {
                        // The same component installed in two folders of
                        // the search path is not a conflict.
                        if *hash == plugin.hash {
                            continue;
                        }
                        warnings.push(format!(
                            "function `{}` is offered by `{}` and `{}`; the first is used",
                            info.name,
                            first.display(),
                            file.display()
                        ));
                        continue;
                    }
                    seen.insert(info.name.clone(), (file.clone(), plugin.hash.clone()));
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
    describe_file_capped(host, file, None).await
}

/// `describe_file` with its limits lowered to `caps` (a tenant's quotas):
/// a server checks an uploaded component under the uploader's own caps.
pub async fn describe_file_capped(
    host: &Arc<PluginHost>,
    file: &Path,
    caps: Option<&super::limits::LimitCaps>,
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
        .describe(&loaded, &host.limits_for(&name).capped(caps))
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
