//! Plugins written in Python (componentize-py) and JavaScript
//! (componentize-js), through the same host as Rust ones: the example
//! functions, the examples' own tests (`composer plugin test`, reusing the
//! components `scripts/build-plugins.sh` made because the source hashes
//! agree), hostile guests in both languages stopped or reported exactly
//! like the Rust one (and the host staying up), fresh instances, a
//! 200-item map over a Python function, and the three-language recipe.

use super::{assert_mentions, bin_with_env, call_context, dist, limits, repo, run, Env, MIB};
use async_trait::async_trait;
use composer::plugins::catalog::{
    describe_file, register_project_plugins, PluginHost, WasmFunction,
};
use composer::plugins::runtime::{CallOutcome, LoadedComponent, PluginRuntime, RuntimeSettings};
use composer::plugins::{
    CallContext, CallError, Function, FunctionInfo, PluginError, PluginLimits, Scope,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hostile guests: (component name, function that raises or throws,
/// the error text it gives).
const HOSTILE: &[(&str, &str, &str)] = &[
    (
        "hostile_py",
        "raise_error",
        "ValueError: deliberate failure",
    ),
    ("hostile_js", "throw_error", "TypeError: deliberate failure"),
];

fn hostile_component(name: &str) -> PathBuf {
    dist().join("test").join(format!("{name}.wasm"))
}

/// A runtime with one component loaded; limits are given per call.
struct Guest {
    _env: Env,
    runtime: PluginRuntime,
    loaded: LoadedComponent,
}

impl Guest {
    fn new(name: &str, file: &Path) -> Guest {
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
        let loaded = runtime.load(name, file).unwrap_or_else(|e| panic!("{e}"));
        Guest {
            _env: env,
            runtime,
            loaded,
        }
    }

    fn hostile(name: &str) -> Guest {
        Guest::new(name, &hostile_component(name))
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

/// One function of a component, as the registry would hold it.
async fn function_of(host: &Arc<PluginHost>, file: &Path, name: &str) -> WasmFunction {
    let (plugin, functions) = describe_file(host, file)
        .await
        .unwrap_or_else(|e| panic!("cannot describe {}: {e}", file.display()));
    let info = functions
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{} has no function `{name}`", file.display()));
    WasmFunction { plugin, info }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_scores_readability_and_extracts_keywords() {
    let env = Env::new();
    let file = dist().join("text_insights.wasm");
    let host = PluginHost::new(env.settings(vec![file.clone()]));
    let (ctx, logs) = call_context(&env.out);

    let score = function_of(&host, &file, "score_readability").await;
    assert!(score.info.pure);
    assert_eq!(score.info.tags, ["text", "readability"]);
    let schema: Value = serde_json::from_str(score.info.input_schema.as_deref().unwrap()).unwrap();
    assert_eq!(schema["required"], json!(["text"]));
    let easy = score
        .call(
            json!({"text": "The cat sat on the mat. It was happy!"}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(easy["words"], 9);
    assert_eq!(easy["sentences"], 2);
    assert_eq!(easy["level"], "very easy");
    let hard = score
        .call(
            json!({"text": "Notwithstanding considerable institutional opposition, the committee unanimously ratified the comprehensive environmental legislation."}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        hard["flesch_reading_ease"].as_f64() < easy["flesch_reading_ease"].as_f64(),
        "{hard} vs {easy}"
    );
    // The SDK's log line reached the host.
    let logged = logs.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|(level, m)| level == "debug" && m.contains("9 words, 2 sentences")),
        "{logged:?}"
    );
    // A raised PluginError is the call's error, word for word.
    let e = super::plugin_error(score.call(json!({"text": "?!"}), &ctx).await);
    assert_eq!(
        e,
        PluginError::Failed {
            plugin: "text_insights".into(),
            function: "score_readability".into(),
            message: "`text` has no words to score".into(),
        }
    );

    let keywords = function_of(&host, &file, "extract_keywords").await;
    let got = keywords
        .call(
            json!({"text": "Jitter spreads retries. Retries with jitter avoid retry storms; jitter is cheap.", "top": 2}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got["keywords"],
        json!([
            {"term": "jitter", "count": 3, "score": 25.0},
            {"term": "retries", "count": 2, "score": 16.67}
        ])
    );
    // The input schema is checked before the function runs.
    let e = super::plugin_error(keywords.call(json!({"text": "x", "top": "5"}), &ctx).await);
    assert_mentions(
        &e,
        &[
            "`extract_keywords`",
            "`input.top` must be integer, got string",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_example_renders_markdown_slugs_and_outlines() {
    let env = Env::new();
    let file = dist().join("markup.wasm");
    let host = PluginHost::new(env.settings(vec![file.clone()]));
    let (ctx, _) = call_context(&env.out);

    let html = function_of(&host, &file, "markdown_to_html").await;
    let got = html
        .call(
            json!({"markdown": "# Café notes\n\nSome **bold** <b>raw</b> text.\n\n- a\n- b"}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got["html"],
        "<h1 id=\"cafe-notes\">Café notes</h1>\n<p>Some <strong>bold</strong> &lt;b&gt;raw&lt;/b&gt; text.</p>\n<ul><li>a</li><li>b</li></ul>"
    );
    assert_eq!(got["headings"], 1);

    let slug = function_of(&host, &file, "slugify").await;
    let got = slug
        .call(
            json!({"texts": ["Rate Limits 101", "Ünïcode & more"]}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!({"slugs": ["rate-limits-101", "unicode-more"]}));
    let e = super::plugin_error(slug.call(json!({"separator": "/"}), &ctx).await);
    assert_mentions(&e, &["`slugify`", "`input.separator` must be one of"]);

    // An async function: its Promise is awaited.
    let outline = function_of(&host, &file, "outline_markdown").await;
    let got = outline
        .call(
            json!({"markdown": "# A\n## B\n## C\n### D", "max_level": 2}),
            &ctx,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got["count"], 3);
    assert_eq!(got["toc"], "- [A](#a)\n  - [B](#b)\n  - [C](#c)");
    assert_eq!(got["outline"][0]["children"][1]["slug"], "c");
}

/// Copies a plugin folder and its built component (with the stored source
/// hash) into `into`, as if it had been built there.
fn copy_built_plugin(name: &str, component: &str, into: &Path) -> PathBuf {
    let from = repo().join("plugins").join(name);
    let to = into.join(name);
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    let built = dist().join(component);
    let folder = built.parent().unwrap();
    let stem = built.file_stem().unwrap().to_string_lossy().into_owned();
    let out = to.join("dist");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&built, out.join(format!("{stem}.wasm"))).unwrap();
    let stamp = format!(".{stem}.source-hash");
    std::fs::copy(folder.join(&stamp), out.join(&stamp)).unwrap();
    to
}

#[test]
fn the_examples_pass_their_own_tests_with_the_components_the_script_built() {
    let env = Env::new();
    env.write_config(&[]);
    // No build tools at all: a rebuild would fail, so passing proves the
    // hash the script stored is the one `composer plugin build` computes.
    let no_tools = env.root.join("no-tools");
    let cases = [
        ("text_insights", "text_insights.wasm", 6),
        ("markup", "markup.wasm", 6),
        ("hostile_py", "test/hostile_py.wasm", 3),
        ("hostile_js", "test/hostile_js.wasm", 4),
    ];
    for (name, component, count) in cases {
        let dir = copy_built_plugin(name, component, &env.root);
        let out = bin_with_env(
            &env.root,
            &["plugin".as_ref(), "test".as_ref(), dir.as_os_str()],
            &[("COMPOSER_TOOLS_DIR", &no_tools.to_string_lossy())],
        );
        assert_eq!(out.code, Some(0), "{name}\n{}", out.describe());
        assert!(
            out.stdout
                .contains(&format!("{name}: {count} passed, 0 failed")),
            "{}",
            out.describe()
        );
        assert!(!no_tools.exists(), "{name} was rebuilt");
        // `plugin build` says the same.
        let build = bin_with_env(
            &env.root,
            &["plugin".as_ref(), "build".as_ref(), dir.as_os_str()],
            &[("COMPOSER_TOOLS_DIR", &no_tools.to_string_lossy())],
        );
        assert_eq!(build.code, Some(0), "{}", build.describe());
        assert!(build.stdout.contains("up to date"), "{}", build.describe());
    }
    // A failing case fails the command and says why.
    let dir = env.root.join("markup");
    let tests = dir.join("tests.json");
    std::fs::write(
        &tests,
        r#"[{"name": "wrong on purpose", "function": "slugify", "input": {"text": "A b"}, "output": {"slug": "a_b"}}]"#,
    )
    .unwrap();
    let out = bin_with_env(
        &env.root,
        &["plugin".as_ref(), "test".as_ref(), dir.as_os_str()],
        &[("COMPOSER_TOOLS_DIR", &no_tools.to_string_lossy())],
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains(
            "FAIL  wrong on purpose: expected output {\"slug\":\"a_b\"}, got {\"slug\":\"a-b\"}"
        ),
        "{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loops_run_out_of_fuel_or_meet_the_deadline() {
    for (name, _, _) in HOSTILE {
        let g = Guest::hostile(name);
        let fuel = 200_000_000;
        let e = g
            .fails("loop_forever", json!({}), &limits(|l| l.fuel = fuel))
            .await;
        assert_eq!(
            e,
            PluginError::FuelExhausted {
                plugin: name.to_string(),
                function: "loop_forever".into(),
                fuel,
            }
        );
        assert_mentions(&e, &[name, "`loop_forever`", "fuel", "200000000"]);
        g.assert_healthy().await;

        let started = Instant::now();
        let e = g
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
        assert_eq!(
            e,
            PluginError::Timeout {
                plugin: name.to_string(),
                function: "loop_forever".into(),
                timeout_ms: 300,
            }
        );
        assert!(took >= Duration::from_millis(300), "{name}: {took:?}");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        g.assert_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_hit_the_memory_limit() {
    for (name, _, _) in HOSTILE {
        let g = Guest::hostile(name);
        let limit = 96 * MIB;
        let e = g
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
                    (*name, "memory_bomb", limit)
                );
                assert!(*requested_bytes > limit);
            }
            other => panic!("{name}: expected MemoryLimit, got {other:?}"),
        }
        assert_mentions(
            &e,
            &[name, "`memory_bomb`", "memory limit of 100663296 bytes"],
        );
        g.assert_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_throws_are_error_results_with_their_message() {
    for (name, raises, says) in HOSTILE {
        let g = Guest::hostile(name);
        let e = g.fails(raises, json!({}), &PluginLimits::default()).await;
        match &e {
            PluginError::Failed {
                plugin,
                function,
                message,
            } => {
                assert_eq!((plugin.as_str(), function.as_str()), (*name, *raises));
                assert!(message.starts_with(says), "{message}");
                // Where in the plugin's own code it happened.
                let file = if name.ends_with("py") {
                    "hostile.py:"
                } else {
                    "hostile.js:"
                };
                assert!(message.contains(file), "{message}");
            }
            other => panic!("{name}: expected Failed, got {other:?}"),
        }
        // A PluginError's message is the error, as is.
        let e = g
            .fails("plugin_error", json!({}), &PluginLimits::default())
            .await;
        assert_eq!(
            e,
            PluginError::Failed {
                plugin: name.to_string(),
                function: "plugin_error".into(),
                message: "a message for the recipe author".into(),
            }
        );
        // Unknown functions and bad input are the guest's errors too.
        let e = g
            .fails("no_such", json!({}), &PluginLimits::default())
            .await;
        assert_mentions(&e, &["unknown function `no_such`", "echo"]);
        g.assert_healthy().await;
    }
    // A rejected Promise of an async function, likewise.
    let g = Guest::hostile("hostile_js");
    let e = g.fails("reject", json!({}), &PluginLimits::default()).await;
    assert!(
        matches!(&e, PluginError::Failed { message, .. } if message.starts_with("RangeError: deliberate rejection")),
        "{e:?}"
    );
    g.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_json_is_invalid_output() {
    for (name, _, _) in HOSTILE {
        let g = Guest::hostile(name);
        let e = g
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
                    (*name, "invalid_json")
                );
                // `"\ud800"`: an escape that starts a pair and ends it.
                assert!(message.contains("hex escape"), "{message}");
            }
            other => panic!("{name}: expected InvalidOutput, got {other:?}"),
        }
        assert_mentions(&e, &[name, "`invalid_json`", "invalid JSON"]);
        g.assert_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_stdout_flood_completes_with_its_output_capped() {
    for (name, _, _) in HOSTILE {
        let cap = 4096u64;
        let g = Guest::hostile(name);
        let outcome = g
            .call(
                "stdout_flood",
                json!({"mib": 100}),
                &limits(|l| l.max_log_bytes = cap),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.output, json!({"ok": true}));
        let (kept, note) = outcome
            .stdout
            .split_once("\n[")
            .unwrap_or_else(|| panic!("{name}: no drop note in {} bytes", outcome.stdout.len()));
        assert!(
            !kept.is_empty() && kept.len() as u64 <= cap,
            "{name}: {} bytes",
            kept.len()
        );
        assert!(note.contains("more bytes dropped"), "{note}");
        let dropped: u64 = note.split_whitespace().next().unwrap().parse().unwrap();
        assert!(dropped >= 100 * MIB - cap, "{name}: {dropped} dropped");
        g.assert_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_a_fresh_python_or_javascript_instance() {
    for (name, _, _) in HOSTILE {
        let env = Env::new();
        let host = PluginHost::new(env.settings(vec![hostile_component(name)]));
        let f = function_of(&host, &hostile_component(name), "count_calls").await;
        let (ctx, _) = call_context(&env.out);
        for _ in 0..3 {
            let got = f
                .call(json!({}), &ctx)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, json!(1), "{name}");
        }
    }
}

/// Counts the calls in flight of the function it wraps.
struct Tracked {
    inner: WasmFunction,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait]
impl Function for Tracked {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "tracked_echo".into(),
            ..self.inner.info.clone()
        }
    }

    async fn call(&self, input: Value, ctx: &CallContext) -> Result<Value, CallError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let result = self.inner.call(input, ctx).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_item_map_over_a_python_function_runs_in_parallel_in_order() {
    let env = Env::new();
    let file = hostile_component("hostile_py");
    let host = PluginHost::new(env.settings(vec![file.clone()]));
    let mut services = composer::engine::run::Services::new(Default::default());
    let warnings = register_project_plugins(&host, &mut services.functions).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let tracked = Arc::new(Tracked {
        inner: function_of(&host, &file, "echo").await,
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    services.functions.register(Scope::Local, tracked.clone());
    let recipe = crate::support::load_yaml(
        r#"
name: python map
nodes:
  - id: each
    type: map
    over: "{{ range(200) | list }}"
    max_concurrency: 16
    task:
      type: function_task
      function_identifier: tracked_echo
      input:
        index: "{{ item }}"
        label: "item {{ item }}"
"#,
        &env.root,
    );
    let started = Instant::now();
    let ran = run(services, recipe, json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    let took = started.elapsed();
    let expected: Vec<Value> = (0..200)
        .map(|i| json!({"index": i, "label": format!("item {i}")}))
        .collect();
    assert_eq!(ran.out("each").as_array().unwrap(), &expected);
    let peak = tracked.peak.load(Ordering::SeqCst);
    assert!(peak > 1, "the items ran one at a time");
    assert!(peak <= 16, "{peak} calls at once over max_concurrency 16");
    eprintln!("200 Python calls: {took:?}, up to {peak} at once");
}

#[test]
fn the_three_language_recipe_runs_end_to_end() {
    let env = Env::new();
    env.write_config(&[dist()]);
    let recipe = repo().join("recipes").join("publishing_kit.yaml");
    for model in [&["--model", "mock/echo"][..], &[][..]] {
        let mut args: Vec<String> = vec![
            "run".into(),
            recipe.to_string_lossy().into_owned(),
            "--json".into(),
            "--out".into(),
            env.out.to_string_lossy().into_owned(),
            "-i".into(),
            "topic=Rate limits, explained!".into(),
        ];
        args.extend(model.iter().map(|s| s.to_string()));
        let out = bin_with_env(&env.root, &args, &[]);
        assert_eq!(out.code, Some(0), "{model:?}\n{}", out.describe());
        let outputs: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", out.describe()));
        // JavaScript: the slug and the page.
        assert_eq!(outputs["slug"], "rate-limits-explained", "{outputs}");
        let html = outputs["html"].as_str().unwrap_or_default();
        assert!(html.contains("<h2 id="), "{model:?}: {html}");
        assert!(outputs["table_of_contents"]
            .as_str()
            .is_some_and(|t| t.contains("](#")));
        // Python: the scores and keywords of the draft.
        assert!(outputs["reading_ease"].is_number(), "{outputs}");
        assert!(outputs["reading_level"].is_string(), "{outputs}");
        assert!(
            outputs["keywords"]
                .as_array()
                .is_some_and(|k| !k.is_empty() && k.len() <= 5),
            "{outputs}"
        );
        // Rust: the three notes, gathered.
        assert_eq!(outputs["notes_gathered"], 3, "{outputs}");
    }
}
