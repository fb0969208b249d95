//! `composer runs list|show`

use crate::store::RunFilter;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        recipe: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: inputs, status, outputs, error and its nodes.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Continue a run whose process died, or that waits for a human: only
    /// nodes that had not finished run again.
    Resume(ResumeArgs),
    /// Store a human reply for a waiting run's `hitl` node, then continue
    /// it (`--no-resume`: only store the reply).
    Reply {
        run_id: String,
        node: String,
        /// The reply: a JSON object, or `@file.json`.
        reply: String,
        #[arg(long)]
        no_resume: bool,
        /// Print only the final outputs, as one JSON object, on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The run to continue.
    pub run_id: String,
    /// A human reply for a hitl node: `NODE=JSON` or `NODE=@reply.json`.
    #[arg(long, value_name = "NODE=JSON")]
    pub reply: Vec<String>,
    /// Print only the final outputs, as one JSON object, on stdout.
    #[arg(long)]
    pub json: bool,
}

fn time(unix: f64) -> String {
    let secs = unix as u64;
    let (y, m, d) = crate::engine::runner::civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

pub fn run(command: RunsCommand, settings: crate::config::Settings) -> ExitCode {
    let command = match command {
        RunsCommand::Resume(args) => return resume(settings, args, None),
        RunsCommand::Reply {
            run_id,
            node,
            reply,
            no_resume,
            json,
        } => {
            let resume = ResumeArgs {
                run_id,
                reply: Vec::new(),
                json,
            };
            return resume_with_reply(settings, resume, node, reply, no_resume);
        }
        other => other,
    };
    let Some(runtime) = super::run::runtime() else {
        return ExitCode::FAILURE;
    };
    // The run store the settings name: SQLite, or `[storage] url`'s
    // PostgreSQL (where `serve` and `worker` record runs too).
    let app = match runtime.block_on(crate::app::Composer::connect(settings, &[])) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(store) = app.store() else {
        eprintln!("error: {}", app.warnings().join("; "));
        return ExitCode::FAILURE;
    };
    let location = app.storage_location();
    match command {
        RunsCommand::List {
            recipe,
            limit,
            json,
        } => {
            let filter = RunFilter {
                recipe,
                limit: Some(limit),
                ..Default::default()
            };
            match runtime.block_on(store.runs(filter)) {
                Ok(runs) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&runs).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(runs) => {
                    if runs.is_empty() {
                        println!("no runs recorded in {location}");
                    }
                    for r in runs {
                        let wall = r
                            .finished_at
                            .map(|f| format!("{:.2}s", f - r.started_at))
                            .unwrap_or_else(|| "-".into());
                        println!(
                            "{}  {}  {:<9} {:>8}  {}",
                            r.id,
                            time(r.started_at),
                            r.status,
                            wall,
                            r.recipe
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        RunsCommand::Show { run_id, json } => {
            let found = runtime.block_on(async {
                match store.run(&run_id).await? {
                    Some(run) => Ok(Some((run, store.nodes(&run_id).await?))),
                    None => Ok(None),
                }
            });
            match found {
                Ok(Some((run, nodes))) if json => {
                    let v = serde_json::json!({"run": run, "nodes": nodes});
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(Some((run, nodes))) => {
                    print_run(&run, &nodes);
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    eprintln!("error: no run `{run_id}` in {location}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    let e: crate::store::StoreError = e;
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        RunsCommand::Resume(_) | RunsCommand::Reply { .. } => ExitCode::from(2),
    }
}

fn print_run(run: &crate::store::RunRecord, nodes: &[crate::store::NodeRecord]) {
    println!("{} ({}) {}", run.id, run.recipe, run.status);
    println!("  started  {}", time(run.started_at));
    if let Some(f) = run.finished_at {
        println!("  finished {} ({:.2}s)", time(f), f - run.started_at);
    }
    println!("  inputs   {}", run.inputs);
    if let Some(e) = &run.error {
        println!("  error    {e}");
    }
    println!("  nodes:");
    for n in nodes {
        let d = n.duration.map(|d| format!("{d:.3}s")).unwrap_or_default();
        println!("    {:<32} {:<10} {d}", n.node, n.status);
        if let Some(e) = &n.error {
            println!("      error: {e}");
        }
    }
    if let Some(o) = &run.outputs {
        println!(
            "  outputs:\n{}",
            serde_json::to_string_pretty(o).unwrap_or_default()
        );
    }
}

fn resume_with_reply(
    settings: crate::config::Settings,
    args: ResumeArgs,
    node: String,
    reply: String,
    no_resume: bool,
) -> ExitCode {
    let value = match super::run::parse_replies(&[format!("{node}={reply}")]) {
        Ok(mut r) => r.remove(node.trim()).unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !value.is_object() {
        eprintln!("error: the reply for `{node}` must be a JSON object");
        return ExitCode::from(2);
    }
    resume(settings, args, Some((node, value, no_resume)))
}

fn resume(
    settings: crate::config::Settings,
    args: ResumeArgs,
    reply: Option<(String, serde_json::Value, bool)>,
) -> ExitCode {
    use super::progress::{LogLines, TerminalProgress};
    use std::io::IsTerminal;
    let Some(runtime) = super::run::runtime() else {
        return ExitCode::FAILURE;
    };
    let replies = match super::run::parse_replies(&args.reply) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let out_root = settings.engine.output_dir.clone();
    let app = match runtime.block_on(crate::app::Composer::connect(settings, &[Path::new(".")])) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((node, value, no_resume)) = reply {
        if let Err(e) = runtime.block_on(app.reply(&args.run_id, &node, &value)) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        if no_resume {
            eprintln!(
                "reply stored; continue with `composer runs resume {}`",
                args.run_id
            );
            return ExitCode::SUCCESS;
        }
    }
    let terminal = std::io::stderr().is_terminal();
    let progress = terminal.then(|| Arc::new(TerminalProgress::new()));
    let events: Arc<dyn crate::engine::events::EventSink> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(LogLines),
    };
    let options = crate::app::RunOptions {
        model_override: None,
        out_root,
        replies,
        events,
        allow_extra_inputs: true,
        cache_mode: crate::cache::CacheMode::Use,
        human: super::run::terminal_human(&progress),
        local_functions: None,
        plugin_policy: None,
    };
    match runtime.block_on(app.resume(&args.run_id, options, Default::default())) {
        Ok(outcome) => super::run::finish(&app, None, &outcome, args.json),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
