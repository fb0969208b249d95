//! The `composer` binary: `validate`, `graph` and `inputs`, their exit codes
//! (0 success, 1 invalid recipe, 2 usage) and what they print.

use crate::support::{self, composer};
use serde_json::Value;

fn path_arg(relative: &str) -> String {
    support::fixture(relative).display().to_string()
}

// The corpus recipes used with `validate` here name no functions: whether a
// function is provided depends on the plugins a project has, not on the
// recipe (corpus.rs checks every corpus recipe through the library).
#[test]
fn validate_accepts_a_corpus_recipe() {
    let recipe = support::corpus("01_articles/better_article.yaml");
    let out = composer(["validate".as_ref(), recipe.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stderr
            .contains("valid (2 nodes, 1 edges, 0 loops, 0 warnings)"),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("error["), "{}", out.describe());
}

#[test]
fn validate_checks_every_file_given() {
    let out = composer([
        "validate".to_string(),
        support::corpus("01_articles/article.json")
            .display()
            .to_string(),
        support::corpus("01_articles/better_article.yaml")
            .display()
            .to_string(),
        path_arg("invalid/unknown_node_type/recipe.yaml"),
    ]);
    assert_eq!(out.code, Some(1), "one invalid file fails the command");
    assert!(
        out.stderr.contains("article.json: valid"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("better_article.yaml: valid"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("recipe.yaml: invalid (1 errors)"),
        "{}",
        out.describe()
    );
}

#[test]
fn validate_reports_errors_with_file_and_line() {
    let recipe = path_arg("invalid/unknown_node_type/recipe.yaml");
    let out = composer(["validate", recipe.as_str()]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains("error[unknown-node-type]: unknown node type `langauge_task`"),
        "{}",
        out.describe()
    );
    // `file:line:column at `path``
    assert!(
        out.stderr
            .contains(&format!("{recipe}:8:11 at `nodes[1].type`")),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("hint: did you mean `language_task`?"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn validate_json_output_is_machine_readable() {
    let recipe = path_arg("invalid/edge_unknown_node/recipe.yaml");
    let out = composer(["validate", "--json", recipe.as_str()]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let reports: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.describe()));
    let report = &reports[0];
    assert_eq!(report["file"], Value::String(recipe.clone()));
    assert_eq!(report["valid"], Value::Bool(false));
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{}", out.stdout);
    let d = &diagnostics[0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "unknown-node");
    assert_eq!(d["path"], "edges[0]");
    assert_eq!(d["line"], 12);
    assert_eq!(d["column"], 5);
    assert_eq!(d["file"], Value::String(recipe));
    assert_eq!(d["hint"], "did you mean `summarize`?");

    // A valid recipe: `valid: true`, warnings (none here) as diagnostics.
    let valid = support::corpus("01_articles/article.json");
    let out = composer(["validate".as_ref(), "--json".as_ref(), valid.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let reports: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(reports[0]["valid"], Value::Bool(true));
    assert_eq!(reports[0]["diagnostics"], Value::Array(Vec::new()));
}

#[test]
fn usage_errors_exit_with_2() {
    let out = composer(std::iter::empty::<&str>());
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("Usage"), "{}", out.describe());

    let out = composer(["validate"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());

    let out = composer(["graph", "x.yaml", "--format", "png"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());

    let out = composer(["--help"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("validate"), "{}", out.describe());
}

#[test]
fn graph_mermaid_shows_nodes_conditions_and_loops() {
    let out = composer([
        "graph",
        &path_arg("loader/loop.yaml"),
        "--format",
        "mermaid",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = &out.stdout;
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    for node in ["draft", "review", "publish"] {
        assert!(text.contains(node), "node `{node}` missing:\n{text}");
    }
    assert!(text.contains("START --> n0"), "{text}");
    assert!(text.contains("n0 --> n1"), "{text}");
    // The forward conditional edge, labelled with its condition.
    assert!(
        text.contains("n1 -->|\"'REVISE' not in review\"| n2"),
        "{text}"
    );
    // The back edge: dashed, with its condition and loop bound.
    assert!(
        text.contains("n1 -.->|\"'REVISE' in review; loop, max 4\"| n0"),
        "{text}"
    );
    assert!(text.contains("n2 --> END"), "{text}");
}

#[test]
fn graph_dot_shows_nodes_conditions_and_loops() {
    let out = composer(["graph", &path_arg("loader/loop.yaml"), "--format", "dot"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = &out.stdout;
    assert!(text.starts_with("digraph \"Draft and review\" {"), "{text}");
    assert!(text.trim_end().ends_with('}'), "{text}");
    assert!(
        text.contains("n0 [shape=box, label=\"draft\\n(language_task)\"];"),
        "{text}"
    );
    assert!(
        text.contains("n2 [shape=box, label=\"publish\\n(function_task)\"];"),
        "{text}"
    );
    assert!(
        text.contains("n1 -> n2 [label=\"'REVISE' not in review\"];"),
        "{text}"
    );
    assert!(
        text.contains("n1 -> n0 [label=\"'REVISE' in review; loop, max 4\", style=dashed];"),
        "{text}"
    );
    assert_eq!(text.matches("style=dashed").count(), 1, "{text}");
}

#[test]
fn graph_of_an_invalid_recipe_fails() {
    let out = composer(["graph", &path_arg("invalid/unreachable_loop/recipe.yaml")]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert!(
        out.stderr.contains("error[unreachable-node]"),
        "{}",
        out.describe()
    );
}

#[test]
fn inputs_json_is_a_json_schema() {
    let recipe = support::corpus("02_research/news_summary.json");
    let out = composer(["inputs".as_ref(), recipe.as_os_str(), "--json".as_ref()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let schema: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.describe()));
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["title"], "AI News Summary via Perplexity");
    assert_eq!(schema["additionalProperties"], Value::Bool(false));

    let recency = &schema["properties"]["recency"];
    assert_eq!(
        recency["enum"],
        serde_json::json!(["day", "week", "month", "year", "any"])
    );
    assert_eq!(recency["default"], "week");
    assert_eq!(recency["title"], "Recency");
    assert_eq!(schema["properties"]["main_topic"]["type"], "string");
    assert_eq!(
        schema["properties"]["research_instructions"]["x-composer-multiline"],
        Value::Bool(true)
    );

    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(required.contains(&"main_topic"), "{required:?}");
    // Inputs with a default need not be given.
    assert!(!required.contains(&"recency"), "{required:?}");
    assert!(!required.contains(&"mode"), "{required:?}");
}

#[test]
fn inputs_lists_inputs_as_text() {
    let recipe = support::corpus("02_research/news_summary.json");
    let out = composer(["inputs".as_ref(), recipe.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("AI News Summary via Perplexity"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains(
            "recency (literal), default \"week\", one of \"day\" | \"week\" | \"month\" | \"year\" | \"any\""
        ),
        "{}",
        out.describe()
    );
}
