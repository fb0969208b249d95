//! Function calls are cached only when the function is pure or the node
//! says `cache: true`: native functions with a call counter, and the
//! hostile plugin's pure `echo` against its impure `count_calls`.

use super::{count, Counting, Env, Run};
use crate::plugins::{hostile_wasm, project_services, Env as PluginEnv};
use composer::plugins::catalog::PluginHost;
use composer::plugins::FunctionRegistry;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const TWO_FUNCTIONS: &str = r#"
name: functions
user_inputs:
  - {id: text, type: string}
nodes:
  - {id: p, type: function_task, function_identifier: pure_fn, input: {text: "{{ text }}"}}
  - {id: i, type: function_task, function_identifier: impure_fn, input: {text: "{{ text }}"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pure_native_functions_are_cached_and_impure_ones_are_not() {
    let env = Env::new();
    let (pure, pure_calls) = Counting::make("pure_fn", true);
    let (impure, impure_calls) = Counting::make("impure_fn", false);
    let run = |text: &str| {
        Run::new(&env, TWO_FUNCTIONS)
            .function(pure.clone())
            .function(impure.clone())
            .cache(&env.cache())
            .input("text", text)
            .run()
    };
    let first = run("hello").await;
    let second = run("hello").await;
    assert_eq!(count(&pure_calls), 1, "a pure function was called again");
    assert_eq!(count(&impure_calls), 2, "an impure function was cached");
    assert!(second.cached("p") && !second.cached("i"));
    assert_eq!(second.out("p"), first.out("p"));
    assert_eq!(
        first.out("p"),
        &json!({"input": {"text": "hello"}, "call": 1})
    );
    assert_eq!(second.out("i")["call"], json!(2));
    assert_eq!(env.entries()["function"], 1);

    // Other inputs, other results.
    let other = run("bye").await;
    assert!(!other.cached("p"));
    assert_eq!(count(&pure_calls), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_true_caches_an_impure_function_and_false_a_pure_one_not() {
    let env = Env::new();
    let (pure, pure_calls) = Counting::make("pure_fn", true);
    let (impure, impure_calls) = Counting::make("impure_fn", false);
    let yaml = r#"
name: overridden
nodes:
  - {id: p, type: function_task, function_identifier: pure_fn, input: {x: 1}, cache: false}
  - {id: i, type: function_task, function_identifier: impure_fn, input: {x: 1}, cache: true}
  - {id: t, type: function_task, function_identifier: impure_fn, input: {x: 2}, cache: {ttl: 1h}}
"#;
    let run = || {
        Run::new(&env, yaml)
            .function(pure.clone())
            .function(impure.clone())
            .cache(&env.cache())
            .run()
    };
    run().await;
    let second = run().await;
    assert_eq!(count(&pure_calls), 2, "`cache: false` on a pure function");
    assert_eq!(
        count(&impure_calls),
        2,
        "`cache: true` and `{{ttl}}` on an impure one"
    );
    assert!(!second.cached("p"));
    assert!(second.cached("i") && second.cached("t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_in_the_services_means_every_call_is_made() {
    let env = Env::new();
    let (pure, pure_calls) = Counting::make("pure_fn", true);
    let (impure, _) = Counting::make("impure_fn", false);
    for _ in 0..2 {
        Run::new(&env, TWO_FUNCTIONS)
            .function(pure.clone())
            .function(impure.clone())
            .input("text", "hello")
            .run()
            .await;
    }
    assert_eq!(count(&pure_calls), 2);
    assert!(!env.db.exists(), "nothing opened a database");
}

const PLUGIN_RECIPE: &str = r#"
name: plugin calls
nodes:
  - {id: said, type: function_task, function_identifier: echo, input: {text: "hello"}}
  - {id: counted, type: function_task, function_identifier: count_calls, input: {text: "hello"}}
"#;

/// The functions of the plugins `host` finds.
async fn plugin_functions(host: &Arc<PluginHost>) -> FunctionRegistry {
    let (services, warnings) = project_services(host).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    services.functions
}

async fn run_plugin_recipe(env: &Env, functions: FunctionRegistry) -> super::Ran {
    Run::new(env, PLUGIN_RECIPE)
        .services(|s| s.functions = functions)
        .cache(&env.cache())
        .run()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_pure_echo_is_cached_and_count_calls_is_not() {
    let env = Env::new();
    let plugins = PluginEnv::new();
    let host = PluginHost::new(plugins.settings(vec![hostile_wasm()]));
    let functions = plugin_functions(&host).await;

    let first = run_plugin_recipe(&env, functions.clone()).await;
    let second = run_plugin_recipe(&env, functions).await;
    assert_eq!(second.out("said"), first.out("said"));
    assert_eq!(first.out("said"), &json!({"text": "hello"}));

    let said = second.finished("said");
    assert!(said.cached, "pure `echo` was called again");
    assert_eq!(said.plugin, None, "a cached call used no plugin");
    assert!(first.finished("said").plugin.is_some());

    for ran in [&first, &second] {
        let counted = ran.finished("counted");
        assert!(!counted.cached, "impure `count_calls` was cached");
        assert_eq!(
            counted.plugin.map(|u| u.calls),
            Some(1),
            "one call each run"
        );
    }
    assert_eq!(env.entries()["function"], 1);
}

/// `hostile.wasm` with a custom section appended: still valid, other bytes.
fn changed_bytes(original: &[u8]) -> Vec<u8> {
    let name = b"composer-cache-test";
    let payload = b"v2";
    let content_len = 1 + name.len() + payload.len();
    let mut bytes = original.to_vec();
    bytes.push(0); // custom section
    bytes.push(u8::try_from(content_len).unwrap()); // LEB128, < 128
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_plugin_bytes_miss_and_the_old_bytes_hit_again() {
    let env = Env::new();
    let plugins = PluginEnv::new();
    let original = std::fs::read(hostile_wasm()).unwrap();
    // One path throughout: only the bytes change.
    let file = env.root.join("plugins").join("hostile.wasm");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let install = |bytes: &[u8], file: &Path| std::fs::write(file, bytes).unwrap();
    let functions = |file: &Path| {
        let host = PluginHost::new(plugins.settings(vec![file.to_path_buf()]));
        async move { plugin_functions(&host).await }
    };

    install(&original, &file);
    let first = run_plugin_recipe(&env, functions(&file).await).await;
    assert!(!first.cached("said"));
    assert!(run_plugin_recipe(&env, functions(&file).await)
        .await
        .cached("said"));

    install(&changed_bytes(&original), &file);
    let changed = run_plugin_recipe(&env, functions(&file).await).await;
    assert!(
        !changed.cached("said"),
        "new plugin bytes used an old result"
    );
    assert_eq!(changed.out("said"), first.out("said"));
    assert_eq!(env.entries()["function"], 2);

    install(&original, &file);
    assert!(
        run_plugin_recipe(&env, functions(&file).await)
            .await
            .cached("said"),
        "the original bytes' result is still there"
    );
}
