//! The plugin runtime and test components the plugin benches share.

use composer::plugins::runtime::{PluginRuntime, RuntimeSettings};
use composer::plugins::PluginLimits;
use std::path::{Path, PathBuf};

/// `plugins/dist/test/<stem>.wasm`, which `scripts/build-plugins.sh` builds.
pub fn test_component(stem: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist/test")
        .join(format!("{stem}.wasm"));
    assert!(
        p.is_file(),
        "build the plugins first: bash scripts/build-plugins.sh"
    );
    p
}

/// A runtime with the default limits, compiling into `cache` (None: no
/// on-disk cache).
pub fn runtime(cache: Option<PathBuf>) -> PluginRuntime {
    PluginRuntime::new(RuntimeSettings {
        max_instances: 64,
        max_memory_bytes: PluginLimits::default().memory_bytes,
        max_table_elements: PluginLimits::default().table_elements,
        cache_dir: cache,
        profile_dir: None,
    })
    .expect("the plugin runtime starts")
}
