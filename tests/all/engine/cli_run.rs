//! `composer run` end to end through the real binary: corpus recipes with
//! `--model mock/echo --json`, exit codes (0 success, 1 failed run, 2 could
//! not start), `--reply NODE=@file.json`, and mock speech in a map.

use super::{fixtures, temp_dir};
use composer::recipe::model::{Node, NodeKind};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// stdout as the JSON object `--json` prints.
    fn json(&self) -> serde_json::Map<String, Value> {
        match serde_json::from_str(&self.stdout) {
            Ok(Value::Object(m)) => m,
            _ => panic!("stdout is not a JSON object\n{}", self.describe()),
        }
    }
}

/// `composer run RECIPE --out <temp> ARGS...`, from a temporary working
/// folder (so no `composer.toml` is picked up).
fn run(recipe: &Path, args: &[&str], out: &Path) -> Output {
    let out = crate::support::composer_command(out)
        .arg("run")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("cannot run the composer binary");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn corpus() -> PathBuf {
    fixtures().join("..").join("corpus")
}

fn cli(name: &str) -> PathBuf {
    fixtures().join("cli").join(name)
}

/// Corpus recipes that call no function, with the `-i` flags they need,
/// the output keys `--json` must print, and a text one of them must hold.
const NO_FUNCTION_RECIPES: &[(&str, &[&str], &[&str], &str)] = &[
    (
        "01_articles/article.json",
        &[],
        &["generate_article"],
        "article about The future of AI",
    ),
    (
        "01_articles/better_article.yaml",
        &["-i", "topic=honey bees"],
        &["final_article"],
        "article about honey bees",
    ),
];

fn calls_a_function(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match &n.kind {
        NodeKind::FunctionTask { .. } | NodeKind::Reduce { .. } => true,
        NodeKind::Map(spec) => calls_a_function(std::slice::from_ref(&spec.task)),
        NodeKind::Recipe(sub) => calls_a_function(&sub.recipe.nodes),
        _ => false,
    })
}

fn recipe_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "definitions" {
                recipe_files(&path, found);
            }
        } else if (name.ends_with(".yaml") || name.ends_with(".json")) && name != "common.yaml" {
            found.push(path);
        }
    }
}

#[test]
fn the_list_holds_every_corpus_recipe_that_calls_no_function() {
    let root = corpus();
    let mut files = Vec::new();
    recipe_files(&root, &mut files);
    let mut without: Vec<String> = files
        .iter()
        .filter(|p| {
            let loaded = composer::recipe::load_file(p)
                .unwrap_or_else(|f| panic!("{} does not load:\n{f}", p.display()));
            !calls_a_function(&loaded.recipe.nodes)
        })
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    without.sort();
    let listed: Vec<&str> = NO_FUNCTION_RECIPES.iter().map(|r| r.0).collect();
    assert_eq!(without, listed);
}

#[test]
fn corpus_recipes_without_functions_run_end_to_end_offline() {
    for (recipe, inputs, keys, text) in NO_FUNCTION_RECIPES {
        let dir = temp_dir();
        let mut args = vec!["--model", "mock/echo", "--json"];
        args.extend_from_slice(inputs);
        let out = run(&corpus().join(recipe), &args, dir.path());
        assert_eq!(out.code, Some(0), "{recipe}\n{}", out.describe());
        let outputs = out.json();
        let got: Vec<&str> = outputs.keys().map(String::as_str).collect();
        assert_eq!(got, *keys, "{recipe}\n{}", out.describe());
        let value = outputs[keys[0]].as_str().unwrap_or_default();
        assert!(value.contains(text), "{recipe}: {value}");
        assert!(
            out.stderr.contains("mock provider"),
            "the run says its outputs are mock\n{}",
            out.describe()
        );
    }
}

#[test]
fn an_invalid_recipe_exits_2() {
    let dir = temp_dir();
    let out = run(&cli("invalid.yaml"), &["--model", "mock/echo"], dir.path());
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("publsh"), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn bad_inputs_exit_2_before_anything_runs() {
    let dir = temp_dir();
    let out = run(
        &corpus().join("01_articles/article.json"),
        &["--model", "mock/echo", "-i", "tpoic=x"],
        dir.path(),
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("tpoic"), "{}", out.describe());
}

#[test]
fn a_failing_node_exits_1_and_names_the_node() {
    let dir = temp_dir();
    let out = run(&cli("failing.yaml"), &["--json"], dir.path());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("node `breaks` failed"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("injected failure"),
        "{}",
        out.describe()
    );
    // `--json` prints the failure with its kind and node.
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON failure");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "provider", "{v}");
    assert_eq!(v["error"]["node"], "breaks", "{v}");
}

#[test]
fn a_reply_file_answers_a_hitl_node() {
    let dir = temp_dir();
    let reply = format!("approve=@{}", cli("approval_reply.json").display());
    let out = run(
        &cli("approval.yaml"),
        &["--model", "mock/echo", "--json", "--reply", &reply],
        dir.path(),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let outputs = out.json();
    assert_eq!(
        outputs["approve"],
        serde_json::json!({"approved": true, "note": "looks good"})
    );
    assert_eq!(
        outputs["publish"],
        "Published (True): A short post about otters"
    );

    // An inline reply works too; no reply at all fails naming the node.
    let out = run(
        &cli("approval.yaml"),
        &[
            "--model",
            "mock/echo",
            "--json",
            "--reply",
            r#"approve={"approved": false}"#,
        ],
        dir.path(),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(
        out.json()["publish"],
        "Published (False): A short post about otters"
    );
    // No reply at all: the recorded run waits (exit 3), naming the node.
    let out = run(&cli("approval.yaml"), &["--model", "mock/echo"], dir.path());
    assert_eq!(out.code, Some(3), "{}", out.describe());
    assert!(out.stderr.contains("`approve`"), "{}", out.describe());
    assert!(out.stderr.contains("--reply"), "{}", out.describe());
}

#[test]
fn mock_speech_in_a_map_writes_wav_files_60_ms_per_word() {
    let dir = temp_dir();
    let lines = [
        "one",
        "two words",
        "now three words",
        "and finally four words",
    ];
    let script = format!("script={}", lines.join("|"));
    let out = run(
        &cli("speak.yaml"),
        &["--model", "mock/echo", "--json", "-i", &script],
        dir.path(),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let outputs = out.json();
    let files = outputs["audio_files"]
        .as_array()
        .unwrap_or_else(|| panic!("audio_files is not a list\n{}", out.describe()));
    assert_eq!(files.len(), lines.len(), "{}", out.describe());
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let mut durations = Vec::new();
    for (file, line) in files.iter().zip(lines) {
        let path = PathBuf::from(file.as_str().unwrap());
        assert!(
            path.starts_with(&root),
            "{} is inside the run's folder",
            path.display()
        );
        let ms = composer::providers::wav::duration_ms(&path)
            .unwrap_or_else(|e| panic!("{} is not a valid WAV: {e}", path.display()));
        let words = line.split_whitespace().count() as u64;
        assert_eq!(ms, words * 60, "{line:?} -> {}", path.display());
        durations.push(ms);
    }
    assert!(
        durations.windows(2).all(|w| w[0] < w[1]),
        "durations grow with word count: {durations:?}"
    );
    let distinct: std::collections::HashSet<_> = files.iter().collect();
    assert_eq!(distinct.len(), files.len(), "one file per item");
}
