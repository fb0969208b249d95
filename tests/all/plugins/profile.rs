//! `--profile-plugins`: a guest profile per plugin call, while the call's
//! deadline still holds.

use super::{hostile_wasm, Env};
use composer::plugins::runtime::{PluginRuntime, RuntimeSettings};
use composer::plugins::{PluginError, PluginLimits};

fn profiling_runtime(env: &Env, dir: &std::path::Path) -> PluginRuntime {
    PluginRuntime::new(RuntimeSettings {
        max_instances: 2,
        max_memory_bytes: PluginLimits::default().memory_bytes,
        max_table_elements: PluginLimits::default().table_elements,
        cache_dir: Some(env.cache.clone()),
        profile_dir: Some(dir.to_path_buf()),
        reset_in_place: true,
    })
    .expect("the plugin runtime does not start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiled_call_writes_a_profile_and_still_times_out() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let runtime = profiling_runtime(&env, dir.path());
    let loaded = runtime.load("hostile", &hostile_wasm()).unwrap();
    let limits = PluginLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 300,
        ..PluginLimits::default()
    };
    let err = runtime
        .call(&loaded, "loop_forever", "{}", &limits, &[], None)
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(PluginError::Timeout {
                timeout_ms: 300,
                ..
            })
        ),
        "{err:?}"
    );
    // A quick call is profiled too.
    let ok = runtime
        .call(
            &loaded,
            "echo",
            "{\"a\": 1}",
            &PluginLimits::default(),
            &[],
            None,
        )
        .await;
    assert_eq!(ok.map(|o| o.output).ok(), Some(serde_json::json!({"a": 1})));

    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let spin = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hostile-loop_forever-")
        })
        .unwrap_or_else(|| panic!("no profile of loop_forever in {files:?}"));
    let profile: serde_json::Value = serde_json::from_slice(&std::fs::read(spin).unwrap()).unwrap();
    // Firefox profiler format: a `meta` block and threads with samples.
    assert!(profile.get("meta").is_some(), "{profile}");
    let samples = profile
        .pointer("/threads/0/samples/length")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    assert!(
        samples >= 5,
        "a 300 ms spin sampled every 10 ms has samples: {samples}"
    );
}
