//! `composer run RECIPE`

use super::progress::{LogLines, TerminalProgress};
use crate::app::{Composer, RecipeSource, RunOptions};
use crate::cache::CacheMode;
use crate::engine::events::EventSink;
use crate::engine::runner::RunScope;
use crate::nodes::{HumanInput, HumanRequest};
use crate::plugins::discovery::search_path;
use crate::recipe::document::{self, Format};
use crate::recipe::model::ModelSpec;
use async_trait::async_trait;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The recipe file (YAML or JSON).
    pub recipe: PathBuf,
    /// An input value, `KEY=VALUE` (repeatable).
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Input values from a JSON or YAML mapping.
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Use this model for every node, e.g. `mock/echo` to run offline.
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Folder for run outputs (each run gets its own folder inside).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print only the final outputs, as one JSON object, on stdout.
    #[arg(long)]
    pub json: bool,
    /// A human reply for a hitl node: `NODE=JSON` or `NODE=@reply.json`.
    #[arg(long, value_name = "NODE=JSON")]
    pub reply: Vec<String>,
    /// Settings file (default: `composer.toml` in the working directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Accept inputs the recipe does not declare.
    #[arg(long)]
    pub allow_extra_inputs: bool,
    /// `--metrics`, `--trace FILE.json`.
    #[command(flatten)]
    pub observe: super::observe::ObserveArgs,
    /// Write a guest profile (Firefox profiler JSON) of every plugin call
    /// into this folder.
    #[arg(long, value_name = "DIR")]
    pub profile_plugins: Option<PathBuf>,
    /// Neither read nor write the result cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not read the result cache, but store fresh results in it.
    #[arg(long, conflicts_with = "no_cache")]
    pub refresh: bool,
}

/// Exit code 2: the run could not start (bad recipe, inputs or flags).
pub(super) fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub fn run(args: RunArgs) -> ExitCode {
    let (settings, warnings) = match crate::config::discover(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let loaded = match crate::recipe::load_file(&args.recipe) {
        Ok(l) => l,
        Err(failure) => {
            if args.json {
                let lines = failure.diagnostics.iter().map(ToString::to_string);
                print_not_started(&crate::engine::error::RunError::InvalidRecipe(
                    lines.collect(),
                ));
            }
            super::print_failure(&failure);
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let inputs = match collect_inputs(&args) {
        Ok(i) => i,
        Err(e) => return usage_error(e),
    };
    let replies = match parse_replies(&args.reply) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let model_override = match args.model.as_deref().map(parse_model).transpose() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };

    let terminal = std::io::stderr().is_terminal();
    let progress = terminal.then(|| Arc::new(TerminalProgress::new()));
    let events: Arc<dyn EventSink> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(LogLines),
    };
    let observer = super::observe::Observer::new(&args.observe, &loaded.recipe);
    let events = observer.wrap(events);
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| settings.engine.output_dir.clone());
    let allow_extra_inputs = args.allow_extra_inputs || settings.engine.allow_extra_inputs;
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let mut settings = settings;
    if let Some(dir) = &args.profile_plugins {
        settings.plugins.profile_dir = Some(dir.clone());
    }
    let recipe_dir = loaded.recipe.base_dir.clone();
    // Plugins are found wherever composer runs: the recipe's own folders
    // join the search path (plugins/discovery.rs).
    settings.plugins.paths = search_path(&settings.plugins.paths, Some(&recipe_dir));
    // The same storage, cache and rate limits as `serve` and `worker` with
    // these settings (`[storage] url`, `[cache] redis_url`).
    let app = match runtime.block_on(Composer::connect(settings, &[Path::new("."), &recipe_dir])) {
        Ok(app) => app,
        Err(e) => return usage_error(e),
    };
    for w in app.warnings() {
        eprintln!("warning: {w}");
    }
    if !loaded.recipe.functions().is_empty() {
        for w in &runtime.block_on(app.project_functions()).1 {
            eprintln!("warning: {w}");
        }
    }
    let options = RunOptions {
        model_override,
        out_root,
        replies,
        events,
        allow_extra_inputs,
        cache_mode: if args.no_cache {
            CacheMode::Off
        } else if args.refresh {
            CacheMode::Refresh
        } else {
            CacheMode::Use
        },
        human: terminal_human(&progress),
        local_functions: None,
        plugin_policy: None,
    };
    let source = match std::fs::canonicalize(&args.recipe) {
        Ok(p) => RecipeSource::File(p),
        Err(_) => RecipeSource::File(args.recipe.clone()),
    };
    let scope = RunScope {
        source: source.to_json(),
        ..Default::default()
    };
    let started = runtime.block_on(app.run(loaded.recipe, inputs, options, scope));
    let outcome = match started {
        Ok(o) => o,
        Err(not_started) => return report_not_started(&not_started.0, args.json),
    };
    finish(&app, Some(&observer), &outcome, args.json)
}

/// The async runtime of one command.
pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// On a terminal, `hitl` nodes ask there.
pub(super) fn terminal_human(
    progress: &Option<Arc<TerminalProgress>>,
) -> Option<Arc<dyn crate::nodes::HumanInput>> {
    std::io::stdin().is_terminal().then(|| {
        Arc::new(TerminalHuman {
            progress: progress.clone(),
        }) as Arc<dyn crate::nodes::HumanInput>
    })
}

/// Exit code 2, each problem on its own line; with `--json`, the failure
/// as JSON on stdout too.
pub(super) fn report_not_started(e: &crate::engine::error::RunError, json: bool) -> ExitCode {
    if json {
        print_not_started(e);
    }
    let problems: Vec<String> = match e {
        crate::engine::error::RunError::Preflight(p)
        | crate::engine::error::RunError::InvalidRecipe(p) => p.clone(),
        crate::engine::error::RunError::Inputs(p) => p.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    };
    if problems.len() > 1 {
        eprintln!("error: the run cannot start:");
        for line in problems {
            eprintln!("  - {line}");
        }
    } else {
        eprintln!("error: {}", problems.join(""));
    }
    ExitCode::from(2)
}

/// `{"outputs": {}, "status": "not_started", "error": {"kind", ...}}` on
/// stdout, for `--json`.
fn print_not_started(e: &crate::engine::error::RunError) {
    let failure = e.failure();
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"outputs": {}, "status": "not_started", "error": failure})
        )
        .unwrap_or_default()
    );
}

/// Prints a run's outcome. Exit code 0 when it succeeded, 1 when it
/// failed or was cancelled, 3 when it waits for a human reply.
pub(super) fn finish(
    app: &Composer,
    observer: Option<&super::observe::Observer>,
    outcome: &crate::engine::runner::RunOutcome,
    json: bool,
) -> ExitCode {
    let metrics = observer.and_then(|o| o.after_run());
    if let Some(failure) = app.cache().and_then(|c| c.failure()) {
        eprintln!("warning: the result cache could not use its database ({failure}); results were kept in memory only");
    }
    if let Some(crate::engine::error::RunError::Waiting { nodes }) = &outcome.error {
        if json {
            let value = serde_json::json!({"outputs": {}, "status": "waiting", "waiting": nodes, "run_id": outcome.run_id});
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        eprintln!(
            "run {} waits for a human reply to {}; answer with `composer runs reply {} NODE '{{...}}'` (or run again with `--reply NODE=JSON`)",
            outcome.run_id,
            nodes.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            outcome.run_id,
        );
        return ExitCode::from(3);
    }
    if let Some(e) = &outcome.error {
        if json {
            let mut value =
                super::observe::Observer::json_output(metrics.as_ref(), &outcome.outputs);
            if let serde_json::Value::Object(m) = &mut value {
                if !m.contains_key("outputs") {
                    let outputs = std::mem::take(m);
                    m.insert("outputs".into(), serde_json::Value::Object(outputs));
                }
                m.insert("status".into(), serde_json::json!(outcome.status.as_str()));
                m.insert(
                    "error".into(),
                    serde_json::to_value(e.failure()).unwrap_or_default(),
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        eprintln!("error: {e}");
        eprintln!(
            "run {} {} after {:.2}s",
            outcome.run_id,
            if outcome.status == crate::engine::events::RunStatus::Cancelled {
                "was cancelled"
            } else {
                "failed"
            },
            outcome.duration.as_secs_f64()
        );
        return ExitCode::FAILURE;
    }
    if json {
        let value = super::observe::Observer::json_output(metrics.as_ref(), &outcome.outputs);
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot encode outputs: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for (key, value) in &outcome.outputs {
            println!("── {key} ──");
            match value {
                serde_json::Value::String(s) => println!("{s}"),
                other => println!(
                    "{}",
                    serde_json::to_string_pretty(other).unwrap_or_default()
                ),
            }
        }
    }
    eprintln!(
        "run {} finished in {:.2}s; files in {}{}",
        outcome.run_id,
        outcome.duration.as_secs_f64(),
        outcome.out_dir.display(),
        if outcome.mock {
            " (outputs made by the mock provider)"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}

/// `--inputs FILE` first, then each `-i KEY=VALUE` over it.
fn collect_inputs(args: &RunArgs) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    inputs_from(args.inputs_file.as_deref(), &args.inputs)
}

/// Inputs from a mapping file (if any), then each `KEY=VALUE` over them.
pub(super) fn inputs_from(
    file: Option<&Path>,
    pairs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut inputs = serde_json::Map::new();
    if let Some(file) = file {
        let doc = read_value(file)?;
        match doc {
            serde_json::Value::Object(m) => inputs.extend(m),
            _ => {
                return Err(format!(
                    "`{}` must hold a mapping of input values",
                    file.display()
                ))
            }
        }
    }
    for entry in pairs {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!("input `{entry}` must read KEY=VALUE"));
        };
        inputs.insert(
            key.trim().to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    Ok(inputs)
}

pub(super) fn read_value(file: &Path) -> Result<serde_json::Value, String> {
    let doc = crate::recipe::load::read_document(file).map_err(|d| d.to_string())?;
    Ok(doc.value)
}

pub(super) fn parse_replies(
    entries: &[String],
) -> Result<HashMap<String, serde_json::Value>, String> {
    let mut replies = HashMap::new();
    for entry in entries {
        let Some((node, reply)) = entry.split_once('=') else {
            return Err(format!(
                "reply `{entry}` must read NODE=JSON or NODE=@file.json"
            ));
        };
        let value = match reply.strip_prefix('@') {
            Some(file) => read_value(Path::new(file))?,
            None => document::parse(reply, Format::Json, Path::new("--reply"))
                .map(|d| d.value)
                .map_err(|e| format!("reply for `{node}` is not JSON: {}", e.message))?,
        };
        replies.insert(node.trim().to_string(), value);
    }
    Ok(replies)
}

pub(super) fn parse_model(text: &str) -> Result<ModelSpec, String> {
    match text.split_once('/') {
        Some((provider, model)) if !provider.is_empty() && !model.is_empty() => Ok(ModelSpec {
            provider: provider.to_string(),
            model: model.to_string(),
            params: serde_json::Map::new(),
        }),
        _ => Err(format!(
            "--model `{text}` must read PROVIDER/MODEL, e.g. mock/echo"
        )),
    }
}

/// Asks on the terminal: shows the node's inputs, reads a JSON object.
struct TerminalHuman {
    progress: Option<Arc<TerminalProgress>>,
}

#[async_trait]
impl HumanInput for TerminalHuman {
    async fn ask(&self, request: HumanRequest) -> Result<serde_json::Value, String> {
        let progress = self.progress.clone();
        tokio::task::spawn_blocking(move || {
            let ask = || -> Result<serde_json::Value, String> {
                eprintln!("\n── {} needs your reply ──", request.node);
                if let Some(p) = &request.prompt {
                    eprintln!("{p}");
                }
                eprintln!(
                    "{}",
                    serde_json::to_string_pretty(&request.shown).unwrap_or_default()
                );
                if !request.required_fields.is_empty() {
                    eprintln!("required fields: {}", request.required_fields.join(", "));
                }
                loop {
                    eprint!("reply (a JSON object)> ");
                    let mut line = String::new();
                    let n = std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("no reply (end of input)".into());
                    }
                    match serde_json::from_str::<serde_json::Value>(line.trim()) {
                        Ok(v @ serde_json::Value::Object(_)) => {
                            let missing: Vec<&String> = request
                                .required_fields
                                .iter()
                                .filter(|f| v.get(f.as_str()).is_none())
                                .collect();
                            if missing.is_empty() {
                                return Ok(v);
                            }
                            eprintln!("missing: {missing:?}; try again");
                        }
                        Ok(_) => eprintln!("a JSON object, please, e.g. {{\"approved\": true}}"),
                        Err(e) => eprintln!("not JSON ({e}); try again"),
                    }
                }
            };
            match progress {
                Some(p) => p.suspend(ask),
                None => ask(),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
