//! Per-call limits, as data: defaults in `composer.toml` under
//! `[plugins.limits]`, per-plugin overrides under
//! `[plugins.overrides.<plugin>]` (which also hold the plugin's network and
//! secret grants), and the resource limiter that enforces
//! memory and table limits while recording the peak.

use serde::{Deserialize, Serialize};

/// Upper bounds a tenant's quotas put on every call's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct LimitCaps {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
}

impl PluginLimits {
    /// These limits, lowered to the caps where they are higher.
    pub fn capped(mut self, caps: Option<&LimitCaps>) -> PluginLimits {
        if let Some(c) = caps {
            let low = |v: &mut u64, cap: Option<u64>| {
                if let Some(cap) = cap {
                    *v = (*v).min(cap);
                }
            };
            low(&mut self.fuel, c.fuel);
            low(&mut self.memory_bytes, c.memory_bytes);
            low(&mut self.timeout_ms, c.timeout_ms);
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginLimits {
    /// Fuel (about one unit per WebAssembly instruction) per call,
    /// instantiation included. Instantiating a Python component alone takes
    /// ~125,000 units and a JavaScript one ~1,000,000, so the default leaves
    /// big runtimes room for seconds of real work.
    pub fuel: u64,
    /// Linear memory per call, all memories of the instance together.
    /// 256 MiB holds a Python or JavaScript runtime with room for data.
    pub memory_bytes: u64,
    /// Table elements per table (function pointers). Interpreters need tens
    /// of thousands.
    pub table_elements: u64,
    /// Core instances a component may create (components built by
    /// componentize-py use a few dozen).
    pub instances: u64,
    /// Wall-clock time per call, host calls included.
    pub timeout_ms: u64,
    /// Size of the JSON text a call may return.
    pub max_output_bytes: u64,
    /// Captured stdout, stderr and log text per call; more is dropped (and
    /// the drop is reported).
    pub max_log_bytes: u64,
    /// Outbound HTTP requests one call may make (retries and redirects
    /// count): a plugin stuck in a retry loop is stopped long before the
    /// call's deadline, and a fan-out cannot flood a host.
    pub max_http_requests: u64,
    /// Body of one outbound request (a JSON request to a web API is a few
    /// KB; an upload of a document may be a few MB).
    pub max_http_request_bytes: u64,
    /// Body of one outbound response. The bytes pass through the guest's
    /// linear memory, so this stays well below `memory_bytes`.
    pub max_http_response_bytes: u64,
    /// Time for one outbound request, connection to last body byte; it
    /// never extends past the call's own deadline (`timeout_ms`).
    pub http_timeout_ms: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel: 10_000_000_000,
            memory_bytes: 256 * 1024 * 1024,
            table_elements: 200_000,
            instances: 100,
            timeout_ms: 30_000,
            max_output_bytes: 16 * 1024 * 1024,
            max_log_bytes: 64 * 1024,
            max_http_requests: 100,
            max_http_request_bytes: 4 * 1024 * 1024,
            max_http_response_bytes: 16 * 1024 * 1024,
            http_timeout_ms: 20_000,
        }
    }
}

/// `[plugins.overrides.<plugin>]`: some limits of one plugin, and what it
/// may reach and read (nothing unless granted here). One flat table, so the
/// keys read as the README shows them and unknown keys are still reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub table_elements: Option<u64>,
    pub instances: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_log_bytes: Option<u64>,
    pub max_http_requests: Option<u64>,
    pub max_http_request_bytes: Option<u64>,
    pub max_http_response_bytes: Option<u64>,
    pub http_timeout_ms: Option<u64>,
    /// Origins the plugin may send HTTP requests to: `scheme://host[:port]`,
    /// `*` for any scheme, host or port, `*.example.com` for subdomains
    /// (see `outbound::AllowList`). None or empty: no network at all.
    pub allowed_hosts: Option<Vec<String>>,
    /// Let allowed names resolve to loopback and private addresses (an
    /// intranet service). An entry that is itself such an address or
    /// `localhost` needs no such switch: naming it is the explicit grant.
    pub allow_private_addresses: Option<bool>,
    /// Environment variables the plugin gets, read from the process
    /// environment or a `.env` file; a missing one stops the run before it
    /// starts. The plugin sees no other variable.
    pub secrets: Option<Vec<String>>,
    /// Plain (non-secret) variables given to the plugin, e.g. an API's base
    /// URL.
    pub env: Option<std::collections::BTreeMap<String, String>>,
}

/// The per-plugin override table under its usual name.
pub type PluginOverride = LimitOverrides;

impl LimitOverrides {
    /// These overrides, key by key, over `base`'s.
    pub fn over(&self, base: &LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            fuel: self.fuel.or(base.fuel),
            memory_bytes: self.memory_bytes.or(base.memory_bytes),
            table_elements: self.table_elements.or(base.table_elements),
            instances: self.instances.or(base.instances),
            timeout_ms: self.timeout_ms.or(base.timeout_ms),
            max_output_bytes: self.max_output_bytes.or(base.max_output_bytes),
            max_log_bytes: self.max_log_bytes.or(base.max_log_bytes),
            max_http_requests: self.max_http_requests.or(base.max_http_requests),
            max_http_request_bytes: self.max_http_request_bytes.or(base.max_http_request_bytes),
            max_http_response_bytes: self
                .max_http_response_bytes
                .or(base.max_http_response_bytes),
            http_timeout_ms: self.http_timeout_ms.or(base.http_timeout_ms),
            allowed_hosts: self
                .allowed_hosts
                .clone()
                .or_else(|| base.allowed_hosts.clone()),
            allow_private_addresses: self
                .allow_private_addresses
                .or(base.allow_private_addresses),
            secrets: self.secrets.clone().or_else(|| base.secrets.clone()),
            env: self.env.clone().or_else(|| base.env.clone()),
        }
    }
}

impl PluginLimits {
    pub fn with(&self, o: &LimitOverrides) -> PluginLimits {
        PluginLimits {
            fuel: o.fuel.unwrap_or(self.fuel),
            memory_bytes: o.memory_bytes.unwrap_or(self.memory_bytes),
            table_elements: o.table_elements.unwrap_or(self.table_elements),
            instances: o.instances.unwrap_or(self.instances),
            timeout_ms: o.timeout_ms.unwrap_or(self.timeout_ms),
            max_output_bytes: o.max_output_bytes.unwrap_or(self.max_output_bytes),
            max_log_bytes: o.max_log_bytes.unwrap_or(self.max_log_bytes),
            max_http_requests: o.max_http_requests.unwrap_or(self.max_http_requests),
            max_http_request_bytes: o
                .max_http_request_bytes
                .unwrap_or(self.max_http_request_bytes),
            max_http_response_bytes: o
                .max_http_response_bytes
                .unwrap_or(self.max_http_response_bytes),
            http_timeout_ms: o.http_timeout_ms.unwrap_or(self.http_timeout_ms),
        }
    }
}

/// Which limit the limiter refused, carried as the trap's cause so the call
/// error can be classified without matching on text.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum LimitHit {
    #[error("memory limit of {limit} bytes exceeded (asked for {requested})")]
    Memory { limit: u64, requested: u64 },
    #[error("table limit of {limit} elements exceeded")]
    Table { limit: u64 },
}

/// Enforces memory, table and instance limits for one call's store, and
/// records the peak linear memory.
#[derive(Debug)]
pub struct CallLimiter {
    memory_limit: usize,
    table_limit: usize,
    instances: usize,
    /// Bytes of linear memory currently reserved by all memories together.
    memory_in_use: usize,
    pub peak_memory: usize,
}

impl CallLimiter {
    pub fn new(limits: &PluginLimits) -> Self {
        CallLimiter {
            memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_limit: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            instances: usize::try_from(limits.instances).unwrap_or(usize::MAX),
            memory_in_use: 0,
            peak_memory: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_in_use - current.min(self.memory_in_use) + desired;
        if total > self.memory_limit {
            return Err(wasmtime::Error::new(LimitHit::Memory {
                limit: self.memory_limit as u64,
                requested: total as u64,
            }));
        }
        self.memory_in_use = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_limit {
            return Err(wasmtime::Error::new(LimitHit::Table {
                limit: self.table_limit as u64,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let base = PluginLimits::default();
        let o = LimitOverrides {
            fuel: Some(5),
            ..Default::default()
        };
        let l = base.with(&o);
        assert_eq!(l.fuel, 5);
        assert_eq!(l.memory_bytes, base.memory_bytes);
    }

    #[test]
    fn memory_is_counted_across_grows_and_capped() {
        let mut l = CallLimiter::new(&PluginLimits {
            memory_bytes: 100,
            ..Default::default()
        });
        assert!(l.memory_growing(0, 60, None).is_ok());
        assert!(l.memory_growing(60, 90, None).is_ok());
        assert_eq!(l.peak_memory, 90);
        let err = l.memory_growing(90, 120, None).err();
        assert!(err.is_some_and(|e| e.downcast_ref::<LimitHit>().is_some()));
    }
}
