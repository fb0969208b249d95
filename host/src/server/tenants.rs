//! Tenants: keys (stored hashed, compared in constant time), their data
//! folders, recipes and uploaded (LOCAL) plugins.

use super::config::TenantSettings;
use crate::plugins::catalog::{describe_file, PluginHost, WasmFunction};
use crate::plugins::registry::Scope;
use crate::plugins::FunctionRegistry;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The folder of a tenant's run files.
const RUNS: &str = "runs";

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key (256 bits) and the config line for it.
pub fn new_key() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "ck_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let line = format!("key_sha256 = [\"{}\"]", sha256_hex(key.as_bytes()));
    (key, line)
}

pub struct Tenant {
    pub settings: TenantSettings,
    /// `data_dir/<id>`: uploads, plugins and run files.
    pub data_dir: PathBuf,
    /// Uploaded plugins (LOCAL scope), replaced whole on each change.
    pub local: RwLock<FunctionRegistry>,
    /// Held while a new run is counted against `concurrent_runs` and
    /// recorded.
    pub admission: Arc<tokio::sync::Mutex<()>>,
    key_hashes: Vec<[u8; 32]>,
}

impl Tenant {
    pub fn new(settings: TenantSettings, data_root: &Path) -> Tenant {
        let key_hashes = settings
            .key_sha256
            .iter()
            .filter_map(|h| decode_hex32(h.trim()))
            .collect();
        Tenant {
            data_dir: data_root.join(&settings.id),
            settings,
            local: RwLock::new(FunctionRegistry::default()),
            admission: Arc::new(tokio::sync::Mutex::new(())),
            key_hashes,
        }
    }

    pub fn id(&self) -> &str {
        &self.settings.id
    }

    /// Constant time in the key's hash: a wrong key takes as long as a
    /// right one, whichever tenant it is tried against.
    pub fn accepts(&self, key_hash: &[u8; 32]) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        for h in &self.key_hashes {
            ok |= h.ct_eq(key_hash);
        }
        ok.into()
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.join(RUNS)
    }

    /// Where this tenant's run files are in the server's blob store.
    pub fn blob_scope(&self) -> String {
        format!("{}/{RUNS}", self.id())
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }

    /// The tenant's recipe files by name (file stem), in folder order.
    pub fn recipe_files(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for dir in &self.settings.recipes {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            files.sort();
            for f in files {
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, f));
                }
            }
        }
        out
    }

    /// The tenant's plugin grants for its runs (None: the process config's).
    pub fn plugin_policy(&self) -> Option<std::sync::Arc<crate::plugins::RunPluginPolicy>> {
        if self.settings.plugin_overrides.is_empty() {
            return None;
        }
        Some(std::sync::Arc::new(crate::plugins::RunPluginPolicy {
            overrides: self.settings.plugin_overrides.clone(),
            secrets: None,
        }))
    }

    /// The tenant's quota caps over every plugin call's limits (and over
    /// `describe` when it uploads a plugin).
    pub fn plugin_caps(&self) -> crate::plugins::limits::LimitCaps {
        let q = &self.settings.quotas;
        crate::plugins::limits::LimitCaps {
            fuel: q.plugin_fuel,
            memory_bytes: q.plugin_memory_bytes,
            timeout_ms: q.plugin_timeout_ms,
        }
    }

    pub fn local_functions(&self) -> FunctionRegistry {
        self.local.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Reads the tenant's plugins again (after an upload or a delete): its
    /// configured `plugins` folders at PROJECT scope, its uploads at LOCAL
    /// scope over them.
    pub async fn reload_plugins(&self, host: &Arc<PluginHost>) -> Vec<String> {
        let mut registry = FunctionRegistry::default();
        let mut warnings = Vec::new();
        let project = self
            .settings
            .plugins
            .iter()
            .flat_map(|dir| wasm_files(dir))
            .map(|f| (Scope::Project, f));
        let uploads = self.plugin_files().into_iter().map(|f| (Scope::Local, f));
        let files: Vec<(Scope, PathBuf)> = project.chain(uploads).collect();
        for (scope, file) in files {
            match describe_file(host, &file).await {
                Ok((plugin, functions)) => {
                    for info in functions {
                        let f = Arc::new(WasmFunction {
                            plugin: plugin.clone(),
                            info,
                        });
                        if let Some(w) = registry.register(scope, f) {
                            warnings.push(w);
                        }
                    }
                }
                Err(e) => warnings.push(format!("plugin `{}` skipped: {e}", file.display())),
            }
        }
        if let Ok(mut local) = self.local.write() {
            *local = registry;
        }
        warnings
    }

    /// The tenant's uploaded components.
    pub fn plugin_files(&self) -> Vec<PathBuf> {
        wasm_files(&self.plugins_dir())
    }
}

/// The `.wasm` files directly inside `dir`, sorted (none if unreadable).
fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    crate::plugins::catalog::wasm_files(dir).unwrap_or_default()
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The key of an `Authorization: Bearer <key>` header, hashed.
pub fn bearer_hash(header: Option<&str>) -> Option<[u8; 32]> {
    let key = header?.strip_prefix("Bearer ")?.trim();
    if key.is_empty() {
        return None;
    }
    decode_hex32(&sha256_hex(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_hash() {
        let (key, line) = new_key();
        let hash = line
            .split('"')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_default();
        let t = Tenant::new(
            TenantSettings {
                id: "a".into(),
                key_sha256: vec![hash],
                ..Default::default()
            },
            Path::new("/tmp"),
        );
        let auth = format!("Bearer {key}");
        assert!(t.accepts(&bearer_hash(Some(&auth)).unwrap_or([0; 32])));
        assert!(!t.accepts(&bearer_hash(Some("Bearer nope")).unwrap_or([0; 32])));
        assert!(bearer_hash(Some("Basic x")).is_none());
        assert!(key.len() >= 32, "at least 128 bits");
    }
}
