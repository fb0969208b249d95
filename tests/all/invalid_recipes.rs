//! Broken recipes, one per rule: each must be refused with the right
//! diagnostic (code, location, file, message), and every problem of a recipe
//! is reported in one pass.
//!
//! Each case is a folder `tests/fixtures/invalid/<case>/` holding a
//! `recipe.yaml` or `recipe.json` (plus any imported or sub-recipe file it
//! needs). The table below says what `composer::check_file` must report for
//! it; one test runs every row and lists every mismatch at once.

use crate::support;
use composer::recipe::{Code, Diagnostic, LoadFailure, Severity};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the expected diagnostic points.
#[derive(Debug, Clone, Copy)]
enum At {
    /// A path inside the recipe, such as `nodes[1].type`.
    Path(&'static str),
    /// A source position (syntax errors): line, and column when given.
    Line(usize, Option<usize>),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    /// Folder under `tests/fixtures/invalid`.
    dir: &'static str,
    code: Code,
    at: At,
    /// A key part of the message.
    message: &'static str,
    /// The file the diagnostic must name (default: the case's recipe file).
    file: Option<&'static str>,
    /// A part of the hint the diagnostic must carry.
    hint: Option<&'static str>,
    /// The line `At::Path` must resolve to, when the row pins it.
    line: Option<usize>,
}

const fn case(dir: &'static str, code: Code, at: At, message: &'static str) -> Case {
    Case {
        dir,
        code,
        at,
        message,
        file: None,
        hint: None,
        line: None,
    }
}

impl Case {
    const fn in_file(self, file: &'static str) -> Case {
        Case {
            file: Some(file),
            ..self
        }
    }

    const fn hint(self, hint: &'static str) -> Case {
        Case {
            hint: Some(hint),
            ..self
        }
    }

    const fn on_line(self, line: usize) -> Case {
        Case {
            line: Some(line),
            ..self
        }
    }
}

use At::{Line, Path as P};

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Files and syntax (section 1).
    case("yaml_syntax", Code::Syntax, Line(5, Some(13)), "invalid YAML"),
    case("json_syntax", Code::Syntax, Line(6, Some(5)), "trailing comma"),
    case("top_level_list", Code::NotAMapping, Line(1, Some(1)), "must be a mapping"),
    case("top_level_scalar_json", Code::NotAMapping, Line(1, Some(1)), "must be a mapping"),
    case("recipe_not_a_mapping", Code::WrongType, Line(1, None), "`recipe` must be a mapping"),
    case("alias_bomb", Code::AliasBomb, Line(8, None), "aliases repeated too often"),
    case("too_deep", Code::TooDeep, Line(7, None), "deeper than 128 levels"),
    case("too_deep_json", Code::TooDeep, Line(1, None), "deeper than"),

    // Imports (section 2).
    case("import_missing", Code::ImportMissing, P("imports[1]"), "`no_such_file.yaml` not found").on_line(3),
    case("import_cycle", Code::ImportCycle, P("imports[0]"), "a.yaml -> ").in_file("b.yaml"),
    case("import_not_path", Code::InvalidImport, P("imports[0]"), "a path string or a mapping"),
    case("import_mapping_without_path", Code::InvalidImport, P("imports[0]"), "needs a `path`"),
    case("import_bad_namespace", Code::InvalidImport, P("imports[0]"), "namespace \"my models\" must be a name"),
    case("import_syntax_error", Code::Syntax, Line(4, Some(9)), "invalid YAML").in_file("defs.yaml"),
    case("import_not_mapping", Code::NotAMapping, Line(1, Some(1)), "mapping of definitions").in_file("defs.yaml"),
    case("namespace_required", Code::UnknownReference, P("nodes[0].model"), "unknown definition `@writer`").hint("`models`"),

    // References (section 2).
    case("unknown_reference", Code::UnknownReference, P("nodes[0].model"), "unknown definition `@writr`").hint("did you mean `writer`?").on_line(7),
    case("unknown_reference_path", Code::UnknownReference, P("nodes[0].model.model"), "`writer` has no `modle`").hint("did you mean `model`?"),
    case("reference_cycle", Code::ReferenceCycle, P("definitions.b"), "@a -> @b -> @a"),

    // The recipe (section 3).
    case("missing_name", Code::MissingField, P("name"), "missing required field `name`"),
    case("missing_nodes", Code::MissingField, P("nodes"), "missing required field `nodes`"),
    case("empty_nodes", Code::MissingField, P("nodes"), "at least one node").on_line(3),
    case("nodes_not_a_list", Code::WrongType, P("nodes"), "`nodes` must be a list"),
    case("max_iterations_zero", Code::InvalidValue, P("max_iterations"), "positive whole number"),

    // User inputs (section 4).
    case("duplicate_input_id", Code::DuplicateId, P("user_inputs[2].id"), "`topic` is used twice").on_line(5),
    case("input_without_id", Code::MissingField, P("user_inputs[0].id"), "missing required field `id`"),
    case("unknown_input_type", Code::InvalidValue, P("user_inputs[0].type"), "unknown input type `strng`").hint("did you mean `string`?"),
    case("literal_without_values", Code::MissingField, P("user_inputs[0].literal_values"), "needs a non-empty `literal_values`"),
    case("literal_default_not_in_values", Code::InvalidValue, P("user_inputs[0].default"), "\"fortnight\" is not one of"),
    case("int_default_not_a_number", Code::InvalidValue, P("user_inputs[0].default"), "expected a whole number, found `abc`"),
    case("bool_default_invalid", Code::InvalidValue, P("user_inputs[0].default"), "found `perhaps`"),
    case("input_required_not_bool", Code::WrongType, P("user_inputs[0].required"), "true or false"),

    // Nodes (section 5).
    case("node_not_a_mapping", Code::WrongType, P("nodes[0]"), "a node must be a mapping"),
    case("node_without_id", Code::MissingField, P("nodes[0].id"), "missing required field `id`"),
    case("duplicate_node_id", Code::DuplicateId, P("nodes[2].id"), "`write` is used twice (first by nodes[0])").on_line(11),
    case("reserved_id_start", Code::ReservedName, P("nodes[0].id"), "`START` is reserved"),
    case("reserved_id_end", Code::ReservedName, P("nodes[0].id"), "`END` is reserved"),
    case("node_id_with_space", Code::InvalidValue, P("nodes[0].id"), "without spaces"),
    case("unknown_node_type", Code::UnknownNodeType, P("nodes[1].type"), "unknown node type `langauge_task`").hint("did you mean `language_task`?").on_line(8),
    case("language_task_without_prompt", Code::MissingField, P("nodes[0].prompt"), "missing required field `prompt`"),
    case("missing_prompt_file", Code::Io, P("nodes[0].prompt"), "cannot read prompt file").on_line(6),
    case("prompt_syntax_error", Code::InvalidTemplate, P("nodes[0].prompt"), "template does not parse"),
    case("prompt_file_syntax_error", Code::InvalidTemplate, P("nodes[0].prompt"), "(template line 3)"),
    case("input_template_syntax_error", Code::InvalidTemplate, P("nodes[0].input.text"), "template does not parse"),
    case("invalid_output_format", Code::InvalidValue, P("nodes[0].output_format"), "unknown output_format `jsn`").hint("did you mean `json`?"),
    case("invalid_on_error", Code::InvalidValue, P("nodes[0].on_error"), "unknown on_error `ignore`"),
    case("invalid_timeout", Code::InvalidValue, P("nodes[0].timeout"), "positive number of seconds"),
    case("invalid_cache_setting", Code::InvalidValue, P("nodes[0].cache"), "`cache.ttl`: `soon` is not a duration").on_line(7),
    case("invalid_retry_setting", Code::InvalidValue, P("nodes[0].retry"), "`retry.max_attempts` must be a whole number from 1 to 100, found 0").on_line(7),
    case("function_task_without_identifier", Code::MissingField, P("nodes[0].function_identifier"), "missing required field `function_identifier`"),
    case("reduce_without_identifier", Code::MissingField, P("nodes[0].function_identifier"), "missing required field `function_identifier`"),
    case("model_without_provider", Code::InvalidValue, P("nodes[0].model"), "missing `provider`"),
    case("model_not_a_mapping", Code::InvalidValue, P("model_config"), "a model must be a mapping"),
    case("hitl_required_fields_not_names", Code::WrongType, P("nodes[0].required_fields"), "list of names"),

    // Map (section 7).
    case("map_without_over", Code::MissingField, P("nodes[1].over"), "missing required field `over`"),
    case("map_without_task", Code::MissingField, P("nodes[1].task"), "missing required field `task`"),
    case("map_task_with_id", Code::InvalidValue, P("nodes[1].task.id"), "has no `id`").on_line(10),
    case("map_task_is_map", Code::UnknownNodeType, P("nodes[1].task.type"), "a map cannot run `map` per item"),
    case("map_task_is_hitl", Code::UnknownNodeType, P("nodes[1].task.type"), "a map cannot run `hitl` per item"),
    case("map_task_is_reduce", Code::UnknownNodeType, P("nodes[1].task.type"), "a map cannot run `reduce` per item"),
    case("map_task_incomplete", Code::MissingField, P("nodes[1].task.function_identifier"), "`function_identifier`"),
    case("map_invalid_on_error", Code::InvalidValue, P("nodes[1].on_error"), "unknown map on_error `continue` (known: halt, skip)"),
    case("map_invalid_execution_mode", Code::InvalidValue, P("nodes[1].execution_mode"), "unknown execution_mode `paralel`").hint("did you mean `parallel`?"),
    case("map_invalid_max_concurrency", Code::InvalidValue, P("nodes[1].max_concurrency"), "positive number or `auto`"),
    case("map_over_template_error", Code::InvalidTemplate, P("nodes[1].over"), "template does not parse"),

    // Edges (section 6).
    case("malformed_string_edge", Code::InvalidEdge, P("edges[0]"), "`write -> summarize` must read `SOURCE to TARGET`").on_line(12),
    case("edge_not_text_or_mapping", Code::InvalidEdge, P("edges[0]"), "found a list"),
    case("edge_unknown_node", Code::UnknownNode, P("edges[0]"), "edge to `sumarize` names no node").hint("did you mean `summarize`?"),
    case("edge_mapping_unknown_node", Code::UnknownNode, P("edges[1]"), "edge from `wrte` names no node").hint("did you mean `write`?"),
    case("edge_missing_to", Code::MissingField, P("edges[0].to"), "missing required field `to`"),
    case("start_as_target", Code::InvalidEdge, P("edges[1]"), "`START` cannot be an edge's `to`"),
    case("end_as_source", Code::InvalidEdge, P("edges[1]"), "`END` cannot be an edge's `from`"),
    case("condition_syntax_error", Code::InvalidTemplate, P("edges[0].condition"), "condition `write | length >` does not parse").on_line(14),
    case("edge_max_iterations_invalid", Code::InvalidValue, P("edges[1].max_iterations"), "positive whole number"),
    case("unreachable_loop", Code::UnreachableNode, P("nodes[1]"), "node `draft` can never run"),
    case("no_entry_node", Code::UnreachableNode, P("edges"), "no entry node"),

    // Sub-recipes (section 5, `recipe`).
    case("sub_recipe_missing", Code::SubRecipe, P("nodes[0].recipe_path"), "cannot read sub-recipe").on_line(5),
    case("sub_recipe_invalid", Code::UnknownNodeType, P("nodes[0].type"), "`langauge_task`").in_file("sub.yaml"),
    case("sub_recipe_unknown_input", Code::SubRecipeInput, P("nodes[0].input_mapping.topik"), "has no input `topik`").hint("did you mean `topic`?"),
    case("sub_recipe_unknown_output", Code::UnknownOutput, P("nodes[0].output_mapping.article"), "produces no `wrte`"),
    case("recursive_recipe_path", Code::RecipeCycle, P("nodes[0].recipe_path"), "recipe.yaml -> ").in_file("b.yaml"),
    case("recipe_path_self", Code::RecipeCycle, P("nodes[0].recipe_path"), "recipe_path is recursive"),

    // Final outputs (section 8).
    case("final_output_unknown_key", Code::UnknownOutput, P("final_outputs[1]"), "no input or node output is called `wrte`").hint("`write`"),
    case("final_output_entry_unknown_value", Code::UnknownOutput, P("final_outputs[0].value"), "`writ`"),
    case("final_output_condition_error", Code::InvalidTemplate, P("final_outputs[0].condition"), "does not parse"),

    // Issue 17: what Content Composer's users write, and messages that
    // point the right way.
    case("used_broken_definition", Code::UnknownReference, P("definitions.reviewer.model"), "unknown definition `@some_missing_name`").in_file("defs.yaml").on_line(5),
    case("reference_colon_form", Code::UnknownReference, P("nodes[0].model"), "`@reference:models.writer` is not a reference: there is no `@reference:` form").hint("write `@models.writer` or `@reference(models.writer)`").on_line(7),
    case("model_reference_reported_once", Code::UnknownReference, P("nodes[0].model"), "reference `@models.writr`: `models` has no `writr`").hint("did you mean `writer`?").on_line(7),
    case("nested_reference_hint", Code::UnknownReference, P("nodes[0].model"), "unknown definition `@reasoning_specialist`").hint("did you mean `@models.reasoning_specialist`?"),
    case("unwrapped_import_error_line", Code::UnknownReference, P("reviewer.model"), "unknown definition `@missing_model_name`").in_file("defs.yaml").on_line(5),
    case("final_output_placeholder", Code::UnknownOutput, P("final_outputs[1]"), "final output `...` is not a key").hint("`write`").on_line(9),
    case("recipe_path_reference", Code::SubRecipe, P("nodes[0].recipe_path"), "`recipe_path` must be a plain path, but `@paths` holds a reference").on_line(7),
    case("recipe_path_template", Code::SubRecipe, P("nodes[0].recipe_path"), "`recipe_path` must be a plain path, but `{{ which }}.yaml` holds a template").on_line(7),
    case("condition_contains", Code::InvalidTemplate, P("edges[1].condition"), "condition `write contains 'TODO'` does not parse").hint("write `'TODO' in write`").on_line(15),
    case("condition_contains_in_definitions", Code::InvalidTemplate, P("edges[1].condition"), "condition `'x' contains 'y'` does not parse").hint("write `'y' in 'x'`").in_file("flow.yaml").on_line(8),
];

fn invalid_dir() -> PathBuf {
    support::fixture("invalid")
}

/// The recipe file of a case folder.
fn recipe_file(dir: &str) -> PathBuf {
    let folder = invalid_dir().join(dir);
    ["recipe.yaml", "recipe.json"]
        .iter()
        .map(|name| folder.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| folder.join("recipe.yaml"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn matches(case: &Case, recipe: &Path, d: &Diagnostic) -> bool {
    let wanted_file = case.file.map_or_else(|| file_name(recipe), str::to_string);
    let located = match case.at {
        At::Path(p) => {
            d.path.as_deref() == Some(p) && case.line.is_none_or(|line| d.line == Some(line))
        }
        At::Line(line, column) => {
            d.line == Some(line) && column.is_none_or(|c| d.column == Some(c))
        }
    };
    d.is_error()
        && d.code == case.code
        && located
        && d.file.as_deref().map(file_name) == Some(wanted_file)
        && d.message.contains(case.message)
        && case
            .hint
            .is_none_or(|h| d.hint.as_deref().is_some_and(|hint| hint.contains(h)))
}

fn describe(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            format!(
                "    {:?} {:?} path={:?} line={:?}:{:?} file={:?}\n      message: {}\n      hint: {:?}",
                d.severity,
                d.code,
                d.path,
                d.line,
                d.column,
                d.file.as_deref().map(file_name),
                d.message,
                d.hint
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with one row, if anything.
fn check_case(case: &Case) -> Option<String> {
    let recipe = recipe_file(case.dir);
    if !recipe.is_file() {
        return Some(format!("no recipe.yaml or recipe.json in {}", case.dir));
    }
    let failure = match composer::check_file(&recipe) {
        Ok(_) => return Some("the recipe loaded and validated without errors".into()),
        Err(failure) => failure,
    };
    let mut problems = Vec::new();
    if !failure
        .diagnostics
        .iter()
        .any(|d| matches(case, &recipe, d))
    {
        problems.push(format!(
            "expected {:?} at {:?}{} in {} with message containing {:?}{}",
            case.code,
            case.at,
            case.line
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default(),
            case.file.unwrap_or("the recipe file"),
            case.message,
            case.hint
                .map(|h| format!(" and hint containing {h:?}"))
                .unwrap_or_default(),
        ));
    }
    if let Some(d) = failure.diagnostics.iter().find(|d| d.file.is_none()) {
        problems.push(format!("a diagnostic names no file: {d}"));
    }
    if failure.errors().next().is_none() {
        problems.push("a failure without any error".into());
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{}\n  got:\n{}",
            problems.join("\n  "),
            describe(&failure.diagnostics)
        ))
    }
}

#[test]
fn every_broken_recipe_is_refused_with_the_right_diagnostic() {
    assert!(CASES.len() >= 35, "only {} cases", CASES.len());
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|case| check_case(case).map(|p| format!("[{}] {p}", case.dir)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_table_and_the_fixture_folders_agree() {
    let mut on_disk: Vec<String> = std::fs::read_dir(invalid_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut in_table: Vec<String> = CASES.iter().map(|c| c.dir.to_string()).collect();
    in_table.sort();
    let before = in_table.len();
    in_table.dedup();
    assert_eq!(before, in_table.len(), "a case folder is listed twice");
    assert_eq!(
        on_disk, in_table,
        "fixture folders without a row, or rows without a folder"
    );
}

/// Errors only, in order, as (code, path).
fn errors(failure: &LoadFailure) -> Vec<(Code, Option<&str>)> {
    failure
        .errors()
        .map(|d| (d.code, d.path.as_deref()))
        .collect()
}

#[test]
fn a_ten_megabyte_file_is_refused_before_it_is_read() {
    let dir = support::temp_dir();
    // A well-formed recipe, only too big: refusing it must not depend on
    // parsing it.
    let mut text = String::from("name: big\nnodes:\n");
    let mut i = 0;
    while text.len() < 10 * 1024 * 1024 {
        text.push_str(&format!(
            "  - id: node_{i}\n    type: function_task\n    function_identifier: f\n"
        ));
        i += 1;
    }
    let path = support::write(dir.path(), "big.yaml", &text);

    let started = Instant::now();
    let failure = composer::check_file(&path).expect_err("a 10 MB recipe must be refused");
    let elapsed = started.elapsed();
    assert_eq!(errors(&failure), [(Code::TooLarge, None)], "{failure}");
    let d = &failure.diagnostics[0];
    assert_eq!(d.file.as_deref(), Some(path.as_path()));
    assert!(d.message.contains("bytes"), "{}", d.message);
    assert!(
        elapsed < Duration::from_secs(2),
        "refusing a large file took {elapsed:?}"
    );

    // The same text handed over in memory is refused as well.
    let failure =
        composer::recipe::load_str(&text, composer::recipe::document::Format::Yaml, dir.path())
            .expect_err("a 10 MB in-memory recipe must be refused");
    assert_eq!(errors(&failure), [(Code::TooLarge, None)], "{failure}");
}

#[test]
fn a_missing_recipe_file_is_an_io_error() {
    let dir = support::temp_dir();
    let path = dir.path().join("nowhere.yaml");
    let failure = composer::check_file(&path).expect_err("no file, no recipe");
    assert_eq!(errors(&failure), [(Code::Io, None)], "{failure}");
    assert_eq!(failure.diagnostics[0].file.as_deref(), Some(path.as_path()));
}

#[test]
fn unknown_fields_are_warnings_with_a_suggestion() {
    let dir = support::temp_dir();
    let path = support::write(
        dir.path(),
        "typo.yaml",
        r#"name: typos
user_inputs:
  - id: topic
    lable: The topic
nodes:
  - id: summarize
    type: function_task
    function_identifier: summarize
    fucntion_identifier: summarise
    input: {text: "{{ topic }}"}
"#,
    );
    let (loaded, plan) = composer::check_file(&path).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(plan.recipe.nodes.len(), 1);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|d| d.severity == Severity::Warning && d.code == Code::UnknownField),
        "{}",
        describe(&loaded.warnings)
    );
    let typo = loaded
        .warnings
        .iter()
        .find(|d| d.path.as_deref() == Some("nodes[0].fucntion_identifier"))
        .unwrap_or_else(|| panic!("no warning for the typo:\n{}", describe(&loaded.warnings)));
    assert!(
        typo.message.contains("`fucntion_identifier`"),
        "{}",
        typo.message
    );
    assert_eq!(
        typo.hint.as_deref(),
        Some("did you mean `function_identifier`?")
    );
    assert_eq!(typo.line, Some(9));
    assert_eq!(typo.file.as_deref(), Some(path.as_path()));

    let label = loaded
        .warnings
        .iter()
        .find(|d| d.path.as_deref() == Some("user_inputs[0].lable"))
        .unwrap_or_else(|| panic!("no warning for `lable`:\n{}", describe(&loaded.warnings)));
    assert_eq!(label.hint.as_deref(), Some("did you mean `label`?"));
    assert_eq!(loaded.warnings.len(), 2, "{}", describe(&loaded.warnings));
}

#[test]
fn a_typo_that_hides_a_required_field_shows_both() {
    let dir = support::temp_dir();
    let path = support::write(
        dir.path(),
        "typo.yaml",
        "name: typo\nnodes:\n  - id: f\n    type: function_task\n    fucntion_identifier: summarize\n",
    );
    let failure = composer::check_file(&path).expect_err("function_identifier is missing");
    assert_eq!(
        errors(&failure),
        [(Code::MissingField, Some("nodes[0].function_identifier"))]
    );
    let warning = failure
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Warning)
        .expect("the typo is reported too");
    assert_eq!(warning.code, Code::UnknownField);
    assert_eq!(
        warning.hint.as_deref(),
        Some("did you mean `function_identifier`?")
    );
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let dir = support::temp_dir();
    let path = support::write(
        dir.path(),
        "five.yaml",
        r#"name: five problems
user_inputs:
  - id: recency
    type: literal
    literal_values: [day, week]
    default: year
nodes:
  - id: fetch
    type: function_tsk
  - id: write
    type: language_task
    model: {provider: mock, model: echo}
    prompt: "About {{ fetch.content "
  - id: review
    type: language_task
    model: {provider: mock, model: echo}
    prompt: Review
    output_format: yaml
edges:
  - fetch to write
  - write to reviw
"#,
    );
    let failure = composer::check_file(&path).expect_err("five errors");
    let mut got = errors(&failure);
    got.sort_by_key(|(_, p)| p.map(str::to_string));
    assert_eq!(
        got,
        [
            (Code::UnknownNode, Some("edges[1]")),
            (Code::UnknownNodeType, Some("nodes[0].type")),
            (Code::InvalidTemplate, Some("nodes[1].prompt")),
            (Code::InvalidValue, Some("nodes[2].output_format")),
            (Code::InvalidValue, Some("user_inputs[0].default")),
        ],
        "{failure}"
    );
    // Each with its own line.
    let mut lines: Vec<usize> = failure.errors().filter_map(|d| d.line).collect();
    lines.sort_unstable();
    assert_eq!(lines, [6, 9, 13, 18, 21], "{failure}");
}

/// The message of the first error with `code` for a case folder.
fn message_of(dir: &str, code: Code) -> String {
    let failure = composer::check_file(&recipe_file(dir)).expect_err(dir);
    let message = failure
        .errors()
        .find(|d| d.code == code)
        .map(|d| d.message.clone());
    message.unwrap_or_else(|| panic!("{dir}: no {code:?} error:\n{failure}"))
}

/// `/x/dir/a.yaml -> /x/dir/b.yaml` → `a.yaml -> b.yaml`.
fn file_names_in(message: &str) -> String {
    let chain = message.split(": ").last().unwrap_or_default();
    chain
        .split(" -> ")
        .map(|p| file_name(Path::new(p)))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn cycles_name_the_whole_chain() {
    let imports = message_of("import_cycle", Code::ImportCycle);
    assert_eq!(
        file_names_in(&imports),
        "a.yaml -> b.yaml -> a.yaml",
        "{imports}"
    );

    let recipes = message_of("recursive_recipe_path", Code::SubRecipe);
    assert!(recipes.contains("`b.yaml` does not load"), "{recipes}");
    let failure = composer::check_file(&recipe_file("recursive_recipe_path")).unwrap_err();
    let cycle = failure
        .errors()
        .find(|d| d.code == Code::RecipeCycle)
        .expect("a recipe-cycle error");
    assert_eq!(
        file_names_in(&cycle.message),
        "recipe.yaml -> b.yaml -> recipe.yaml",
        "{}",
        cycle.message
    );

    let own = message_of("recipe_path_self", Code::RecipeCycle);
    assert_eq!(file_names_in(&own), "recipe.yaml -> recipe.yaml", "{own}");

    let references = message_of("reference_cycle", Code::ReferenceCycle);
    assert!(references.ends_with("@a -> @b -> @a"), "{references}");
}

/// Issue 17: one broken reference is reported once, not also as "a model
/// must be a mapping" for the text it left behind; the same for the
/// `@reference:` form.
#[test]
fn an_unknown_model_reference_is_reported_once() {
    for dir in [
        "unknown_reference",
        "reference_colon_form",
        "nested_reference_hint",
    ] {
        let recipe = recipe_file(dir);
        let failure = match composer::check_file(&recipe) {
            Ok(_) => panic!("{dir}: loaded"),
            Err(f) => f,
        };
        let errors: Vec<&Diagnostic> = failure.errors().collect();
        assert_eq!(
            errors.len(),
            1,
            "{dir}: one root cause, one error:\n{}",
            describe(&failure.diagnostics)
        );
        assert!(
            !errors[0].message.contains("must be a mapping"),
            "{}",
            errors[0].message
        );
    }
}

/// Issue 17: a reference or template in `recipe_path` is one error (the
/// path is never read).
#[test]
fn a_recipe_path_that_is_not_plain_is_one_error() {
    for dir in ["recipe_path_reference", "recipe_path_template"] {
        let recipe = recipe_file(dir);
        let failure = match composer::check_file(&recipe) {
            Ok(_) => panic!("{dir}: loaded"),
            Err(f) => f,
        };
        let errors: Vec<&Diagnostic> = failure.errors().collect();
        assert_eq!(
            errors.len(),
            1,
            "{dir}:\n{}",
            describe(&failure.diagnostics)
        );
        assert!(
            errors[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("relative to this recipe")),
            "{:?}",
            errors[0].hint
        );
    }
}
