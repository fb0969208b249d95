//! A fresh instance per call: hostile `count_calls` counts in a global, and
//! sees 1 every time, one call after another and many at once; a secret
//! one call leaves in its memory is never seen by a later call.

use super::{call_context, hostile_function, limits, project_services, recipe, run, Env};
use composer::plugins::Function;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_each_see_a_fresh_instance() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let f = hostile_function(&host, "count_calls").await;
    let (ctx, _) = call_context(&env.out);
    let mut counts = Vec::new();
    for i in 0..20 {
        let got = f
            .call(json!({ "call": i }), &ctx)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        counts.push(got);
    }
    assert_eq!(counts, vec![json!(1); 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_in_a_map_each_see_a_fresh_instance() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let (services, _) = project_services(&host).await;
    let ran = run(
        services,
        recipe("count_calls_map.yaml"),
        json!({}),
        &env.out,
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    let counts = ran.out("counts").as_array().unwrap();
    assert_eq!(counts, &vec![Value::from(1); 50]);
}

/// The same, with the calls spawned on the runtime's workers directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_calls_each_see_a_fresh_instance() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let f = std::sync::Arc::new(hostile_function(&host, "count_calls").await);
    let (ctx, _) = call_context(&env.out);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (f, ctx) = (f.clone(), ctx.clone());
        tasks.spawn(async move { f.call(json!({ "call": i }), &ctx).await });
    }
    let mut counts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        counts.push(r.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(counts, vec![json!(1); 50]);
}

/// What one call leaves in its memory no later call sees, in the same
/// pool slots (the pooling allocator's data leak between instances,
/// CVE-2022-39393, must not come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_what_an_earlier_call_left_in_memory() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let plant = hostile_function(&host, "plant_secret").await;
    let scan = std::sync::Arc::new(hostile_function(&host, "scan_memory").await);
    let (ctx, _) = call_context(&env.out);
    let secret = format!("tenant-a-api-key-{}-do-not-leak", std::process::id());
    let reversed: String = secret.chars().rev().collect();

    // The scanner finds a secret that is there.
    let own = scan
        .call(json!({"reversed": reversed, "plant": true}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own["found"], true, "{own}");

    for i in 0..8 {
        let planted = plant
            .call(json!({ "secret": secret }), &ctx)
            .await
            .unwrap_or_else(|e| panic!("plant {i}: {e}"));
        assert!(
            planted["planted"].as_u64().unwrap_or(0) > 1 << 20,
            "{planted}"
        );
    }
    for i in 0..16 {
        let seen = scan
            .call(json!({ "reversed": reversed }), &ctx)
            .await
            .unwrap_or_else(|e| panic!("scan {i}: {e}"));
        assert_eq!(
            seen["found"], false,
            "call {i} saw an earlier call's secret"
        );
        assert!(seen["scanned"].as_u64().unwrap_or(0) > 0, "{seen}");
    }
    // And many at once, on whichever slots they get.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (scan, ctx, reversed) = (scan.clone(), ctx.clone(), reversed.clone());
        tasks.spawn(async move { scan.call(json!({ "reversed": reversed }), &ctx).await });
    }
    while let Some(r) = tasks.join_next().await {
        let seen = r.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen["found"], false, "{seen}");
    }
}
