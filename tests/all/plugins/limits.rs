//! Each limit and each hostile behaviour gives its own `PluginError`
//! variant, with a message naming the plugin, the function, the limit and
//! its value; after every failure the same runtime (or host) still serves a
//! good call.

use super::{
    assert_mentions, hostile_function, hostile_wasm, limits, plugin_error, project_services,
    recipe, run, Env, MIB,
};
use composer::engine::error::{NodeError, RunError};
use composer::plugins::runtime::{CallOutcome, LoadedComponent, PluginRuntime, RuntimeSettings};
use composer::plugins::{Function, PluginError, PluginLimits};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A runtime with the hostile component loaded; limits are given per call.
struct Hostile {
    /// Holds the cache folder for as long as the runtime lives.
    _env: Env,
    runtime: PluginRuntime,
    loaded: LoadedComponent,
}

impl Hostile {
    fn new() -> Hostile {
        let env = Env::new();
        let runtime = PluginRuntime::new(RuntimeSettings {
            max_instances: 4,
            max_memory_bytes: PluginLimits::default().memory_bytes,
            max_table_elements: PluginLimits::default().table_elements,
            cache_dir: Some(env.cache.clone()),
            profile_dir: None,
            reset_in_place: true,
        })
        .expect("the plugin runtime does not start");
        let loaded = runtime
            .load("hostile", &hostile_wasm())
            .unwrap_or_else(|e| panic!("{e}"));
        Hostile {
            _env: env,
            runtime,
            loaded,
        }
    }

    async fn call(
        &self,
        function: &str,
        input: Value,
        limits: &PluginLimits,
    ) -> Result<CallOutcome, PluginError> {
        self.runtime
            .call(
                &self.loaded,
                function,
                &input.to_string(),
                limits,
                &[],
                None,
            )
            .await
    }

    async fn fails(&self, function: &str, input: Value, limits: &PluginLimits) -> PluginError {
        match self.call(function, input, limits).await {
            Err(e) => e,
            Ok(o) => panic!("`{function}` should have failed, returned {}", o.output),
        }
    }

    /// The same runtime still runs a good call correctly.
    async fn assert_healthy(&self) {
        let input = json!({"after": "a failure", "list": [1, 2, 3], "text": "héllo"});
        let outcome = self
            .call("echo", input.clone(), &PluginLimits::default())
            .await
            .unwrap_or_else(|e| panic!("echo failed after a failure: {e}"));
        assert_eq!(outcome.output, input);
        assert!(outcome.fuel_used > 0);
        assert!(outcome.peak_memory_bytes > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_runs_out_of_fuel() {
    let h = Hostile::new();
    let fuel = 5_000_000;
    let e = h
        .fails("loop_forever", json!({}), &limits(|l| l.fuel = fuel))
        .await;
    match &e {
        PluginError::FuelExhausted {
            plugin,
            function,
            fuel: f,
        } => assert_eq!(
            (plugin.as_str(), function.as_str(), *f),
            ("hostile", "loop_forever", fuel)
        ),
        other => panic!("expected FuelExhausted, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`loop_forever`", "fuel", "5000000"]);
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_with_unlimited_fuel_meets_the_deadline() {
    let h = Hostile::new();
    let started = Instant::now();
    let e = h
        .fails(
            "loop_forever",
            json!({}),
            &limits(|l| {
                l.fuel = u64::MAX;
                l.timeout_ms = 300;
            }),
        )
        .await;
    let took = started.elapsed();
    match &e {
        PluginError::Timeout {
            plugin,
            function,
            timeout_ms,
        } => assert_eq!(
            (plugin.as_str(), function.as_str(), *timeout_ms),
            ("hostile", "loop_forever", 300)
        ),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`loop_forever`", "timeout_ms", "300 ms"]);
    assert!(
        took >= Duration::from_millis(300),
        "stopped early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stopped late: {took:?}");
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let h = Hostile::new();
    let limit = 32 * MIB;
    let e = h
        .fails(
            "memory_bomb",
            json!({}),
            &limits(|l| l.memory_bytes = limit),
        )
        .await;
    match &e {
        PluginError::MemoryLimit {
            plugin,
            function,
            limit_bytes,
            requested_bytes,
        } => {
            assert_eq!(
                (plugin.as_str(), function.as_str(), *limit_bytes),
                ("hostile", "memory_bomb", limit)
            );
            assert!(*requested_bytes > limit, "{e}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_mentions(
        &e,
        &["`hostile`", "`memory_bomb`", "memory limit", "33554432"],
    );
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps() {
    let h = Hostile::new();
    let e = h
        .fails("recurse", json!({}), &PluginLimits::default())
        .await;
    match &e {
        PluginError::Trapped {
            plugin,
            function,
            reason,
        } => {
            assert_eq!((plugin.as_str(), function.as_str()), ("hostile", "recurse"));
            assert!(reason.contains("stack"), "{reason}");
        }
        other => panic!("expected Trapped, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`recurse`", "crashed"]);
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_output_is_refused_over_max_output_bytes() {
    let h = Hostile::new();
    let e = h
        .fails(
            "huge_output",
            json!({"bytes": 100 * MIB}),
            &limits(|l| l.max_output_bytes = MIB),
        )
        .await;
    match &e {
        PluginError::OutputTooLarge {
            plugin,
            function,
            bytes,
            limit_bytes,
        } => assert_eq!(
            (plugin.as_str(), function.as_str(), *bytes, *limit_bytes),
            ("hostile", "huge_output", 100 * MIB, MIB)
        ),
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    assert_mentions(
        &e,
        &["`hostile`", "`huge_output`", "max_output_bytes", "1048576"],
    );
    // Just under the limit is fine.
    let ok = h
        .call(
            "huge_output",
            json!({"bytes": MIB}),
            &limits(|l| l.max_output_bytes = MIB),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.output.as_str().map(str::len), Some(MIB as usize - 2));
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_with_its_message() {
    let h = Hostile::new();
    let e = h.fails("panic", json!({}), &PluginLimits::default()).await;
    match &e {
        PluginError::Trapped {
            plugin,
            function,
            reason,
        } => {
            assert_eq!((plugin.as_str(), function.as_str()), ("hostile", "panic"));
            assert!(reason.contains("deliberate panic"), "{reason}");
        }
        other => panic!("expected Trapped, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`panic`", "deliberate panic"]);
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_json_is_invalid_output() {
    let h = Hostile::new();
    let e = h
        .fails("invalid_json", json!({}), &PluginLimits::default())
        .await;
    match &e {
        PluginError::InvalidOutput {
            plugin,
            function,
            message,
        } => {
            assert_eq!(
                (plugin.as_str(), function.as_str()),
                ("hostile", "invalid_json")
            );
            assert!(!message.is_empty());
        }
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`invalid_json`", "invalid JSON"]);
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_error_is_failed_with_the_guest_message() {
    let h = Hostile::new();
    let e = h.fails("fail", json!({}), &PluginLimits::default()).await;
    assert_eq!(
        e,
        PluginError::Failed {
            plugin: "hostile".into(),
            function: "fail".into(),
            message: "deliberate failure".into(),
        }
    );
    assert_mentions(&e, &["`hostile`", "`fail`", "deliberate failure"]);
    // A function the component does not have is the guest's error too.
    let e = h
        .fails("no_such", json!({}), &PluginLimits::default())
        .await;
    assert!(
        matches!(&e, PluginError::Failed { message, .. } if message.contains("no_such")),
        "{e:?}"
    );
    h.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_limit_below_the_component_tables_stops_instantiation() {
    let h = Hostile::new();
    let e = h
        .fails("echo", json!({}), &limits(|l| l.table_elements = 1))
        .await;
    match &e {
        PluginError::TableLimit {
            plugin,
            function,
            limit,
        } => assert_eq!(
            (plugin.as_str(), function.as_str(), *limit),
            ("hostile", "echo", 1)
        ),
        other => panic!("expected TableLimit, got {other:?}"),
    }
    assert_mentions(&e, &["`hostile`", "`echo`", "table limit of 1"]);
    h.assert_healthy().await;
}

/// Every behaviour in turn through one host (as the registry calls it):
/// each failure has its variant and the host keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_survives_every_failure_in_turn() {
    let env = Env::new();
    let host = env.hostile_host(limits(|l| {
        l.fuel = 200_000_000;
        l.memory_bytes = 32 * MIB;
        l.max_output_bytes = MIB;
        l.timeout_ms = 10_000;
    }));
    let echo = hostile_function(&host, "echo").await;
    let (ctx, _) = super::call_context(&env.out);
    let cases: &[(&str, Value, &str)] = &[
        ("loop_forever", json!({}), "FuelExhausted"),
        ("memory_bomb", json!({}), "MemoryLimit"),
        ("recurse", json!({}), "Trapped"),
        ("huge_output", json!({"bytes": 2 * MIB}), "OutputTooLarge"),
        ("panic", json!({}), "Trapped"),
        ("invalid_json", json!({}), "InvalidOutput"),
        ("fail", json!({}), "Failed"),
    ];
    for (name, input, variant) in cases {
        let f = hostile_function(&host, name).await;
        let e = plugin_error(f.call(input.clone(), &ctx).await);
        let got = format!("{e:?}");
        assert!(
            got.starts_with(variant),
            "{name}: expected {variant}, got {got}"
        );
        assert_mentions(&e, &["`hostile`", &format!("`{name}`")]);
        let input = json!({"after": name});
        let out = echo
            .call(input.clone(), &ctx)
            .await
            .unwrap_or_else(|e| panic!("echo after {name}: {e}"));
        assert_eq!(out, input);
    }
    drop(env);
}

/// A limit error reaches the run as `NodeError::Plugin` with its variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_error_fails_the_node_with_the_plugin_error() {
    let env = Env::new();
    let host = env.hostile_host(limits(|l| l.fuel = 3_000_000));
    let (services, _) = project_services(&host).await;
    let ran = run(services, recipe("loop_forever.yaml"), json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    match &ran.outcome.error {
        Some(
            e @ RunError::NodeFailed {
                node,
                source: NodeError::Plugin(PluginError::FuelExhausted { fuel, function, .. }),
            },
        ) => {
            assert_eq!(
                (node.as_str(), function.as_str(), *fuel),
                ("spin", "loop_forever", 3_000_000)
            );
            assert_mentions(e, &["`spin`", "`hostile`", "`loop_forever`", "3000000"]);
        }
        other => panic!("expected a FuelExhausted node failure, got {other:?}"),
    }
}
