//! What the loader makes of valid recipes (RECIPES.md sections 1, 2 and 6):
//! the two shapes, YAML anchors, imports and their precedence, references,
//! implied edges and loops, and in-memory recipes.

use crate::support;
use composer::engine::plan::{Endpoint, Plan};
use composer::recipe::document::Format;
use composer::recipe::model::{ModelSpec, Node, NodeKind, Prompt, Recipe};
use composer::recipe::{Code, Loaded};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

fn load(relative: &str) -> Loaded {
    let path = support::fixture(relative);
    composer::recipe::load_file(&path).unwrap_or_else(|f| panic!("{relative}:\n{f}"))
}

fn load_yaml(text: &str, dir: &Path) -> Loaded {
    composer::recipe::load_str(text, Format::Yaml, dir)
        .unwrap_or_else(|f| panic!("in-memory recipe:\n{f}\n---\n{text}"))
}

fn plan_of(recipe: &Arc<Recipe>) -> Plan {
    Plan::build(recipe.clone()).unwrap_or_else(|problems| panic!("{problems:?}"))
}

fn node<'a>(recipe: &'a Recipe, id: &str) -> &'a Node {
    recipe
        .node(id)
        .unwrap_or_else(|| panic!("no node `{id}` in {}", recipe.name))
}

fn model(recipe: &Recipe, id: &str) -> ModelSpec {
    node(recipe, id)
        .model
        .clone()
        .unwrap_or_else(|| panic!("node `{id}` has no model"))
}

fn prompt(recipe: &Recipe, id: &str) -> String {
    match &node(recipe, id).kind {
        NodeKind::LanguageTask { prompt, .. } => prompt.text().to_string(),
        other => panic!("node `{id}` is not a language task: {other:?}"),
    }
}

fn input(recipe: &Recipe, id: &str, key: &str) -> Value {
    node(recipe, id)
        .input
        .as_ref()
        .and_then(|i| i.get(key))
        .cloned()
        .unwrap_or_else(|| panic!("node `{id}` has no input `{key}`"))
}

/// The recipe as a value, without the fields that name its file.
fn shape(recipe: &Recipe) -> Value {
    let mut value = serde_json::to_value(recipe).unwrap();
    let map = value.as_object_mut().unwrap();
    map.remove("file");
    map.remove("base_dir");
    value
}

#[test]
fn wrapped_and_flat_shapes_load_the_same_recipe() {
    let wrapped = load("loader/wrapped.yaml");
    let flat = load("loader/flat.yaml");
    assert!(wrapped.warnings.is_empty(), "{:?}", wrapped.warnings);
    assert!(flat.warnings.is_empty(), "{:?}", flat.warnings);
    assert_eq!(shape(&wrapped.recipe), shape(&flat.recipe));

    let recipe = &flat.recipe;
    assert_eq!(recipe.name, "Shapes");
    assert_eq!(recipe.version.as_deref(), Some("2"));
    assert_eq!(recipe.nodes.len(), 2);
    assert_eq!(model(recipe, "write").provider, "mock");
    assert_eq!(
        recipe.file.as_deref(),
        Some(support::fixture("loader/flat.yaml").as_path())
    );
}

#[test]
fn anchors_aliases_and_merge_keys_expand() {
    let loaded = load("loader/anchors.yaml");
    // The legacy `models:` block and the `base_task` anchor holder sit
    // beside `recipe:` and are ignored without a warning.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let recipe = &loaded.recipe;

    let config = recipe.model_config.as_ref().unwrap();
    assert_eq!(
        (config.provider.as_str(), config.model.as_str()),
        ("mock", "fast")
    );
    assert_eq!(config.params.get("temperature"), Some(&json!(0.1)));

    // `<<: *task` supplies type and function_identifier; explicit keys win.
    assert!(matches!(
        &node(recipe, "one").kind,
        NodeKind::FunctionTask { function_identifier } if function_identifier == "shared"
    ));
    assert!(matches!(
        &node(recipe, "two").kind,
        NodeKind::FunctionTask { function_identifier } if function_identifier == "own"
    ));

    let three = model(recipe, "three");
    assert_eq!(
        (three.provider.as_str(), three.model.as_str()),
        ("mock", "fast")
    );
    assert_eq!(three.params.get("temperature"), Some(&json!(0.9)));
    assert_eq!(input(recipe, "three", "tags"), json!(["a", "b"]));
    assert_eq!(input(recipe, "three", "again"), json!(["a", "b"]));
}

#[test]
fn imports_precedence_namespaces_and_transitive_imports() {
    let loaded = load("loader/imports/recipe.yaml");
    let recipe = &loaded.recipe;

    // second.yaml overrides first.yaml's `writer`.
    let writer = model(recipe, "write");
    assert_eq!(
        (writer.provider.as_str(), writer.model.as_str()),
        ("second", "w2")
    );
    // second.yaml's `greeting` uses `salutation` from its own import.
    assert_eq!(prompt(recipe, "write"), "Hello, world");

    // The recipe's own `reviewer` overrides first.yaml's.
    let reviewer = model(recipe, "review");
    assert_eq!(
        (reviewer.provider.as_str(), reviewer.model.as_str()),
        ("own", "r0")
    );
    // Names an import does not override survive.
    assert_eq!(prompt(recipe, "review"), "Style: formal");

    // The namespaced import is reachable as `team.name`; its own references
    // were resolved in its own scope. Transitive definitions are visible.
    let team = model(recipe, "team");
    assert_eq!(
        (team.provider.as_str(), team.model.as_str()),
        ("team", "tw")
    );
    assert_eq!(prompt(recipe, "team"), "max 100, motto ship it");
}

#[test]
fn namespaced_definitions_are_not_reachable_without_the_namespace() {
    let dir = support::temp_dir();
    support::write(dir.path(), "team.yaml", "slogan: ship it\n");
    let text = "imports:\n  - {path: team.yaml, namespace: team}\nname: ns\nnodes:\n  - id: f\n    type: function_task\n    function_identifier: f\n    input: {a: \"@team.slogan\", b: \"@slogan\"}\n";
    let failure = composer::recipe::load_str(text, Format::Yaml, dir.path())
        .expect_err("`@slogan` is only reachable as `@team.slogan`");
    let errors: Vec<_> = failure.errors().collect();
    assert_eq!(errors.len(), 1, "{failure}");
    assert_eq!(errors[0].code, Code::UnknownReference);
    assert_eq!(errors[0].path.as_deref(), Some("nodes[0].input.b"));
    assert!(
        errors[0].message.contains("`@slogan`"),
        "{}",
        errors[0].message
    );

    let loaded = load_yaml(&text.replace(", b: \"@slogan\"", ""), dir.path());
    assert_eq!(input(&loaded.recipe, "f", "a"), json!("ship it"));
}

#[test]
fn imports_are_relative_to_the_importing_file() {
    let dir = support::temp_dir();
    support::write(
        dir.path(),
        "defs/a.yaml",
        "imports: [sub/b.yaml]\nfrom_a: \"@from_b!\"\n",
    );
    support::write(dir.path(), "defs/sub/b.yaml", "from_b: deep\n");
    let path = support::write(
        dir.path(),
        "recipes/r.yaml",
        "imports: [../defs/a.yaml]\nname: rel\nnodes:\n  - {id: f, type: function_task, function_identifier: \"@from_a\"}\n",
    );
    let loaded = composer::recipe::load_file(&path).unwrap_or_else(|f| panic!("{f}"));
    assert!(matches!(
        &node(&loaded.recipe, "f").kind,
        NodeKind::FunctionTask { function_identifier } if function_identifier == "deep!"
    ));
}

const REFERENCES: &str = r#"
definitions:
  m: {provider: mock, model: echo, temperature: 0.5}
  topics: [ai, energy]
  n: 3
  ratio: 0.25
  flag: true
  nested: {inner: {deep: {value: 42}}}
  who: world
  chain: "hello @who"
  alias_of_m: "@m"
recipe:
  name: References
  model_config: "@m"
  nodes:
    - id: f
      type: function_task
      function_identifier: f
      input:
        list: "@topics"
        number: "@n"
        ratio: "@ratio"
        flag: "@flag"
        deep: "@nested.inner.deep.value"
        long_form: "@reference(nested.inner)"
        list_item: "@topics.1"
        text: "n=@n, flag=@flag, topics=@topics, model=@m.model, deep=@reference(nested.inner.deep.value)."
        mapping_in_text: "cfg @nested.inner"
        escaped: "@@home and @@n"
        email: "write to a@b.com or x1@who"
        chained: "@chain"
        in_list: ["@n", "say @who", {k: "@who"}]
    - id: g
      type: language_task
      model: "@alias_of_m"
      prompt: "Hello @who, about {{ topic }}"
"#;

#[test]
fn references_replace_whole_values_and_interpolate_text() {
    let dir = support::temp_dir();
    let loaded = load_yaml(REFERENCES, dir.path());
    let recipe = &loaded.recipe;

    // A string that is exactly one reference keeps the value's type.
    let config = recipe.model_config.as_ref().unwrap();
    assert_eq!(
        (config.provider.as_str(), config.model.as_str()),
        ("mock", "echo")
    );
    assert_eq!(config.params.get("temperature"), Some(&json!(0.5)));
    assert_eq!(input(recipe, "f", "list"), json!(["ai", "energy"]));
    assert_eq!(input(recipe, "f", "number"), json!(3));
    assert_eq!(input(recipe, "f", "ratio"), json!(0.25));
    assert_eq!(input(recipe, "f", "flag"), json!(true));
    assert_eq!(input(recipe, "f", "deep"), json!(42));
    assert_eq!(
        input(recipe, "f", "long_form"),
        json!({"deep": {"value": 42}})
    );
    assert_eq!(input(recipe, "f", "list_item"), json!("energy"));

    // Inside longer text: scalars as text, lists and mappings as JSON.
    assert_eq!(
        input(recipe, "f", "text"),
        json!("n=3, flag=true, topics=[\"ai\",\"energy\"], model=echo, deep=42.")
    );
    assert_eq!(
        input(recipe, "f", "mapping_in_text"),
        json!("cfg {\"deep\":{\"value\":42}}")
    );

    // `@@` is a literal `@`; an `@` after a letter or digit is plain text.
    assert_eq!(input(recipe, "f", "escaped"), json!("@home and @n"));
    assert_eq!(
        input(recipe, "f", "email"),
        json!("write to a@b.com or x1@who")
    );

    // Definitions referencing definitions; references inside lists and maps.
    assert_eq!(input(recipe, "f", "chained"), json!("hello world"));
    assert_eq!(
        input(recipe, "f", "in_list"),
        json!([3, "say world", {"k": "world"}])
    );
    assert_eq!(model(recipe, "g").model, "echo");
    assert_eq!(prompt(recipe, "g"), "Hello world, about {{ topic }}");
}

#[test]
fn a_recipe_without_edges_runs_in_list_order() {
    let dir = support::temp_dir();
    let loaded = load_yaml(
        "name: chain\nnodes:\n  - {id: a, type: function_task, function_identifier: f}\n  - {id: b, type: function_task, function_identifier: f}\n  - {id: c, type: function_task, function_identifier: f}\n",
        dir.path(),
    );
    assert!(loaded.recipe.edges.is_none());
    let plan = plan_of(&loaded.recipe);
    let edges: Vec<(&str, &str)> = plan
        .edges
        .iter()
        .map(|e| (plan.node_name(e.from), plan.node_name(e.to)))
        .collect();
    assert_eq!(edges, [("a", "b"), ("b", "c")]);
    assert!(plan.edges.iter().all(|e| e.condition.is_none() && !e.back));
    assert_eq!(plan.entries, [0]);
    assert!(plan.loops.is_empty());
}

#[test]
fn a_back_edge_forms_one_loop() {
    let loaded = load("loader/loop.yaml");
    let plan = plan_of(&loaded.recipe);
    assert_eq!(plan.edges.len(), 5);
    assert_eq!(plan.loops.len(), 1, "{:?}", plan.loops);
    let the_loop = &plan.loops[0];
    assert_eq!(the_loop.nodes, [0, 1], "draft and review");
    assert_eq!(the_loop.back_edges, [2]);

    let back = &plan.edges[2];
    assert!(back.back);
    assert_eq!(back.from, Endpoint::Node(1));
    assert_eq!(back.to, Endpoint::Node(0));
    // `{{ ... }}` around a condition is stripped; the bound comes from the
    // recipe's `max_iterations`.
    assert_eq!(back.condition.as_deref(), Some("'REVISE' in review"));
    assert_eq!(back.max_iterations, 4);
    assert_eq!(plan.edges.iter().filter(|e| e.back).count(), 1);

    assert_eq!(plan.entries, [0], "draft is entered from START");
    assert_eq!(plan.nodes[0].in_loop, Some(0));
    assert_eq!(plan.nodes[1].in_loop, Some(0));
    assert_eq!(plan.nodes[2].in_loop, None);
    assert_eq!(plan.edges[4].to, Endpoint::End);
}

#[test]
fn the_minimal_loop_and_its_default_bound() {
    let dir = support::temp_dir();
    let loaded = load_yaml(
        r#"name: loop
nodes:
  - {id: a, type: function_task, function_identifier: f}
  - {id: b, type: function_task, function_identifier: f}
edges:
  - START to a
  - a to b
  - {from: b, to: a, condition: "b.again"}
"#,
        dir.path(),
    );
    let plan = plan_of(&loaded.recipe);
    assert_eq!(plan.loops.len(), 1);
    assert_eq!(plan.loops[0].back_edges, [2]);
    let back = &plan.edges[2];
    assert_eq!(
        (plan.node_name(back.from), plan.node_name(back.to)),
        ("b", "a")
    );
    assert!(back.back && !plan.edges[1].back && !plan.edges[0].back);
    assert_eq!(back.max_iterations, 10);
    assert_eq!(plan.entries, [0]);

    // A bound on the back edge itself wins over the recipe's.
    let loaded = load_yaml(
        r#"name: loop
max_iterations: 7
nodes:
  - {id: a, type: function_task, function_identifier: f}
edges:
  - START to a
  - {from: a, to: a, condition: "a.again", max_iterations: 2}
"#,
        dir.path(),
    );
    let plan = plan_of(&loaded.recipe);
    assert_eq!(plan.loops.len(), 1, "a self-loop is a loop");
    assert_eq!(plan.edges[1].max_iterations, 2);
    assert!(plan.edges[1].back);
}

#[test]
fn in_memory_recipes_load_in_both_formats() {
    let dir = support::temp_dir();
    support::write(dir.path(), "prompts/hello.jinja", "Hello {{ name }}!\n");
    support::write(
        dir.path(),
        "sub.yaml",
        "name: sub\nuser_inputs: [{id: x}]\nnodes:\n  - {id: echo, type: function_task, function_identifier: echo}\n",
    );
    let json = r#"{
        "name": "in memory",
        "nodes": [
            {"id": "hello", "type": "language_task",
             "model": {"provider": "mock", "model": "echo"},
             "prompt": "prompts/hello.jinja"},
            {"id": "inner", "type": "recipe", "recipe_path": "sub.yaml",
             "input_mapping": {"x": "hello"}}
        ]
    }"#;
    let loaded = composer::recipe::load_str(json, Format::Json, dir.path())
        .unwrap_or_else(|f| panic!("{f}"));
    let recipe = &loaded.recipe;
    assert_eq!(recipe.name, "in memory");
    assert_eq!(recipe.base_dir, dir.path());
    // Relative paths start from the base folder.
    match &node(recipe, "hello").kind {
        NodeKind::LanguageTask {
            prompt: Prompt::File { path, text },
            ..
        } => {
            assert!(path.ends_with("prompts/hello.jinja"), "{}", path.display());
            assert_eq!(text, "Hello {{ name }}!\n");
        }
        other => panic!("expected a prompt file: {other:?}"),
    }
    match &node(recipe, "inner").kind {
        NodeKind::Recipe(sub) => assert_eq!(sub.recipe.name, "sub"),
        other => panic!("expected a recipe node: {other:?}"),
    }

    let yaml = load_yaml(
        "name: in memory\nnodes:\n  - {id: f, type: function_task, function_identifier: f}\n",
        dir.path(),
    );
    assert_eq!(yaml.recipe.nodes.len(), 1);

    // Errors in memory name the in-memory document and a line.
    let failure = composer::recipe::load_str(
        "name: bad\nnodes:\n  - {id: f, type: functon_task}\n",
        Format::Yaml,
        dir.path(),
    )
    .expect_err("unknown node type");
    let d = failure.errors().next().unwrap();
    assert_eq!(d.code, Code::UnknownNodeType);
    assert_eq!(d.line, Some(3));
    assert!(d.file.is_some());
}

// Issue 17: recipes as Content Composer's users write them.

fn warnings_with(loaded: &Loaded, code: Code) -> Vec<&composer::recipe::Diagnostic> {
    loaded.warnings.iter().filter(|d| d.code == code).collect()
}

#[test]
fn imports_are_found_in_parent_folders_up_to_the_project_root() {
    let loaded = load("compat/project_root_import/recipes/article.yaml");
    let found = warnings_with(&loaded, Code::ImportMissing);
    assert_eq!(found.len(), 1, "{:?}", loaded.warnings);
    let w = found[0];
    assert!(!w.is_error());
    assert!(
        w.message.contains(
            "imported file `definitions/common.yaml` is not beside the importing file; using `"
        ) && w.message.contains("found in a parent folder"),
        "{}",
        w.message
    );
    assert_eq!(
        w.hint.as_deref(),
        Some("write the path relative to the importing file: `../definitions/common.yaml`")
    );
    assert_eq!((w.path.as_deref(), w.line), (Some("imports[0]"), Some(2)));
    assert_eq!(
        model(&loaded.recipe, "write").params.get("reply"),
        Some(&json!("common {{ prompt }}"))
    );
}

#[test]
fn the_parent_folder_search_stops_at_the_project_root() {
    let dir = support::temp_dir();
    support::write(
        dir.path(),
        "definitions/common.yaml",
        "writer: {provider: mock, model: echo}\n",
    );
    support::write(dir.path(), "project/composer.toml", "");
    let recipe = support::write(
        dir.path(),
        "project/recipes/r.yaml",
        "imports: [definitions/common.yaml]\nname: r\nnodes:\n  - {id: a, type: language_task, model: \"@writer\", prompt: hi}\n",
    );
    let failure = composer::recipe::load_file(&recipe).expect_err("must not load");
    let e = failure
        .errors()
        .find(|d| d.code == Code::ImportMissing)
        .unwrap_or_else(|| panic!("{failure}"));
    assert!(
        e.message
            .contains("then in the parent folders up to the project root"),
        "{}",
        e.message
    );
}

#[test]
fn broken_references_in_unused_definitions_are_warnings() {
    let loaded = load("compat/unused_broken_definition/recipe.yaml");
    let found = warnings_with(&loaded, Code::UnknownReference);
    // `tidy` is built from the broken `reviewer`: still one problem.
    assert_eq!(found.len(), 1, "{:?}", loaded.warnings);
    let w = found[0];
    assert!(
        w.message
            .contains("reference to unknown definition `@some_missing_name`")
            && w.message.contains(
                "(in the definition `models.reviewer`, which this recipe does not use: ignored)"
            ),
        "{}",
        w.message
    );
    assert_eq!(
        w.file
            .as_deref()
            .and_then(|f| f.file_name())
            .and_then(|n| n.to_str()),
        Some("defs.yaml")
    );
    assert_eq!(w.line, Some(5));
    assert_eq!(model(&loaded.recipe, "write").model, "echo");
}

#[test]
fn a_definition_built_from_a_broken_one_is_an_error_when_used() {
    let dir = support::fixture("compat/unused_broken_definition");
    let failure = composer::recipe::load_str(
        "imports:\n  - {path: defs.yaml, namespace: models}\nname: r\nnodes:\n  - {id: a, type: language_task, model: \"@models.tidy\", prompt: hi}\n",
        Format::Yaml,
        &dir,
    )
    .expect_err("must not load");
    let e = failure
        .errors()
        .find(|d| d.code == Code::UnknownReference)
        .unwrap_or_else(|| panic!("{failure}"));
    assert!(e.message.contains("`@some_missing_name`"), "{}", e.message);
    assert!(!e.message.contains("ignored"), "{}", e.message);
}

#[test]
fn a_namespaced_name_used_bare_gets_the_nested_path_as_hint() {
    let failure = composer::check_file(&support::fixture("invalid/namespace_required/recipe.yaml"))
        .expect_err("must not load");
    let e = failure.errors().next().expect("one error");
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `@models.writer`? (`writer` is inside `models`)")
    );
}

#[test]
fn on_error_skip_on_a_plain_node_means_continue() {
    let loaded = load("compat/on_error_skip/recipe.yaml");
    let found = warnings_with(&loaded, Code::InvalidValue);
    assert_eq!(found.len(), 1, "{:?}", loaded.warnings);
    assert!(
        found[0]
            .message
            .starts_with("`on_error: skip` is for map nodes; on this node it means `continue`"),
        "{}",
        found[0].message
    );
    assert_eq!(found[0].path.as_deref(), Some("nodes[0].on_error"));
    assert_eq!(found[0].line, Some(7));
    assert_eq!(
        node(&loaded.recipe, "flaky").settings.on_error,
        Some(composer::recipe::model::OnError::Continue)
    );
}

#[test]
fn undeclared_sub_recipe_inputs_are_a_warning() {
    let loaded = load("compat/sub_recipe_undeclared_input/recipe.yaml");
    let found = warnings_with(&loaded, Code::SubRecipeInput);
    assert_eq!(found.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(
        found[0].message,
        "sub-recipe `undeclared` declares no input `topic`; the value is passed into its state as it is"
    );
    assert_eq!(
        found[0].path.as_deref(),
        Some("nodes[0].input_mapping.topic")
    );
    assert_eq!(found[0].line, Some(9));
}
