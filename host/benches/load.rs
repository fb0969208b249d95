//! How long `composer::check_file` (load, imports, `@` references,
//! validation, graph plan) takes on a large generated recipe.
//!
//! The recipes are written once into a temporary folder: 20 definition files
//! (plain and namespaced imports, some importing each other), a 10,000-node
//! recipe with 1,000 `@` references, and a 100-node recipe built the same way.
//! Each is checked once (it must load without a single diagnostic) before it
//! is timed.
//!
//! Run with `cargo bench --bench load`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Number of definition files the recipes import.
const DEFINITION_FILES: usize = 20;
/// Files from this index on import the previous one (a transitive chain).
const CHAINED_FROM: usize = 16;
/// `@` references written in the recipe file outside its nodes: two in its
/// own `definitions:` and one for `model_config`.
const HEADER_REFERENCES: usize = 3;

fn id(i: usize) -> String {
    format!("n{i:05}")
}

/// Even files are imported as plain paths, odd ones under namespace `ns<i>`.
fn namespaced(i: usize) -> bool {
    i % 2 == 1
}

/// An even (plain) file index, to name `writer_<k>` / `hint_<k>`.
fn plain_file(k: usize) -> usize {
    (k * 2) % DEFINITION_FILES
}

/// An odd (namespaced) file index.
fn namespaced_file(k: usize) -> usize {
    (k * 2 + 1) % DEFINITION_FILES
}

/// Writes `defs/def_00.yaml` .. `defs/def_19.yaml` into `dir`.
///
/// Plain files hold `writer_<i>` (a model) and `hint_<i>` (text) under a
/// `definitions:` key; namespaced files hold `model_a`, `model_b` (a local
/// reference to `model_a`) and `topic` at their top level. Files 16 to 19
/// each import their predecessor (def_18 under the namespace `inner`, the
/// others plainly), so that definitions travel through a chain of five files.
fn write_definitions(dir: &Path) {
    let defs = dir.join("defs");
    std::fs::create_dir_all(&defs).expect("create defs dir");
    for i in 0..DEFINITION_FILES {
        let mut text = String::new();
        let chained = i >= CHAINED_FROM;
        if chained {
            let previous = format!("def_{:02}.yaml", i - 1);
            if i % 4 == 2 {
                writeln!(text, "imports:\n  - {{path: {previous}, namespace: inner}}").unwrap();
            } else {
                writeln!(text, "imports:\n  - {previous}").unwrap();
            }
        }
        if namespaced(i) {
            // A chained odd file takes its model from what it imported.
            let model_a = if chained {
                format!("\"@writer_{}\"", i - 1)
            } else {
                format!(
                    "\n  provider: mock\n  model: \"m-{i}-a\"\n  temperature: 0.{}",
                    i % 10
                )
            };
            writeln!(
                text,
                "model_a: {model_a}\nmodel_b: \"@model_a\"\ntopic: \"topic number {i}\""
            )
            .unwrap();
        } else {
            let writer = if chained && i % 4 == 2 {
                // Imported namespaced as `inner`: a dotted reference into it.
                "\"@inner.model_a\"".to_string()
            } else {
                format!("\n    provider: mock\n    model: \"writer-{i}\"\n    temperature: 0.7")
            };
            writeln!(
                text,
                "definitions:\n  writer_{i}: {writer}\n  hint_{i}: \"subject {i}\""
            )
            .unwrap();
        }
        std::fs::write(defs.join(format!("def_{i:02}.yaml")), text).expect("write definitions");
    }
}

/// What the generator wrote, for the sanity checks.
struct Generated {
    path: PathBuf,
    nodes: usize,
    references: usize,
}

/// Writes a recipe with `nodes` nodes and exactly `references` `@`
/// references into `dir` (next to `defs/`).
///
/// Nodes cycle through ten kinds: six `language_task`s (positions 0-5), three
/// `function_task`s (6-8) and one `map` (9). The language task at position 0
/// carries the references, rotating through a whole-value model reference,
/// a direct import, two interpolations in the prompt and a dotted reference
/// into a namespace. Edges: a chain from START to END, a fan-out/fan-in
/// diamond every 50 nodes and a conditional skip edge every 100.
fn write_recipe(dir: &Path, name: &str, nodes: usize, references: usize) -> Generated {
    assert!(references >= HEADER_REFERENCES && references - HEADER_REFERENCES <= nodes / 10);
    let mut y = String::with_capacity(nodes * 400);
    y.push_str("imports:\n");
    for i in 0..DEFINITION_FILES {
        if namespaced(i) {
            writeln!(y, "  - {{path: defs/def_{i:02}.yaml, namespace: ns{i}}}").unwrap();
        } else {
            writeln!(y, "  - defs/def_{i:02}.yaml").unwrap();
        }
    }
    // HEADER_REFERENCES counts the three `@`s below.
    y.push_str(
        "definitions:\n\
         \x20 writer: \"@writer_0\"\n\
         \x20 editor:\n\
         \x20   provider: mock\n\
         \x20   model: editor-1\n\
         \x20   temperature: 0.2\n\
         \x20 topic_hint: \"the history of @hint_2\"\n",
    );
    writeln!(
        y,
        "recipe:\n  name: \"Generated benchmark recipe ({nodes} nodes)\""
    )
    .unwrap();
    y.push_str(
        "  description: Generated by host/benches/load.rs\n\
         \x20 user_inputs:\n\
         \x20   - id: topic\n\
         \x20     type: string\n\
         \x20     default: \"tide pools\"\n\
         \x20   - id: audience\n\
         \x20     type: literal\n\
         \x20     literal_values: [children, experts]\n\
         \x20     default: children\n\
         \x20     required: false\n\
         \x20 model_config: \"@writer\"\n\
         \x20 nodes:\n",
    );

    let mut used = HEADER_REFERENCES;
    for i in 0..nodes {
        let prev = if i == 0 {
            "topic".to_string()
        } else {
            id(i - 1)
        };
        writeln!(y, "    - id: {}", id(i)).unwrap();
        match i % 10 {
            0..=5 => {
                let slot = i % 10 == 0 && used < references;
                let kind = (i / 10) % 5;
                let model = if slot && kind == 0 {
                    "\"@writer\"".to_string()
                } else if slot && kind == 1 {
                    format!("\"@writer_{}\"", plain_file(i / 50))
                } else if slot && kind == 4 {
                    format!(
                        "{{provider: mock, model: \"@ns{}.model_a.model\", temperature: 0.3}}",
                        namespaced_file(i / 50)
                    )
                } else {
                    format!(
                        "{{provider: mock, model: \"local-{}\", max_tokens: 500}}",
                        i % 7
                    )
                };
                let mention = match (slot, kind) {
                    (true, 2) => " Write about @topic_hint.".to_string(),
                    (true, 3) => format!(" Keep the tone of @hint_{}.", plain_file(i / 50)),
                    _ => String::new(),
                };
                if slot {
                    used += 1;
                }
                writeln!(
                    y,
                    "      type: language_task\n\
                     \x20     model: {model}\n\
                     \x20     input:\n\
                     \x20       previous: \"{{{{ {prev} | default('') }}}}\"\n\
                     \x20       topic: topic\n\
                     \x20     prompt: \"Step {i}: continue {{{{ previous | truncate(200) }}}} \
                     on {{{{ topic | upper }}}}{{% if audience %}} for {{{{ audience }}}}{{% endif %}}.{mention}\""
                )
                .unwrap();
                if i % 3 == 0 {
                    y.push_str("      output_format: text\n      retry: 2\n");
                }
            }
            6..=8 => {
                writeln!(
                    y,
                    "      type: function_task\n\
                     \x20     function_identifier: fn_{}\n\
                     \x20     input:\n\
                     \x20       text: \"{{{{ {prev} }}}}\"\n\
                     \x20       limit: {}\n\
                     \x20       words: \"{{{{ {prev} | wordcount }}}}\"",
                    i % 4,
                    i % 100
                )
                .unwrap();
                if i % 10 == 8 {
                    y.push_str("      on_error: continue\n");
                }
            }
            _ => {
                let task = if (i / 10) % 2 == 0 {
                    "        type: language_task\n\
                     \x20       model: {provider: mock, model: per-item}\n\
                     \x20       prompt: \"Item {{ index }}: {{ item }} ({{ topic }})\""
                } else {
                    "        type: function_task\n\
                     \x20       function_identifier: shout\n\
                     \x20       input:\n\
                     \x20         text: \"{{ item }}\""
                };
                let mode = if (i / 10) % 3 == 0 {
                    "sequential"
                } else {
                    "parallel"
                };
                writeln!(
                    y,
                    "      type: map\n\
                     \x20     over: {prev}.items\n\
                     \x20     execution_mode: {mode}\n\
                     \x20     max_concurrency: {}\n\
                     \x20     on_error: skip\n\
                     \x20     task:\n{task}",
                    if i % 20 == 9 {
                        "auto".to_string()
                    } else {
                        "4".to_string()
                    }
                )
                .unwrap();
            }
        }
    }
    assert_eq!(used, references, "not enough reference slots");

    y.push_str("  edges:\n");
    writeln!(y, "    - \"START to {}\"", id(0)).unwrap();
    for i in 1..nodes {
        writeln!(y, "    - \"{} to {}\"", id(i - 1), id(i)).unwrap();
    }
    for b in (0..nodes).step_by(50) {
        if b + 5 < nodes {
            // Fan out from b to b+2 and b+3, fan in again at b+5.
            for (from, to) in [(b, b + 2), (b, b + 3), (b + 2, b + 5), (b + 3, b + 5)] {
                writeln!(y, "    - \"{} to {}\"", id(from), id(to)).unwrap();
            }
        }
    }
    for b in (0..nodes).step_by(100) {
        if b + 7 < nodes {
            writeln!(
                y,
                "    - {{from: {}, to: {}, condition: \"{{{{ {} is defined and {} }}}}\"}}",
                id(b),
                id(b + 7),
                id(b),
                id(b)
            )
            .unwrap();
        }
    }
    writeln!(y, "    - \"{} to END\"", id(nodes - 1)).unwrap();
    writeln!(
        y,
        "  final_outputs:\n\
         \x20   - {last}\n\
         \x20   - {{id: summary, value: \"{{{{ {last} }}}}\", condition: \"{{{{ {last} }}}}\"}}",
        last = id(nodes - 1)
    )
    .unwrap();

    assert_eq!(
        y.matches('@').count(),
        references,
        "generated recipe must hold exactly {references} `@` references"
    );
    let path = dir.join(name);
    std::fs::write(&path, y).expect("write recipe");
    Generated {
        path,
        nodes,
        references,
    }
}

/// Loads the recipe once and checks that it is what the generator meant:
/// no diagnostics at all, every node present, references resolved.
fn assert_valid(g: &Generated) {
    let (loaded, plan) = match composer::check_file(&g.path) {
        Ok(ok) => ok,
        Err(failure) => {
            eprintln!(
                "generated recipe {} does not validate ({} diagnostics):",
                g.path.display(),
                failure.diagnostics.len()
            );
            for d in failure.diagnostics.iter().take(50) {
                eprintln!("  {d}");
            }
            panic!("generated recipe does not validate");
        }
    };
    if !loaded.warnings.is_empty() {
        for d in loaded.warnings.iter().take(50) {
            eprintln!("  {d}");
        }
        panic!(
            "generated recipe loads with {} warnings",
            loaded.warnings.len()
        );
    }
    let recipe = &loaded.recipe;
    assert_eq!(recipe.nodes.len(), g.nodes);
    assert_eq!(plan.nodes.len(), g.nodes);
    assert!(plan.loops.is_empty(), "the generated graph has no loops");
    assert_eq!(plan.entries, vec![0]);

    // References resolved: none left, and the rotating kinds gave the
    // values the definition files hold.
    let text = serde_json::to_string(&**recipe).expect("serialise recipe");
    assert!(!text.contains('@'), "an `@` reference was left unresolved");
    let model = |i: usize| recipe.nodes[i].model.as_ref().expect("node has a model");
    let prompt = |i: usize| match &recipe.nodes[i].kind {
        composer::recipe::model::NodeKind::LanguageTask { prompt, .. } => prompt.text().to_string(),
        other => panic!("node {i} is a {}", other.type_name()),
    };
    assert_eq!(
        recipe.model_config.as_ref().map(|m| m.model.as_str()),
        Some("writer-0")
    );
    assert_eq!(model(0).model, "writer-0");
    if g.nodes >= 50 {
        assert_eq!(model(10).model, "writer-0");
        assert!(prompt(20).ends_with("Write about the history of subject 2."));
        assert!(prompt(30).ends_with("Keep the tone of subject 0."));
        assert_eq!(model(40).model, "m-1-a");
    }
    if g.nodes >= 500 {
        // def_19 (ns19) imports def_18, which imports def_17 as `inner`,
        // which imports def_16: writer_18 is @inner.model_a, that is
        // def_17's @writer_16; ns19.model_a is @writer_18.
        assert_eq!(model(460).model, "writer-16");
        assert_eq!(model(490).model, "writer-16");
    }
    println!(
        "{}: {} nodes, {} edges, {} `@` references, {} bytes",
        g.path.file_name().unwrap().to_string_lossy(),
        recipe.nodes.len(),
        plan.edges.len(),
        g.references,
        std::fs::metadata(&g.path).expect("stat recipe").len()
    );
}

fn bench_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_definitions(dir.path());
    let large = write_recipe(dir.path(), "large.yaml", 10_000, 1_000);
    let small = write_recipe(dir.path(), "small.yaml", 100, 10 + HEADER_REFERENCES);
    assert_valid(&large);
    assert_valid(&small);

    let mut group = c.benchmark_group("check_file");
    group.sample_size(10);

    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(large.nodes as u64));
    group.bench_function("10000_nodes", |b| {
        b.iter(|| composer::check_file(std::hint::black_box(&large.path)).expect("loads"));
    });

    group.sampling_mode(SamplingMode::Auto);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(small.nodes as u64));
    group.bench_function("100_nodes", |b| {
        b.iter(|| composer::check_file(std::hint::black_box(&small.path)).expect("loads"));
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
