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
    runtime_with(cache, true)
}

/// The same, choosing how finished instances' memory is reset
/// (`RuntimeSettings::reset_in_place`).
pub fn runtime_with(cache: Option<PathBuf>, reset_in_place: bool) -> PluginRuntime {
    PluginRuntime::new(RuntimeSettings {
        max_instances: 64,
        max_memory_bytes: PluginLimits::default().memory_bytes,
        max_table_elements: PluginLimits::default().table_elements,
        cache_dir: cache,
        profile_dir: None,
        reset_in_place,
    })
    .expect("the plugin runtime starts")
}

/// Runs `recipe` once with `services`, writing into `out`; panics if the
/// run fails.
pub fn run_ok(
    rt: &tokio::runtime::Runtime,
    services: &std::sync::Arc<composer::engine::run::Services>,
    recipe: &std::sync::Arc<composer::recipe::Recipe>,
    out: &Path,
) {
    let request = composer::engine::runner::RunRequest {
        recipe: recipe.clone(),
        inputs: Default::default(),
        model_override: None,
        out_root: out.to_path_buf(),
        replies: Default::default(),
        events: std::sync::Arc::new(composer::engine::events::NoEvents),
        allow_extra_inputs: false,
        cache_mode: Default::default(),
    };
    let outcome = rt
        .block_on(composer::engine::runner::run_recipe(
            services.clone(),
            request,
        ))
        .expect("the run starts");
    assert!(outcome.success(), "{:?}", outcome.error);
}
