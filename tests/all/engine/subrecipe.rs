//! `recipe` nodes (RECIPES.md section 5): input and output mappings,
//! auto-mapping by input id with the sub-recipe's defaults, nested events.
//! The sub-recipe is `tests/fixtures/engine/sub/child.yaml`.

use super::{failed_node, Setup};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_and_output_mappings_write_mapped_keys_to_the_parent() {
    let ran = Setup::new(
        r#"
name: parent with mappings
user_inputs: [{id: topic, type: string}]
nodes:
  - id: sub
    type: recipe
    recipe_path: sub/child.yaml
    input_mapping:
      subject: "{{ topic | upper }}"
      style: fancy
    output_mapping:
      article: write
      headline: heading
  - id: after
    type: function_task
    function_identifier: echo
    input: {article: article, headline: headline}
final_outputs: [sub, article, headline, after]
"#,
    )
    .input("topic", "rust")
    .run()
    .await;
    let mapped = json!({
        "article": "[fancy text about RUST]",
        "headline": "[title for RUST]",
    });
    assert_eq!(ran.out("sub"), &mapped, "the node output is the mapping");
    assert_eq!(ran.out("article"), &mapped["article"]);
    assert_eq!(ran.out("headline"), &mapped["headline"]);
    assert_eq!(ran.out("after"), &mapped, "mapped keys are in the state");

    // The sub-recipe's nodes report as `parent/child`, inside the parent node.
    let sub_start = ran.started("sub")[0];
    let sub_end = ran.finished("sub")[0];
    for child in ["sub/write", "sub/title"] {
        let started = ran.started(child);
        let finished = ran.finished(child);
        assert_eq!(started.len(), 1, "{child}\n{}", ran.describe());
        assert_eq!(finished.len(), 1, "{child}\n{}", ran.describe());
        assert!(
            sub_start <= started[0] && finished[0] <= sub_end,
            "{child} runs inside `sub`\n{}",
            ran.describe()
        );
    }
    assert!(ran.started("write").is_empty(), "\n{}", ran.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mapping_passes_inputs_by_id_and_uses_the_sub_defaults() {
    let ran = Setup::new(
        r#"
name: parent auto-mapped
user_inputs: [{id: subject, type: string}]
nodes:
  - {id: sub, type: recipe, recipe_path: sub/child.yaml}
"#,
    )
    .input("subject", "bees")
    .run()
    .await;
    // Without output_mapping the node output is the sub-recipe's final outputs.
    assert_eq!(
        ran.out("sub"),
        &json!({"write": "[plain text about bees]", "heading": "[title for bees]"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mapping_takes_a_parent_node_output_named_like_a_sub_input() {
    let ran = Setup::new(
        r#"
name: parent output feeds the sub
nodes:
  - {id: subject, type: language_task, model: {provider: mock, model: echo}, prompt: "owls"}
  - {id: style, type: language_task, model: {provider: mock, model: echo}, prompt: "terse"}
  - {id: sub, type: recipe, recipe_path: sub/child.yaml}
"#,
    )
    .run()
    .await;
    assert_eq!(ran.out("sub")["write"], json!("[terse text about owls]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_recipe_missing_a_required_input_fails_its_node() {
    let ran = Setup::new(
        r#"
name: parent without subject
user_inputs: [{id: topic, type: string}]
nodes:
  - {id: sub, type: recipe, recipe_path: sub/child.yaml}
"#,
    )
    .input("topic", "rust")
    .run()
    .await;
    let (node, message) = failed_node(ran.error());
    assert_eq!(node, "sub");
    assert!(message.contains("`subject`"), "{message}");
    assert!(message.contains("child"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_key_wins_over_the_node_output_of_the_same_name() {
    // better_article.yaml: `output: draft_article` and `output_mapping:
    // {draft_article: generate_article}`; the next prompt must get the
    // article text, not the mapping.
    let path = super::fixtures().join("../corpus/01_articles/better_article.yaml");
    let recipe = composer::recipe::load_file(&path).unwrap().recipe;
    let ran = Setup::recipe(recipe)
        .model(super::mock_model("echo", json!({})))
        .input("topic", "honey bees")
        .run()
        .await;
    let article = ran.out("final_article").as_str().unwrap();
    assert!(
        article.contains(
            "Draft Article:\nWrite a well-structured article about honey bees. Make it engaging"
        ),
        "{article}"
    );
    assert_eq!(
        ran.finished("generate_initial_article/generate_article")
            .len(),
        1,
        "\n{}",
        ran.describe()
    );
}
