//! `[server]`, `[storage]` and `[[tenants]]` in composer.toml (SERVER.md
//! section 2). Keys are stored as SHA-256 hashes only.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub addr: String,
    /// One folder per tenant inside: uploads, plugins, run files.
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    /// When set, `/metrics` needs this bearer token.
    pub metrics_token_sha256: Option<String>,
    /// Runs this process executes at once (all tenants together).
    pub max_running: usize,
    /// How long a worker's claim on a run lasts without renewal.
    pub lease_secs: u64,
    /// On SIGTERM, how long running nodes may take to finish.
    pub grace_secs: u64,
    /// Largest plugin upload.
    pub max_plugin_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".composer/tenants"),
            max_body_bytes: 10 * 1024 * 1024,
            metrics_token_sha256: None,
            max_running: 32,
            lease_secs: 30,
            grace_secs: 30,
            max_plugin_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// `sqlite://PATH` (default: `[cache] path`) or `postgres://...`.
    pub url: Option<String>,
    /// PostgreSQL connections one process keeps open at most.
    pub pool_size: usize,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            url: None,
            pool_size: 16,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    pub id: String,
    /// Hex SHA-256 of each key the tenant may use.
    pub key_sha256: Vec<String>,
    /// Folders of this tenant's recipes.
    pub recipes: Vec<PathBuf>,
    /// PROJECT-scope plugin folders.
    pub plugins: Vec<PathBuf>,
    /// Providers and endpoints the tenant's recipes may call (None: all).
    pub endpoints: Option<Vec<String>>,
    pub quotas: Quotas,
    /// `[tenants.plugin_overrides.NAME]`: what this tenant's plugins may
    /// reach (`allowed_hosts`), which secrets they get, their limits (still
    /// under the quotas' caps); each key given replaces the process
    /// config's `[plugins.overrides.NAME]` key for this tenant's runs.
    pub plugin_overrides: std::collections::BTreeMap<String, crate::plugins::LimitOverrides>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Quotas {
    pub concurrent_runs: Option<u64>,
    pub runs_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub cost_per_day_usd: Option<f64>,
    pub plugin_fuel: Option<u64>,
    pub plugin_memory_bytes: Option<u64>,
    pub plugin_timeout_ms: Option<u64>,
}
