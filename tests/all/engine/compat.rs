//! Issue 17: recipes from Content Composer's tutorial run as they did
//! there (undeclared sub-recipe inputs, `on_error: skip` on plain nodes,
//! omitted optional inputs, relative `file` inputs), and `composer
//! validate` places unknown functions.

use super::Setup;
use crate::support;
use serde_json::json;

fn compat(relative: &str) -> std::sync::Arc<composer::recipe::Recipe> {
    let path = support::fixture(&format!("compat/{relative}"));
    match composer::recipe::load_file(&path) {
        Ok(loaded) => loaded.recipe,
        Err(f) => panic!("{relative}:\n{f}"),
    }
}

#[tokio::test]
async fn mapped_values_reach_a_sub_recipe_that_does_not_declare_them() {
    let ran = Setup::recipe(compat("sub_recipe_undeclared_input/recipe.yaml"))
        .input("subject", "rivers")
        .run()
        .await;
    assert_eq!(ran.out("article"), &json!({"write": "Article on rivers"}));
}

#[tokio::test]
async fn without_input_mapping_the_nodes_input_entries_reach_the_sub_recipe() {
    let path = support::fixture("compat/sub_recipe_undeclared_input/by_input.yaml");
    let loaded = composer::recipe::load_file(&path).unwrap_or_else(|f| panic!("{f}"));
    let warning = loaded
        .warnings
        .iter()
        .find(|d| d.code == composer::recipe::Code::SubRecipeInput)
        .unwrap_or_else(|| panic!("{:?}", loaded.warnings));
    assert_eq!(warning.path.as_deref(), Some("nodes[0].input.topic"));
    let ran = Setup::recipe(loaded.recipe)
        .input("subject", "rivers")
        .run()
        .await;
    assert_eq!(ran.out("article"), &json!({"write": "Article on rivers"}));
}

#[tokio::test]
async fn on_error_skip_on_a_plain_node_continues_the_run() {
    let ran = Setup::recipe(compat("on_error_skip/recipe.yaml"))
        .run()
        .await;
    assert_eq!(ran.out("flaky"), &json!(null));
    assert!(
        ran.out("flaky_error")
            .as_str()
            .is_some_and(|e| e.contains("boom")),
        "{:?}",
        ran.out("flaky_error")
    );
    assert_eq!(ran.out("after"), &json!("still here"));
}

#[tokio::test]
async fn an_omitted_optional_input_prints_as_empty_text() {
    let ran = Setup::recipe(compat("omitted_optional_input/recipe.yaml"))
        .input("a", "x")
        .run()
        .await;
    assert_eq!(ran.out("show"), &json!("A=x C=. undefined fallback unset"));
    // A text template input prints it the same way; the name alone is null.
    assert_eq!(ran.out("note"), &json!({"text": "C=.", "raw": null}));
    // Given, it is an ordinary value.
    let ran = Setup::recipe(compat("omitted_optional_input/recipe.yaml"))
        .input("a", "x")
        .input("c", "y")
        .run()
        .await;
    assert_eq!(ran.out("show"), &json!("A=x C=y. defined y set"));
    assert_eq!(ran.out("note"), &json!({"text": "C=y.", "raw": "y"}));
}

#[test]
fn relative_file_inputs_are_resolved_against_the_working_directory() {
    let dir = support::temp_dir();
    support::write(dir.path(), "docs/report.md", "# Report\n");
    let recipe = support::fixture("compat/file_input/recipe.yaml");
    let out = support::composer_in(
        dir.path(),
        [
            "run".as_ref(),
            recipe.as_os_str(),
            "-i".as_ref(),
            "document=docs/report.md".as_ref(),
            "--json".as_ref(),
            "--no-cache".as_ref(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let outputs: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.describe()));
    let cwd = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let expected = format!("Read {}", cwd.join("docs/report.md").display());
    assert_eq!(outputs["read"], json!(expected), "{}", out.describe());
}

#[test]
fn unknown_functions_are_reported_with_line_and_column() {
    let dir = support::temp_dir();
    let recipe = support::fixture("compat/unknown_function/recipe.yaml");
    let out = support::composer_in(dir.path(), ["validate".as_ref(), recipe.as_os_str()]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains("error[unknown-function]: function `no_such_function` is not provided")
            && out
                .stderr
                .contains("recipe.yaml:5:26 at `nodes[0].function_identifier`"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_plugin_opens_a_relative_file_input() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    if !dist.join("extract_file_content.wasm").is_file() {
        panic!("plugins/dist/extract_file_content.wasm is missing: run scripts/test.sh once");
    }
    let dir = support::temp_dir();
    support::write(
        dir.path(),
        "docs/report.md",
        "# Quarterly report\n\nRevenue rose.\n",
    );
    support::write(
        dir.path(),
        "composer.toml",
        &format!(
            "[plugins]\npaths = [{:?}]\ncache_dir = {:?}\n",
            dist.to_string_lossy(),
            dir.path().join("plugin-cache").to_string_lossy()
        ),
    );
    let recipe = support::fixture("compat/file_input_plugin/recipe.yaml");
    let out = support::composer_in(
        dir.path(),
        [
            "run".as_ref(),
            recipe.as_os_str(),
            "-i".as_ref(),
            "document=docs/report.md".as_ref(),
            "--json".as_ref(),
            "--no-cache".as_ref(),
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("Revenue rose."),
        "the plugin read the file: {}",
        out.describe()
    );
}
