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
            max_parallel_nodes: 256,
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

/// Settings and the warnings found while reading them. Relative paths of
/// the `[plugins]` section are relative to the file's folder.
pub fn load(path: &Path) -> Result<(Settings, Vec<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let (mut settings, warnings) =
        parse(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        settings.plugins.resolve_relative_to(dir);
    }
    Ok((settings, warnings))
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
    settings.plugins.check()?;
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
        let bad_host = "[plugins.overrides.p]\nallowed_hosts = [\"api.example.com\"]\n";
        let e = parse(bad_host).err().unwrap_or_default();
        assert!(
            e.contains("[plugins.overrides.p]") && e.contains("api.example.com"),
            "{e}"
        );
    }

    #[test]
    fn plugin_grants_and_relative_paths() {
        let text = "[plugins]\npaths = [\"dist\", \"/abs\"]\n\
            [plugins.overrides.perplexity_search]\n\
            allowed_hosts = [\"https://api.perplexity.ai\"]\n\
            secrets = [\"PERPLEXITY_API_KEY\"]\n\
            env = { PERPLEXITY_BASE_URL = \"http://127.0.0.1:9\" }\n\
            timeout_ms = 5\n\
            secretz = []\n";
        let (mut s, warnings) = parse(text).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("secretz"));
        let o = &s.plugins.overrides["perplexity_search"];
        assert_eq!(
            o.secrets.as_deref(),
            Some(&["PERPLEXITY_API_KEY".to_string()][..])
        );
        assert_eq!(o.timeout_ms, Some(5));
        s.plugins.resolve_relative_to(Path::new("/etc/composer"));
        assert_eq!(
            s.plugins.paths,
            vec![PathBuf::from("/etc/composer/dist"), PathBuf::from("/abs")]
        );
    }
}
