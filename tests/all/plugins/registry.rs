//! Scopes (LOCAL > PROJECT > CORE), discovery warnings, unknown functions
//! caught before a run, laziness (no engine for a run that calls no
//! plugin) and the compiled-code cache.

use super::{
    call_context, dist, hostile_function, hostile_wasm, limits, project_services, recipe, run, Env,
};
use async_trait::async_trait;
use composer::config::EngineSettings;
use composer::engine::error::RunError;
use composer::engine::run::Services;
use composer::plugins::catalog::{
    describe_file, register_project_plugins, PluginHost, PluginSettings,
};
use composer::plugins::{CallContext, CallError, Function, FunctionInfo, FunctionRegistry, Scope};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The functions of the test plugin `hostile` (`plugins/hostile`).
const HOSTILE_FUNCTIONS: usize = 18;

/// A native function `name` that answers `{"from": <scope>}`.
struct Native {
    name: &'static str,
    from: &'static str,
}

#[async_trait]
impl Function for Native {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.into(),
            description: format!("{} test function", self.from),
            pure: true,
            tags: Vec::new(),
            input_schema: None,
        }
    }

    async fn call(&self, _input: Value, _ctx: &CallContext) -> Result<Value, CallError> {
        Ok(json!({ "from": self.from }))
    }
}

fn native(from: &'static str) -> Arc<dyn Function> {
    Arc::new(Native { name: "echo", from })
}

/// Runs `echo.yaml` with `registry` and returns what `echo` answered.
async fn echo_answer(env: &Env, registry: &FunctionRegistry) -> Value {
    let mut services = Services::new(EngineSettings::default());
    services.functions = registry.clone();
    let ran = run(services, recipe("echo.yaml"), json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    ran.out("said").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_beats_project_beats_core() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let mut registry = FunctionRegistry::default();
    assert!(registry.register(Scope::Core, native("core")).is_none());
    let core_only = registry.clone();

    let warnings = register_project_plugins(&host, &mut registry).await;
    assert_eq!(
        warnings,
        ["function `echo` exists in scopes core and project; the project one is used"]
    );
    let project_and_core = registry.clone();

    let warning = registry.register(Scope::Local, native("local"));
    let warning = warning.expect("shadowing must warn");
    assert!(warning.contains("`echo`"), "{warning}");
    assert!(warning.contains("the local one is used"), "{warning}");
    assert_eq!(registry.get("echo").map(|(s, _)| s), Some(Scope::Local));

    // All three are listed; only LOCAL is active.
    let listed: Vec<(Scope, bool)> = registry
        .list()
        .into_iter()
        .filter(|e| e.info.name == "echo")
        .map(|e| (e.scope, e.active))
        .collect();
    assert_eq!(
        listed,
        [
            (Scope::Local, true),
            (Scope::Project, false),
            (Scope::Core, false)
        ]
    );

    assert_eq!(echo_answer(&env, &registry).await, json!({"from": "local"}));
    // Without LOCAL, the plugin (which echoes its input) wins.
    assert_eq!(
        echo_answer(&env, &project_and_core).await,
        json!({"text": "hello"})
    );
    assert_eq!(echo_answer(&env, &core_only).await, json!({"from": "core"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_wins_whatever_the_registration_order() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let mut registry = FunctionRegistry::default();
    assert!(registry.register(Scope::Local, native("local")).is_none());
    let warnings = register_project_plugins(&host, &mut registry).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("the local one is used"),
        "{warnings:?}"
    );
    assert!(registry.register(Scope::Core, native("core")).is_some());
    assert_eq!(echo_answer(&env, &registry).await, json!({"from": "local"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_function_stops_the_run_before_it_starts() {
    let env = Env::new();
    let host = PluginHost::new(env.settings(vec![dist()]));
    let (services, warnings) = project_services(&host).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    match run(
        services,
        recipe("unknown_function.yaml"),
        json!({}),
        &env.out,
    )
    .await
    {
        Err((not_started, events)) => {
            let RunError::Preflight(problems) = &not_started.0 else {
                panic!("expected a preflight error, got {:?}", not_started.0);
            };
            let message = problems.join("\n");
            assert!(message.contains("`split_transcrip`"), "{message}");
            assert!(
                message.contains("did you mean `split_transcript`"),
                "{message}"
            );
            assert!(events.is_empty(), "events were emitted: {events:?}");
        }
        Ok(ran) => panic!("the run started: {:?}", ran.outcome.error),
    }
    assert_eq!(std::fs::read_dir(&env.out).unwrap().count(), 0);
    assert!(!host.started());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_warns_about_duplicates_and_broken_components() {
    let env = Env::new();
    let folder = env.root.join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(hostile_wasm(), folder.join("a.wasm")).unwrap();
    // The same functions in a different component (a custom section
    // appended: other bytes, other hash) conflict; an identical copy
    // does not.
    let mut other = std::fs::read(hostile_wasm()).unwrap();
    other.extend_from_slice(&[0x00, 0x04, 0x03, b'p', b'a', b'd']);
    std::fs::write(folder.join("b.wasm"), other).unwrap();
    std::fs::copy(hostile_wasm(), folder.join("c.wasm")).unwrap();
    std::fs::write(folder.join("bad.wasm"), "not a component").unwrap();
    std::fs::write(folder.join("notes.txt"), "ignored").unwrap();
    let missing = env.root.join("missing");
    let host = PluginHost::new(env.settings(vec![folder.clone(), missing]));
    let mut registry = FunctionRegistry::default();
    let warnings = register_project_plugins(&host, &mut registry).await;

    let duplicates = warnings.iter().filter(|w| w.contains("b.wasm")).count();
    assert_eq!(duplicates, HOSTILE_FUNCTIONS, "{warnings:#?}");
    assert!(
        !warnings.iter().any(|w| w.contains("c.wasm")),
        "an identical copy is no conflict: {warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("bad.wasm") && w.contains("skipped")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("missing")),
        "{warnings:#?}"
    );
    // Every duplicate, the broken component and the missing folder.
    assert_eq!(warnings.len(), HOSTILE_FUNCTIONS + 2, "{warnings:#?}");
    let (scope, f) = registry.get("echo").expect("echo is registered");
    assert_eq!(scope, Scope::Project);
    assert!(f.origin().contains("a.wasm"), "{}", f.origin());
    assert_eq!(registry.names().count(), HOSTILE_FUNCTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_calls_no_plugin_never_starts_the_engine() {
    let env = Env::new();
    let host = PluginHost::new(env.settings(vec![dist()]));
    // Discovery reads the cached metadata: no engine yet.
    let (services, warnings) = project_services(&host).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(services.functions.get("split_transcript").is_some());
    assert!(!host.started());

    let ran = run(services, recipe("no_functions.yaml"), json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    assert!(ran.out("write").is_string());
    assert!(
        !host.started(),
        "a run without function nodes started the engine"
    );

    // The first call starts it.
    let (services, _) = project_services(&host).await;
    let ran = run(services, recipe("split.yaml"), json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    let phrases = ran.out("split")["phrases"].as_array().unwrap();
    let speakers: Vec<&str> = phrases
        .iter()
        .filter_map(|p| p["speaker"].as_str())
        .collect();
    assert_eq!(speakers, ["Speaker A", "Speaker B"]);
    assert!(host.started());
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache folder's file names, sorted.
fn cache_files(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&env.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_and_metadata_are_cached_by_content_hash() {
    let env = Env::cold();
    let hash = sha256_hex(&std::fs::read(hostile_wasm()).unwrap());
    let settings = || PluginSettings {
        max_instances: 2,
        ..env.settings(vec![hostile_wasm()])
    };

    // First describe: compiles, asks the component, caches both.
    let host = PluginHost::new(settings());
    let (_, functions) = describe_file(&host, &hostile_wasm())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(functions.len(), HOSTILE_FUNCTIONS);
    assert!(host.started());
    let files = cache_files(&env);
    assert_eq!(files.len(), 2, "{files:?}");
    let cwasm = files
        .iter()
        .find(|f| f.ends_with(".cwasm"))
        .unwrap_or_else(|| panic!("no compiled code in {files:?}"))
        .clone();
    let engine = cwasm
        .strip_prefix(&format!("{hash}-"))
        .and_then(|rest| rest.strip_suffix(".cwasm"))
        .unwrap_or_else(|| panic!("`{cwasm}` is not <sha256>-<engine>.cwasm"));
    assert!(
        engine.len() == 16 && engine.chars().all(|c| c.is_ascii_hexdigit()),
        "{cwasm}"
    );
    assert!(
        files.contains(&format!("{hash}.describe.json")),
        "{files:?}"
    );
    let meta: Vec<FunctionInfo> = serde_json::from_str(
        &std::fs::read_to_string(env.cache.join(format!("{hash}.describe.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(meta, functions);

    // A fresh host describes from the metadata alone: no engine, no code.
    std::fs::remove_file(env.cache.join(&cwasm)).unwrap();
    let fresh = PluginHost::new(settings());
    let (_, again) = describe_file(&fresh, &hostile_wasm())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, functions);
    assert!(!fresh.started());
    assert!(
        !env.cache.join(&cwasm).exists(),
        "describe compiled the code"
    );

    // The first call compiles (and caches) the code again.
    let echo = hostile_function(&fresh, "echo").await;
    let (ctx, _) = call_context(&env.out);
    let out = echo
        .call(json!({"cached": true}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, json!({"cached": true}));
    assert!(fresh.started());
    assert!(env.cache.join(&cwasm).is_file());
    assert_eq!(cache_files(&env).len(), 2, "{:?}", cache_files(&env));
}
