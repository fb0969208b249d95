//! API keys: from the process environment, else from a `.env` file in the
//! working directory or the recipe's folder. The `.env` values are read,
//! never written into the process environment.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Keys {
    from_files: HashMap<String, String>,
    /// Values given directly (tests, servers holding tenants' keys).
    given: HashMap<String, String>,
    /// Ignore the process environment (tests).
    no_env: bool,
}

impl Keys {
    /// The environment plus `.env` files in `folders` (earlier folders win).
    pub fn load(folders: &[&Path]) -> Keys {
        let mut from_files = HashMap::new();
        for folder in folders {
            let file = folder.join(".env");
            if let Ok(iter) = dotenvy::from_path_iter(&file) {
                for (k, v) in iter.flatten() {
                    from_files.entry(k).or_insert(v);
                }
            }
        }
        Keys {
            from_files,
            given: HashMap::new(),
            no_env: false,
        }
    }

    /// Only these values (no environment, no files).
    pub fn fixed(values: impl IntoIterator<Item = (String, String)>) -> Keys {
        Keys {
            from_files: HashMap::new(),
            given: values.into_iter().collect(),
            no_env: true,
        }
    }

    pub fn get(&self, var: &str) -> Option<String> {
        if var.is_empty() {
            return None;
        }
        if let Some(v) = self.given.get(var) {
            return Some(v.clone());
        }
        if !self.no_env {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    return Some(v);
                }
            }
        }
        self.from_files.get(var).filter(|v| !v.is_empty()).cloned()
    }
}
