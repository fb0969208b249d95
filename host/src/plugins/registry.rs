//! The function registry: scopes LOCAL > PROJECT > CORE. A name found in two
//! scopes resolves to the higher one; registering the shadowing function
//! returns a warning for the caller to show.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Built into the host (native Rust).
    Core,
    /// `.wasm` components found in the project's plugin folders.
    Project,
    /// Registered at run time (later: uploaded by a tenant).
    Local,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Core => "core",
            Scope::Project => "project",
            Scope::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub description: String,
    /// Same input, same output, no side effects: results may be cached.
    pub pure: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// JSON Schema of the input, as JSON text.
    #[serde(default)]
    pub input_schema: Option<String>,
}

/// A log line handler: (level or stream, message).
pub type LogFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a call may use of its run.
#[derive(Clone)]
pub struct CallContext {
    /// The run's output folder (readable and writable by the call).
    pub out_dir: PathBuf,
    /// Folders the call may read (those of `file` inputs).
    pub read_grants: Vec<PathBuf>,
    /// Those folders opened once for the whole run (None: per call).
    pub opened: Option<Arc<crate::plugins::sandbox::OpenGrants>>,
    /// Node path, for logs.
    pub node: String,
    pub on_log: Option<LogFn>,
    pub on_progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
    /// Told what a plugin call used (fuel, peak memory).
    pub on_usage: Option<Arc<dyn Fn(crate::engine::events::PluginUsage) + Send + Sync>>,
    /// A tenant's caps over the configured limits (never raising them).
    pub caps: Option<crate::plugins::limits::LimitCaps>,
    /// Told of each outbound HTTP request a plugin call made, when it ends.
    pub on_http: Option<crate::plugins::outbound::HttpObserver>,
    /// The run's own plugin grants (hosted mode: the tenant's), over the
    /// process config's; None: the config's alone.
    pub policy: Option<Arc<RunPluginPolicy>>,
}

impl CallContext {
    /// A call that may use `out_dir` and nothing else of a run, reporting
    /// nothing (`composer plugin test`, benches, tests).
    pub fn bare(out_dir: &std::path::Path, node: &str) -> CallContext {
        CallContext {
            out_dir: out_dir.to_path_buf(),
            read_grants: Vec::new(),
            opened: None,
            node: node.to_string(),
            on_log: None,
            on_progress: None,
            on_usage: None,
            caps: None,
            on_http: None,
            policy: None,
        }
    }
}

/// What a run's plugins may reach and read when the run brings its own
/// grants (a tenant's config in hosted mode) instead of the process's.
#[derive(Debug, Clone, Default)]
pub struct RunPluginPolicy {
    /// `[plugins.overrides]` by plugin; each key given replaces the process
    /// config's (so a tenant's `allowed_hosts` is the whole list). The
    /// server is expected to clamp limits it does not let tenants raise.
    pub overrides: BTreeMap<String, crate::plugins::LimitOverrides>,
    /// Where the run's secrets come from (None: the process's).
    pub secrets: Option<crate::providers::keys::Keys>,
}

/// Why a function call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
    #[error("{0}")]
    Message(String),
}

#[async_trait]
pub trait Function: Send + Sync {
    fn info(&self) -> FunctionInfo;
    /// Where the function comes from (a file, "built in"), for listings.
    fn origin(&self) -> String {
        "built in".to_string()
    }
    /// The hash of the code behind the function (a plugin's bytes), part of
    /// its cache keys: new code, new results.
    fn content_hash(&self) -> Option<String> {
        None
    }
    /// The memory one call may use (a plugin's configured limit; None for
    /// host functions), which sizes `max_concurrency: auto` maps.
    fn memory_limit(&self) -> Option<u64> {
        None
    }
    /// Secrets the function is granted that are not set (reported before a
    /// run starts, like missing provider keys).
    fn missing_secrets(&self, _run: Option<&RunPluginPolicy>) -> Vec<String> {
        Vec::new()
    }
    /// Calls the function with the node's resolved inputs as one JSON object.
    async fn call(
        &self,
        input: serde_json::Value,
        ctx: &CallContext,
    ) -> Result<serde_json::Value, CallError>;
}

type ScopedFunction = (Scope, Arc<dyn Function>);

#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistryEntry {
    pub scope: Scope,
    pub info: FunctionInfo,
    pub origin: String,
    /// False when a higher scope shadows this entry.
    pub active: bool,
}

#[derive(Clone, Default)]
pub struct FunctionRegistry {
    /// Each name's entries, highest scope last.
    entries: BTreeMap<String, Vec<ScopedFunction>>,
}

impl FunctionRegistry {
    /// Registers `function` under its name in `scope`. Returns a warning
    /// when it shadows (or is shadowed by) another scope's function.
    pub fn register(&mut self, scope: Scope, function: Arc<dyn Function>) -> Option<String> {
        let name = function.info().name;
        let list = self.entries.entry(name.clone()).or_default();
        list.retain(|(s, _)| *s != scope);
        list.push((scope, function));
        list.sort_by_key(|(s, _)| *s);
        if list.len() > 1 {
            let winner = list.last().map(|(s, _)| s.as_str()).unwrap_or_default();
            let others: Vec<&str> = list[..list.len() - 1]
                .iter()
                .map(|(s, _)| s.as_str())
                .collect();
            return Some(format!(
                "function `{name}` exists in scopes {} and {winner}; the {winner} one is used",
                others.join(", ")
            ));
        }
        None
    }

    /// Adds every function of `other`, in its own scope (a tenant's
    /// uploaded LOCAL functions over the project's).
    pub fn overlay(&mut self, other: &FunctionRegistry) {
        for list in other.entries.values() {
            for (scope, f) in list {
                self.register(*scope, f.clone());
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<(Scope, Arc<dyn Function>)> {
        self.entries.get(name).and_then(|l| l.last().cloned())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every registered function, by name, with its scope and origin;
    /// shadowed entries are listed too (`active` false).
    pub fn list(&self) -> Vec<RegistryEntry> {
        let mut out = Vec::new();
        for list in self.entries.values() {
            for (i, (scope, f)) in list.iter().enumerate().rev() {
                out.push(RegistryEntry {
                    scope: *scope,
                    info: f.info(),
                    origin: f.origin(),
                    active: i + 1 == list.len(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str, &'static str);

    #[async_trait]
    impl Function for Named {
        fn info(&self) -> FunctionInfo {
            FunctionInfo {
                name: self.0.into(),
                description: String::new(),
                pure: true,
                tags: Vec::new(),
                input_schema: None,
            }
        }
        async fn call(
            &self,
            _: serde_json::Value,
            _: &CallContext,
        ) -> Result<serde_json::Value, CallError> {
            Ok(serde_json::Value::String(self.1.into()))
        }
    }

    #[test]
    fn higher_scope_wins_with_a_warning() {
        let mut r = FunctionRegistry::default();
        assert!(r
            .register(Scope::Core, Arc::new(Named("f", "core")))
            .is_none());
        let warning = r.register(Scope::Local, Arc::new(Named("f", "local")));
        assert!(warning.is_some_and(|w| w.contains("local one is used")));
        assert!(r
            .register(Scope::Project, Arc::new(Named("f", "project")))
            .is_some());
        assert_eq!(r.get("f").map(|(s, _)| s), Some(Scope::Local));
    }
}
