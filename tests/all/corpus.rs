//! Every recipe of the original tool's corpus loads and validates unchanged
//! (RECIPES.md: "each must load, validate and run").

use crate::support;
use composer::engine::plan::Plan;
use composer::recipe::model::{
    Concurrency, ExecutionMode, FinalOutput, InputType, MapOnError, Node, NodeKind, OutputFormat,
    Prompt,
};
use composer::recipe::{Loaded, Severity};
use serde_json::json;
use std::path::{Path, PathBuf};

const CORPUS: &[&str] = &[
    "01_articles/article.json",
    "01_articles/better_article.yaml",
    "02_research/news_summary.json",
    "04_map_reduce_podcast/full_podcast.yaml",
];

fn check(relative: &str) -> (Loaded, Plan) {
    let path = support::corpus(relative);
    match composer::check_file(&path) {
        Ok(result) => result,
        Err(failure) => panic!("{relative} does not validate:\n{failure}"),
    }
}

fn node<'a>(plan: &'a Plan, id: &str) -> &'a Node {
    plan.recipe
        .node(id)
        .unwrap_or_else(|| panic!("no node `{id}` in {}", plan.recipe.name))
}

/// All recipe files under the corpus folder (definition files excluded).
fn recipe_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "definitions") {
                recipe_files(&path, found);
            }
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let is_recipe =
            (name.ends_with(".yaml") || name.ends_with(".json")) && name != "common.yaml";
        if is_recipe {
            found.push(path);
        }
    }
}

#[test]
fn the_list_covers_the_whole_corpus() {
    let root = support::fixture("corpus");
    let mut found = Vec::new();
    recipe_files(&root, &mut found);
    let mut found: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    found.sort();
    assert_eq!(found, CORPUS, "a corpus recipe is missing from CORPUS");
}

#[test]
fn every_corpus_recipe_validates_without_errors_or_warnings() {
    let mut failures = Vec::new();
    for relative in CORPUS {
        match composer::check_file(&support::corpus(relative)) {
            Ok((loaded, _)) => {
                assert!(
                    loaded
                        .warnings
                        .iter()
                        .all(|d| d.severity == Severity::Warning),
                    "{relative}: an error among warnings"
                );
                if !loaded.warnings.is_empty() {
                    let text: Vec<String> =
                        loaded.warnings.iter().map(ToString::to_string).collect();
                    failures.push(format!("{relative}: warnings:\n{}", text.join("\n")));
                }
            }
            Err(failure) => failures.push(format!("{relative}:\n{failure}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn article_json() {
    let (_, plan) = check("01_articles/article.json");
    let recipe = &plan.recipe;
    assert_eq!(recipe.name, "Simple Article Generation");
    assert_eq!(recipe.nodes.len(), 1);
    assert!(recipe.edges.is_none());
    assert!(plan.edges.is_empty());
    assert_eq!(plan.entries, vec![0]);
    assert!(plan.loops.is_empty());

    let input = &recipe.user_inputs[0];
    assert_eq!(input.id, "topic");
    assert_eq!(input.input_type, InputType::String);
    assert!(input.required);
    assert_eq!(
        input.default,
        Some(json!("The future of AI and its impact on society"))
    );

    let n = node(&plan, "generate_article");
    assert_eq!(n.output, "generate_article", "output defaults to the id");
    let model = n.model.as_ref().unwrap();
    assert_eq!(
        (model.provider.as_str(), model.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(model.params.get("temperature"), Some(&json!(0.7)));
    let NodeKind::LanguageTask {
        prompt,
        output_format,
        fallback,
    } = &n.kind
    else {
        panic!("not a language task: {:?}", n.kind);
    };
    assert!(matches!(prompt, Prompt::Inline(t) if t.contains("{{topic}}")));
    assert_eq!(*output_format, OutputFormat::Text);
    assert!(fallback.is_empty());
}

#[test]
fn better_article_yaml() {
    let (_, plan) = check("01_articles/better_article.yaml");
    let recipe = &plan.recipe;
    assert_eq!(recipe.name, "Better Article Generation with Expansion");
    assert_eq!(recipe.nodes.len(), 2);
    assert_eq!(recipe.edges.as_ref().map(Vec::len), Some(1));
    assert_eq!(plan.edges.len(), 1);
    assert_eq!(plan.entries, vec![0]);
    assert_eq!(recipe.user_inputs[0].input_type, InputType::Text);

    // The sub-recipe node: article.json, loaded with it.
    let first = node(&plan, "generate_initial_article");
    assert_eq!(first.output, "draft_article");
    let NodeKind::Recipe(sub) = &first.kind else {
        panic!("not a recipe node: {:?}", first.kind);
    };
    assert!(sub.recipe_path.ends_with("article.json"));
    assert_eq!(sub.recipe.name, "Simple Article Generation");
    let input_mapping = sub.input_mapping.as_ref().unwrap();
    assert_eq!(input_mapping.get("topic"), Some(&json!("topic")));
    let output_mapping = sub.output_mapping.as_ref().unwrap();
    assert_eq!(
        output_mapping.get("draft_article").map(String::as_str),
        Some("generate_article")
    );

    // `@reviewer` (from common.yaml) became a model mapping.
    let expand = node(&plan, "expand_article");
    let model = expand.model.as_ref().expect("@reviewer is a model");
    assert_eq!(model.provider, "openrouter");
    assert_eq!(model.model, "x-ai/grok-3-beta");
    assert_eq!(model.params.get("temperature"), Some(&json!(0.7)));
    // `@expand_article_prompt` (own definition) became the prompt text.
    let NodeKind::LanguageTask { prompt, .. } = &expand.kind else {
        panic!("not a language task");
    };
    assert!(
        prompt
            .text()
            .starts_with("Take the following draft article")
            && prompt.text().contains("{{draft_article}}"),
        "{}",
        prompt.text()
    );
    assert_eq!(expand.output, "final_article");
    assert!(matches!(
        recipe.final_outputs.as_deref(),
        Some([FinalOutput::Key(k)]) if k == "final_article"
    ));
}

#[test]
fn news_summary_json() {
    let (_, plan) = check("02_research/news_summary.json");
    let recipe = &plan.recipe;
    assert_eq!(recipe.name, "AI News Summary via Perplexity");
    // `"version": 1.0` is a JSON number, kept as text.
    let version = recipe.version.as_deref();
    assert!(
        matches!(version, Some("1.0") | Some("1")),
        "version {version:?}"
    );
    assert_eq!(recipe.nodes.len(), 2);
    assert_eq!(plan.edges.len(), 1);
    assert_eq!(
        (
            plan.node_name(plan.edges[0].from),
            plan.node_name(plan.edges[0].to)
        ),
        ("fetch_ai_news", "summarize_news")
    );

    let ids: Vec<&str> = recipe.user_inputs.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "main_topic",
            "research_instructions",
            "summary_instructions",
            "recency",
            "mode"
        ]
    );
    let recency = &recipe.user_inputs[3];
    assert_eq!(recency.input_type, InputType::Literal);
    assert_eq!(
        recency.literal_values,
        Some(vec![
            json!("day"),
            json!("week"),
            json!("month"),
            json!("year"),
            json!("any")
        ])
    );
    assert_eq!(recency.default, Some(json!("week")));
    assert_eq!(recipe.user_inputs[4].default, Some(json!("fast")));

    let fetch = node(&plan, "fetch_ai_news");
    assert!(matches!(
        &fetch.kind,
        NodeKind::FunctionTask { function_identifier } if function_identifier == "perplexity_search"
    ));
    let input = fetch.input.as_ref().unwrap();
    assert_eq!(input.get("recency"), Some(&json!("{{recency}}")));

    // `@summarizer_model` (own definition) is a whole model mapping.
    let summarize = node(&plan, "summarize_news");
    let model = summarize.model.as_ref().unwrap();
    assert_eq!(
        (model.provider.as_str(), model.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(model.params.get("max_tokens"), Some(&json!(1500)));
    let NodeKind::LanguageTask { prompt, .. } = &summarize.kind else {
        panic!("not a language task");
    };
    assert!(prompt.text().starts_with("You are an expert news analyst."));
    assert!(prompt.text().contains("{{fetch_ai_news.content}}"));

    let finals: Vec<&str> = recipe
        .final_outputs
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| match f {
            FinalOutput::Key(k) => k.as_str(),
            FinalOutput::Entry { id, .. } => id.as_str(),
        })
        .collect();
    assert_eq!(finals, ["summarize_news", "fetch_ai_news.citations"]);
}

#[test]
fn full_podcast_yaml() {
    let (_, plan) = check("04_map_reduce_podcast/full_podcast.yaml");
    let recipe = &plan.recipe;
    assert_eq!(recipe.name, "Podcast Generation Test");
    assert_eq!(recipe.user_inputs.len(), 4);
    assert!(recipe.user_inputs.iter().all(|u| u.required));
    let types: Vec<&str> = recipe.nodes.iter().map(|n| n.kind.type_name()).collect();
    assert_eq!(types, ["language_task", "function_task", "map", "reduce"]);
    assert_eq!(plan.edges.len(), 3);
    assert_eq!(plan.entries, vec![0]);
    assert!(plan.loops.is_empty());

    let transcript = node(&plan, "generate_transcript");
    assert_eq!(transcript.output, "full_transcript");
    let model = transcript.model.as_ref().unwrap();
    assert_eq!(model.provider, "openrouter");
    assert_eq!(model.params.get("max_tokens"), Some(&json!(5000)));

    let split = node(&plan, "perform_text_split");
    assert_eq!(split.output, "transcription_phrases_result");
    let input = split.input.as_ref().unwrap();
    assert_eq!(
        input.get("voice_mapping"),
        Some(&json!(
            "{{ {'Speaker A': default_voice_id, 'Speaker B': speaker_b_voice_id} }}"
        ))
    );

    let map = node(&plan, "generate_audio_for_phrases");
    assert_eq!(map.output, "all_individual_audio_segment_data");
    let NodeKind::Map(spec) = &map.kind else {
        panic!("not a map: {:?}", map.kind);
    };
    assert_eq!(spec.over, "transcription_phrases_result.phrases");
    assert_eq!(spec.on_error, MapOnError::Halt);
    assert_eq!(spec.execution_mode, ExecutionMode::Parallel);
    assert_eq!(spec.max_concurrency, Concurrency::Auto);
    assert!(matches!(spec.task.kind, NodeKind::TextToSpeechTask));
    assert_eq!(spec.task.output, "individual_audio_path");
    let task_model = spec.task.model.as_ref().unwrap();
    assert_eq!(
        (task_model.provider.as_str(), task_model.model.as_str()),
        ("elevenlabs", "eleven_multilingual_v2")
    );
    let task_input = spec.task.input.as_ref().unwrap();
    assert_eq!(task_input.get("voice"), Some(&json!("voice_id")));

    let reduce = node(&plan, "combine_podcast_audio");
    assert!(matches!(
        &reduce.kind,
        NodeKind::Reduce { function_identifier } if function_identifier == "combine_audio_files"
    ));
    assert_eq!(reduce.output, "final_podcast_details");
    assert!(recipe.final_outputs.is_none());
}
