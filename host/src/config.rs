//! Settings from `composer.toml` (found in the working directory, or given
//! with `--config`). Unknown keys are warnings, not errors, so a file written
//! for a newer composer still works.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub engine: EngineSettings,
    pub plugins: crate::plugins::catalog::PluginSettings,
    pub providers: crate::providers::settings::ProviderSettings,
    pub cache: crate::cache::CacheSettings,
    pub server: crate::server::config::ServerSettings,
    pub storage: crate::server::config::StorageSettings,
    pub tenants: Vec<crate::server::config::TenantSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Nodes running at once in one (sub-)recipe. Nodes mostly wait on I/O,
    /// so this is well above the core count; providers limit themselves.
    pub max_parallel_nodes: usize,
    /// Where runs write their files (each run in its own folder).
    pub output_dir: PathBuf,
    /// Upper bound for `max_concurrency: auto` maps.
    pub map_concurrency: usize,
    /// Accept run inputs the recipe does not declare.
    pub allow_extra_inputs: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_parallel_nodes: 64,
            output_dir: PathBuf::from("output"),
            map_concurrency: 32,
            allow_extra_inputs: false,
        }
    }
}

impl EngineSettings {
    /// `max_concurrency: auto`: the item count, capped by `map_concurrency`.
    /// (The providers issue will also size it from rate limits.)
    pub fn auto_map_concurrency(&self, items: usize) -> usize {
        items.clamp(1, self.map_concurrency.max(1))
    }
}

/// Settings and the warnings found while reading them.
pub fn load(path: &Path) -> Result<(Settings, Vec<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

pub fn parse(text: &str) -> Result<(Settings, Vec<String>), String> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    let settings: Settings = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
        .map_err(|e| e.to_string())?;
    let warnings = unknown
        .into_iter()
        .map(|key| format!("unknown setting `{key}` in composer.toml (ignored)"))
        .collect();
    Ok((settings, warnings))
}

/// `--config FILE`, else `composer.toml` in the working directory if present.
pub fn discover(explicit: Option<&Path>) -> Result<(Settings, Vec<String>), String> {
    match explicit {
        Some(p) => load(p),
        None => {
            let local = Path::new("composer.toml");
            if local.is_file() {
                load(local)
            } else {
                Ok((Settings::default(), Vec::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_warnings() {
        let (s, warnings) =
            parse("[engine]\nmax_parallel_nodes = 3\nmax_paralel = 4\n[other]\nx = 1\n").unwrap();
        assert_eq!(s.engine.max_parallel_nodes, 3);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("engine.max_paralel"));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse("[engine]\nmax_parallel_nodes = \"many\"\n").is_err());
    }
}
