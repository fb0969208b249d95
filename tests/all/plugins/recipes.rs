//! Plugins in runs: a map of 1,000 calls where every tenth traps (and maps
//! whose failing items loop, exhaust memory or panic) keeps the other items
//! in order under `on_error: skip`; the corpus recipes run end to end with
//! `--model mock/echo` and the real plugins.

use super::{bin, corpus, dist, hostile_function, limits, project_services, recipe, run, Env, MIB};
use async_trait::async_trait;
use composer::plugins::{CallContext, CallError, Function, FunctionInfo, Scope};
use composer::providers::wav::duration_ms;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The indices of `n` items whose index does not end in 9, as
/// `{"index": i}` objects.
fn survivors(n: u64) -> Vec<Value> {
    (0..n)
        .filter(|i| i % 10 != 9)
        .map(|i| json!({ "index": i }))
        .collect()
}

/// `(index, item)` of each entry of a map's `<output>_errors`, checking
/// that every error message holds `needle`.
fn failures(errors: &Value, needle: &str) -> Vec<(u64, u64)> {
    errors
        .as_array()
        .expect("`_errors` is a list")
        .iter()
        .map(|e| {
            let message = e["error"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{e}");
            (e["index"].as_u64().unwrap(), e["item"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_with_every_tenth_trapping_keep_the_other_900_in_order() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let (services, _) = project_services(&host).await;
    let ran = run(
        services,
        recipe("trap_every_tenth_map.yaml"),
        json!({}),
        &env.out,
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    let outputs = ran.out("each").as_array().unwrap();
    assert_eq!(outputs.len(), 900);
    assert_eq!(outputs, &survivors(1000));
    let failed = failures(
        ran.out("each_errors"),
        "plugin `hostile`, function `trap_every_tenth`: crashed",
    );
    let expected: Vec<(u64, u64)> = (0..100).map(|k| (k * 10 + 9, k * 10 + 9)).collect();
    assert_eq!(failed, expected);
}

/// `every_tenth`: calls `bad` for indices ending in 9 and `echo` for the
/// others (both plugin functions), passing the call context through.
struct EveryTenth {
    echo: Arc<dyn Function>,
    bad: Arc<dyn Function>,
}

#[async_trait]
impl Function for EveryTenth {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "every_tenth".into(),
            description: "routes every tenth item to a misbehaving plugin function".into(),
            pure: false,
            tags: Vec::new(),
            input_schema: None,
        }
    }

    async fn call(&self, input: Value, ctx: &CallContext) -> Result<Value, CallError> {
        let index = input["index"].as_u64().unwrap_or(0);
        if index % 10 == 9 {
            self.bad.call(json!({}), ctx).await
        } else {
            self.echo.call(input, ctx).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_map_items_are_skipped_and_the_others_finish() {
    // The fuel limit only for the busy loop: zeroing 32 MiB takes more
    // fuel than a bounded loop test should burn.
    let cases = [
        (
            "loop_forever",
            20_000_000,
            "ran out of fuel (limit 20000000 units)",
        ),
        (
            "memory_bomb",
            10_000_000_000,
            "memory limit of 33554432 bytes exceeded",
        ),
        ("panic", 10_000_000_000, "deliberate panic"),
    ];
    for (bad, fuel, needle) in cases {
        let env = Env::new();
        let host = env.hostile_host(limits(|l| {
            l.fuel = fuel;
            l.memory_bytes = 32 * MIB;
        }));
        let (mut services, _) = project_services(&host).await;
        let router = EveryTenth {
            echo: Arc::new(hostile_function(&host, "echo").await),
            bad: Arc::new(hostile_function(&host, bad).await),
        };
        services.functions.register(Scope::Local, Arc::new(router));
        let ran = run(
            services,
            recipe("every_tenth_map.yaml"),
            json!({"items": 50}),
            &env.out,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
        assert_eq!(ran.out("each").as_array().unwrap(), &survivors(50), "{bad}");
        let failed = failures(ran.out("each_errors"), needle);
        let expected: Vec<(u64, u64)> = [9, 19, 29, 39, 49].iter().map(|&i| (i, i)).collect();
        assert_eq!(failed, expected, "{bad}");
        let named = format!("plugin `hostile`, function `{bad}`");
        failures(ran.out("each_errors"), &named);
    }
}

/// Segment WAV files of a podcast run: every `.wav` of the run folder but
/// the combined one.
fn segments(run_dir: &std::path::Path, combined: &std::path::Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav") && p != combined)
        .collect();
    found.sort();
    found
}

#[test]
fn the_podcast_recipe_runs_end_to_end_with_the_plugins() {
    let env = Env::new();
    env.write_config(&[dist()]);
    let recipe = corpus("04_map_reduce_podcast/full_podcast.yaml");
    let out = bin(
        &env.root,
        &[
            "run".as_ref(),
            recipe.as_os_str(),
            "--model".as_ref(),
            "mock/echo".as_ref(),
            "--json".as_ref(),
            "--out".as_ref(),
            env.out.as_os_str(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let outputs: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", out.describe()));
    let details = &outputs["final_podcast_details"];
    let combined = PathBuf::from(
        details["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no combined path in {details}")),
    );
    assert!(combined.is_file(), "{}", combined.display());
    assert_eq!(combined.extension().and_then(|e| e.to_str()), Some("wav"));
    let run_dir = combined.parent().unwrap().to_path_buf();
    assert!(run_dir.starts_with(&env.out), "{}", run_dir.display());

    let parts = segments(&run_dir, &combined);
    let phrases = outputs["transcription_phrases_result"]["phrases"]
        .as_array()
        .expect("the phrases are in the outputs");
    assert!(phrases.len() >= 4, "{phrases:?}");
    assert_eq!(parts.len(), phrases.len(), "{parts:?}");
    assert_eq!(details["segments"].as_u64(), Some(parts.len() as u64));
    let sum: u64 = parts.iter().map(|p| duration_ms(p).unwrap()).sum();
    let total = duration_ms(&combined).unwrap();
    assert!(sum > 0);
    assert!(
        total.abs_diff(sum) <= parts.len() as u64,
        "combined {total} ms, segments {sum} ms"
    );
    assert!(out.stderr.contains("mock provider"), "{}", out.describe());
}

#[test]
fn the_article_recipes_still_run_with_plugins_configured() {
    let env = Env::new();
    env.write_config(&[dist()]);
    let cases: [(&str, &[&str], &str); 2] = [
        ("01_articles/article.json", &[], "generate_article"),
        (
            "01_articles/better_article.yaml",
            &["-i", "topic=honey bees"],
            "final_article",
        ),
    ];
    for (file, inputs, key) in cases {
        let recipe = corpus(file);
        let mut args = vec![
            "run".to_string(),
            recipe.to_string_lossy().into_owned(),
            "--model".into(),
            "mock/echo".into(),
            "--json".into(),
            "--out".into(),
            env.out.to_string_lossy().into_owned(),
        ];
        args.extend(inputs.iter().map(|s| s.to_string()));
        let out = bin(&env.root, &args);
        assert_eq!(out.code, Some(0), "{file}\n{}", out.describe());
        let outputs: Value = serde_json::from_str(&out.stdout).unwrap();
        assert!(outputs[key].is_string(), "{file}: {outputs}");
    }
}
