//! The command line with plugins: `validate` and `run` catch an unknown
//! function before anything runs; `plugin list`, `inspect`, `new` and
//! `build`. Plugin paths come from `composer.toml` in the working folder.

use super::{bin, bin_with_env, dist, fixture, repo, Env};
use composer::plugins::catalog::PluginHost;
use composer::plugins::FunctionRegistry;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The functions of `plugins/dist` (sorted) and their components, in Rust,
/// Python (`text_insights`) and JavaScript (`markup`).
const PROJECT_FUNCTIONS: &[(&str, &str)] = &[
    ("combine_audio_files", "combine_audio_files"),
    ("extract_file_content", "extract_file_content"),
    ("extract_keywords", "text_insights"),
    ("markdown_to_html", "markup"),
    ("outline_markdown", "markup"),
    ("perplexity_search", "perplexity_search"),
    ("prepare_agent_configs", "prepare_agent_configs"),
    (
        "prepare_summaries_for_synthesis",
        "prepare_summaries_for_synthesis",
    ),
    ("score_readability", "text_insights"),
    ("slugify", "markup"),
    ("split_transcript", "split_transcript"),
];

/// A working folder whose `composer.toml` reads `plugins/dist`.
fn project() -> Env {
    let env = Env::new();
    env.write_config(&[dist()]);
    env
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn validate_names_the_closest_function_for_a_typo() {
    let env = project();
    let typo = bin(
        &env.root,
        &[
            "validate".into(),
            path_arg(&fixture("unknown_function.yaml")),
        ],
    );
    assert_eq!(typo.code, Some(1), "{}", typo.describe());
    assert!(
        typo.stderr.contains("did you mean `split_transcript`"),
        "{}",
        typo.describe()
    );
    assert!(
        typo.stderr.contains("split_transcrip"),
        "{}",
        typo.describe()
    );
    // The same folder validates a recipe calling the real name.
    let fine = bin(
        &env.root,
        &["validate".into(), path_arg(&fixture("split.yaml"))],
    );
    assert_eq!(fine.code, Some(0), "{}", fine.describe());
}

#[test]
fn run_with_an_unknown_function_exits_2_before_anything_runs() {
    let env = project();
    let out = bin(
        &env.root,
        &[
            "run".into(),
            path_arg(&fixture("unknown_function.yaml")),
            "--model".into(),
            "mock/echo".into(),
            "--out".into(),
            path_arg(&env.out),
        ],
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("did you mean `split_transcript`"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
    // No run folder: nothing ran.
    assert_eq!(std::fs::read_dir(&env.out).unwrap().count(), 0);
}

#[test]
fn plugin_list_shows_project_functions_with_their_scope() {
    let env = project();
    let out = bin(&env.root, &["plugin", "list"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    for (name, component) in PROJECT_FUNCTIONS {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("`{name}` is not listed\n{}", out.describe()));
        assert!(line.starts_with("project"), "{line}");
        assert!(line.contains(&format!("{component}.wasm")), "{line}");
    }
    // The test-only component lives in a subfolder, which is not read.
    assert!(!out.stdout.contains("loop_forever"), "{}", out.describe());

    let json = bin(&env.root, &["plugin", "list", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.describe());
    let entries: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let mut listed: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["info"]["name"].as_str().unwrap().to_string(),
                e["scope"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let expected: Vec<(String, String)> = PROJECT_FUNCTIONS
        .iter()
        .map(|(n, _)| (n.to_string(), "project".to_string()))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn plugin_inspect_shows_the_functions_size_and_hash() {
    let env = project();
    let file = dist().join("split_transcript.wasm");
    let bytes = std::fs::read(&file).unwrap();
    let hash: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = bin(
        &env.root,
        &["plugin".into(), "inspect".into(), path_arg(&file)],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains(&format!("size    {} bytes", bytes.len())),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains(&format!("sha256  {hash}")),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("split_transcript (pure): Groups"),
        "{}",
        out.describe()
    );
    let exports: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| l.trim() != "exports:")
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(exports, ["describe", "call"], "{}", out.describe());
    // Something that is not a component is an error.
    let junk = env.root.join("junk.wasm");
    std::fs::write(&junk, "junk").unwrap();
    let bad = bin(
        &env.root,
        &["plugin".into(), "inspect".into(), path_arg(&junk)],
    );
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
}

/// `plugin new` then `plugin build` (the one slow test: it compiles a guest
/// crate, reusing the plugins' compiled dependencies), then `inspect`, and
/// a call of the new function.
#[test]
fn plugin_new_and_build_make_a_callable_component() {
    let env = project();
    let dir = env.root.join("word_count");
    let new = bin(
        &env.root,
        &[
            "plugin".into(),
            "new".into(),
            "word_count".into(),
            "--dir".into(),
            path_arg(&dir),
        ],
    );
    assert_eq!(new.code, Some(0), "{}", new.describe());
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"word_count\""), "{manifest}");
    assert!(manifest.contains("composer-plugin-sdk"), "{manifest}");
    assert!(manifest.contains("[workspace]"), "{manifest}");
    // Standalone: the SDK and the WIT come with the plugin, and nothing in
    // it points into composer's source tree.
    assert!(
        manifest.contains(r#"composer-plugin-sdk = { path = "composer-plugin-sdk" }"#),
        "{manifest}"
    );
    for file in ["Cargo.toml", "src/lib.rs", "wit/plugin.wit"] {
        assert!(
            dir.join("composer-plugin-sdk").join(file).is_file(),
            "{file}"
        );
    }
    let source_tree = repo().to_string_lossy().into_owned();
    assert!(!manifest.contains(&source_tree), "{manifest}");
    let lib = std::fs::read_to_string(dir.join("src").join("lib.rs")).unwrap();
    assert!(lib.contains("pub fn word_count("), "{lib}");
    assert!(lib.contains("export!(word_count:"), "{lib}");

    // Names and existing folders are checked.
    let again = bin(
        &env.root,
        &[
            "plugin".into(),
            "new".into(),
            "word_count".into(),
            "--dir".into(),
            path_arg(&dir),
        ],
    );
    assert_eq!(again.code, Some(1), "{}", again.describe());
    let bad = bin(&env.root, &["plugin", "new", "Word-Count"]);
    assert_eq!(bad.code, Some(2), "{}", bad.describe());

    // The plugins' lock file pins the versions already compiled in their
    // target folder (and needs no registry access).
    std::fs::copy(
        repo().join("plugins").join("Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .unwrap();
    let target = repo().join("plugins").join("target");
    let built = bin_with_env(
        &env.root,
        &["plugin".into(), "build".into(), path_arg(&dir)],
        &[("CARGO_TARGET_DIR", &path_arg(&target))],
    );
    assert_eq!(built.code, Some(0), "{}", built.describe());
    let component: PathBuf = built
        .stdout
        .lines()
        .find_map(|l| {
            l.split(" (")
                .next()
                .filter(|p| p.ends_with("word_count.wasm"))
        })
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("the build names no word_count.wasm\n{}", built.describe()));
    assert!(component.is_file(), "{}", component.display());

    let inspected = bin(
        &env.root,
        &["plugin".into(), "inspect".into(), path_arg(&component)],
    );
    assert_eq!(inspected.code, Some(0), "{}", inspected.describe());
    assert!(
        inspected
            .stdout
            .contains("word_count (pure): Counts the words"),
        "{}",
        inspected.describe()
    );

    // Installed, it is found from any folder (the user's plugin folder).
    let data = env.root.join("data");
    let data_arg = path_arg(&data);
    let installed = bin_with_env(
        &env.root,
        &["plugin".into(), "install".into(), path_arg(&component)],
        &[("XDG_DATA_HOME", data_arg.as_str())],
    );
    assert_eq!(installed.code, Some(0), "{}", installed.describe());
    let in_user_folder = data.join("composer/plugins/word_count.wasm");
    assert!(in_user_folder.is_file(), "{}", installed.describe());
    let elsewhere = env.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("count.yaml"),
        "name: count\nnodes:\n  - {id: c, type: function_task, function_identifier: word_count, input: {text: \"a b c d\"}}\n",
    )
    .unwrap();
    let ran = bin_with_env(
        &elsewhere,
        &["run", "count.yaml", "--json", "--out", "out"],
        &[("XDG_DATA_HOME", data_arg.as_str())],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    let outputs: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(outputs["c"]["words"], 4, "{}", ran.describe());
    // Something that is not a component is refused, and nothing installed.
    let junk = env.root.join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let refused = bin_with_env(
        &env.root,
        &["plugin".into(), "install".into(), path_arg(&junk)],
        &[("XDG_DATA_HOME", data_arg.as_str())],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("is not a plugin"),
        "{}",
        refused.describe()
    );
    assert!(!data.join("composer/plugins/junk.wasm").exists());

    // Copied into a plugin folder, it is callable.
    let folder = env.root.join("mine");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&component, folder.join("word_count.wasm")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let words = rt.block_on(async {
        let host = PluginHost::new(env.settings(vec![folder.clone()]));
        let mut registry = FunctionRegistry::default();
        let warnings =
            composer::plugins::catalog::register_project_plugins(&host, &mut registry).await;
        assert!(warnings.is_empty(), "{warnings:?}");
        let (_, f) = registry
            .get("word_count")
            .expect("word_count is registered");
        let (ctx, _) = super::call_context(&env.out);
        f.call(serde_json::json!({"text": "one two  three"}), &ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    });
    assert_eq!(words, serde_json::json!({"words": 3}));
}
