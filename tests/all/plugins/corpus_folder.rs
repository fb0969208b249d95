//! The corpus from its own folders on a clean machine (issue 13): after the
//! README's install command (`scripts/build-plugins.sh --install`, into a
//! fresh `$XDG_DATA_HOME`), every corpus recipe validates and runs on the
//! mock models when `composer` is started in the recipe's folder, far from
//! the repository; `news_summary.json` runs end to end there against a
//! fake Perplexity API and mock models, its request counted in `--metrics`
//! and drawn in `--trace`; without the key it stops before any request.

use super::fake_perplexity::{FakePerplexity, KEY};
use super::{bin_with_env, repo, Cli};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CORPUS: &[&str] = &[
    "01_articles/article.json",
    "01_articles/better_article.yaml",
    "02_research/news_summary.json",
    "04_map_reduce_podcast/full_podcast.yaml",
];

/// A clean machine: a home and data folder of its own, the corpus copied
/// outside the repository, the standard plugins installed by the README's
/// command.
struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    data: PathBuf,
    corpus: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

impl Machine {
    fn new() -> Machine {
        super::dist();
        let dir = tempfile::Builder::new()
            .prefix("composer-clean-machine-")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (home, data, corpus) = (root.join("home"), root.join("data"), root.join("corpus"));
        std::fs::create_dir_all(&home).unwrap();
        copy_tree(
            &repo().join("tests").join("fixtures").join("corpus"),
            &corpus,
        );
        let out = Command::new("bash")
            .args(["scripts/build-plugins.sh", "--install"])
            .current_dir(repo())
            .env("XDG_DATA_HOME", &data)
            .output()
            .expect("cannot run scripts/build-plugins.sh");
        assert!(
            out.status.success(),
            "install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let installed = data.join("composer").join("plugins");
        assert!(installed.join("perplexity_search.wasm").is_file());
        assert!(
            !installed.join("hostile.wasm").exists(),
            "test plugins are not installed"
        );
        Machine {
            _dir: dir,
            root,
            home,
            data,
            corpus,
        }
    }

    /// `composer ARGS` in `cwd` with only this machine's home and data.
    fn composer(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Cli {
        let home = self.home.to_string_lossy().into_owned();
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec![
            ("HOME", home.as_str()),
            ("XDG_DATA_HOME", data.as_str()),
            ("COMPOSER_PLUGIN_PATH", ""),
            ("PERPLEXITY_API_KEY", ""),
        ];
        all.extend_from_slice(env);
        bin_with_env(cwd, args, &all)
    }
}

#[test]
fn every_corpus_recipe_validates_from_its_own_folder_after_install() {
    let m = Machine::new();
    for relative in CORPUS {
        let file = m.corpus.join(relative);
        let folder = file.parent().unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let cli = m.composer(folder, &["validate", &name], &[]);
        assert_eq!(cli.code, Some(0), "{relative}:\n{}", cli.describe());
        assert!(
            !cli.stderr.contains("warning:"),
            "{relative}:\n{}",
            cli.describe()
        );
    }
    // And they run there, unchanged, on the mock models (news_summary.json
    // needs its search API: the next test runs it against a fake).
    let runs: [(&str, &[&str], &str); 3] = [
        ("01_articles/article.json", &[], "generate_article"),
        (
            "01_articles/better_article.yaml",
            &["-i", "topic=honey bees"],
            "final_article",
        ),
        (
            "04_map_reduce_podcast/full_podcast.yaml",
            &[],
            "final_podcast_details",
        ),
    ];
    for (relative, inputs, key) in runs {
        let file = m.corpus.join(relative);
        let folder = file.parent().unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = m.root.join("out");
        let mut args = vec![
            "run",
            name.as_str(),
            "--model",
            "mock/echo",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(inputs);
        let cli = m.composer(folder, &args, &[]);
        assert_eq!(cli.code, Some(0), "{relative}:\n{}", cli.describe());
        let outputs: Value = serde_json::from_str(&cli.stdout)
            .unwrap_or_else(|e| panic!("{relative}: {e}\n{}", cli.describe()));
        assert!(
            !outputs[key].is_null(),
            "{relative}: no `{key}` in {outputs}"
        );
    }
}

/// `composer.toml` outside the corpus granting `perplexity_search` the fake.
fn config(m: &Machine, fake: &FakePerplexity) -> PathBuf {
    let file = m.root.join("composer.toml");
    let text = format!(
        "[plugins]\ncache_dir = {cache:?}\n\n\
         [plugins.overrides.perplexity_search]\n\
         allowed_hosts = [{origin:?}]\n\
         secrets = [\"PERPLEXITY_API_KEY\"]\n\
         env = {{ PERPLEXITY_BASE_URL = {base:?} }}\n",
        cache = m.root.join("plugin-cache").to_string_lossy(),
        origin = fake.origin(),
        base = fake.base("ok"),
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn news_summary_runs_end_to_end_from_its_folder_against_the_fake_api() {
    let m = Machine::new();
    let fake = FakePerplexity::start();
    let config = config(&m, &fake);
    let folder = m.corpus.join("02_research");
    let trace = m.root.join("trace.json");
    let out = m.root.join("out");
    let args = [
        "run",
        "news_summary.json",
        "--model",
        "mock/echo",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-i",
        "main_topic=Generative AI",
        "-i",
        "research_instructions=focus on open models",
        "-i",
        "summary_instructions=three bullets",
        "--json",
        "--metrics",
        "--trace",
        trace.to_str().unwrap(),
    ];
    let cli = m.composer(&folder, &args, &[("PERPLEXITY_API_KEY", KEY)]);
    assert_eq!(cli.code, Some(0), "{}", cli.describe());
    let doc: Value =
        serde_json::from_str(&cli.stdout).unwrap_or_else(|e| panic!("{e}: {}", cli.describe()));
    let outputs = &doc["outputs"];
    assert_eq!(
        outputs["fetch_ai_news.citations"],
        serde_json::json!(["https://news.example/one", "https://news.example/two"]),
        "{doc}"
    );
    let summary = outputs["summarize_news"].as_str().unwrap_or_default();
    assert!(
        summary.contains("FAKE NEWS DIGEST for: Please look for the latest news about Generative AI - focus on open models (recency week)"),
        "the summary prompt holds the search result: {summary}"
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "sonar");
    assert_eq!(
        doc["metrics"]["totals"]["http_requests"], 1,
        "{}",
        doc["metrics"]
    );
    assert_eq!(doc["metrics"]["totals"]["http_refused"], 0);

    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let http: Vec<&Value> = events.iter().filter(|e| e["cat"] == "http").collect();
    assert_eq!(http.len(), 1, "{trace}");
    assert_eq!(http[0]["ph"], "X");
    assert_eq!(http[0]["args"]["status"], 200);
    let node = events
        .iter()
        .find(|e| e["cat"] == "node" && e["name"] == "fetch_ai_news")
        .expect("the node's span");
    assert_eq!(http[0]["tid"], node["tid"], "drawn inside its node's span");
    let (start, dur) = (
        http[0]["ts"].as_i64().unwrap(),
        http[0]["dur"].as_i64().unwrap(),
    );
    let (ns, nd) = (node["ts"].as_i64().unwrap(), node["dur"].as_i64().unwrap());
    assert!(start >= ns && start + dur <= ns + nd);
}

#[test]
fn news_summary_without_its_key_stops_before_any_request() {
    let m = Machine::new();
    let fake = FakePerplexity::start();
    let config = config(&m, &fake);
    let folder = m.corpus.join("02_research");
    let args = [
        "run",
        "news_summary.json",
        "--model",
        "mock/echo",
        "--config",
        config.to_str().unwrap(),
        "-i",
        "main_topic=AI",
        "-i",
        "research_instructions=x",
        "-i",
        "summary_instructions=y",
    ];
    let cli = m.composer(&folder, &args, &[]);
    assert_eq!(cli.code, Some(2), "{}", cli.describe());
    assert!(
        cli.stderr.contains("`PERPLEXITY_API_KEY` is not set")
            && cli.stderr.contains("perplexity_search"),
        "{}",
        cli.describe()
    );
    assert!(fake.seen().is_empty());
}
