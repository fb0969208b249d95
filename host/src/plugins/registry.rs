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

#[derive(Debug, Clone, serde::Serialize)]
pub struct FunctionInfo {
    pub name: String,
    pub description: String,
    /// Same input, same output, no side effects: results may be cached.
    pub pure: bool,
}

/// What a call may use of its run.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The run's output folder (readable and writable by the call).
    pub out_dir: PathBuf,
    /// Node path, for logs.
    pub node: String,
}

#[async_trait]
pub trait Function: Send + Sync {
    fn info(&self) -> FunctionInfo;
    /// Calls the function with the node's resolved inputs as one JSON object.
    async fn call(
        &self,
        input: serde_json::Value,
        ctx: &CallContext,
    ) -> Result<serde_json::Value, String>;
}

type ScopedFunction = (Scope, Arc<dyn Function>);

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

    pub fn get(&self, name: &str) -> Option<(Scope, Arc<dyn Function>)> {
        self.entries.get(name).and_then(|l| l.last().cloned())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every function with the scope that serves it, by name.
    pub fn list(&self) -> Vec<(Scope, FunctionInfo)> {
        self.entries
            .values()
            .filter_map(|l| l.last())
            .map(|(s, f)| (*s, f.info()))
            .collect()
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
            }
        }
        async fn call(
            &self,
            _: serde_json::Value,
            _: &CallContext,
        ) -> Result<serde_json::Value, String> {
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
