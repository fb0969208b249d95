//! `composer load-test RECIPE`: many runs at once, measured. The measuring
//! is `crate::loadtest`; this file reads flags, shows progress and prints
//! the report.

use super::run::{inputs_from, parse_model, runtime, usage_error};
use crate::app::{Composer, RecipeSource};
use crate::cache::CacheMode;
use crate::loadtest::local::{LocalTarget, OutRoot};
use crate::loadtest::remote::{RemoteRecipe, RemoteTarget};
use crate::loadtest::{drive, InputSets, Live, LoadReport, LoadSpec, Stop, Target};
use crate::plugins::discovery::search_path;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
#[command(after_help = "\
Runs are not recorded in the run store (use --record to record them) and \
write their files into a temporary folder that is removed as they end \
(in /dev/shm where there is one and TMPDIR is not set; use --out DIR to \
keep them). Exit code 0 when the test ran (whatever its \
runs did), 1 when it had to stop (the recipe cannot run, the server \
refuses the key), 2 for usage errors.")]
pub struct LoadTestArgs {
    /// The recipe file; with --server, a file (sent inline with each run)
    /// or the name of one of the tenant's recipes.
    pub recipe: String,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub users: usize,
    /// Runs in total, over all users (default 100 unless --duration).
    #[arg(long, value_name = "M", conflicts_with = "duration")]
    pub iterations: Option<u64>,
    /// Start runs for this long (`60s`, `2m`); runs in flight at the end are let finish.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub duration: Option<Duration>,
    /// Start the users evenly over this time (`10s`).
    #[arg(long, value_name = "TIME", value_parser = parse_time, default_value = "0s")]
    pub ramp_up: Duration,
    /// An input value for every run, `KEY=VALUE` (repeatable).
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Input values for every run, from a JSON or YAML mapping.
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_mapping: Option<PathBuf>,
    /// One JSON object of inputs per line, over the others; run i takes line i mod lines.
    #[arg(long, value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Use this model for every node, e.g. `mock/echo` to run offline.
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Neither read nor write the result cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Settings file (default: `composer.toml` in the working directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep each run's files in a folder of its own under DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Record every run in the run store (off by default).
    #[arg(long)]
    pub record: bool,
    /// Accept inputs the recipe does not declare.
    #[arg(long)]
    pub allow_extra_inputs: bool,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Drive a running `composer serve` at this URL instead of running here.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The tenant key for --server (or COMPOSER_KEY).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

fn parse_time(text: &str) -> Result<Duration, String> {
    crate::recipe::policy::parse_duration_text(text).map_err(|e| e.to_string())
}

pub fn run(args: LoadTestArgs) -> ExitCode {
    if args.users == 0 {
        return usage_error("--users must be at least 1");
    }
    let stop = match (args.iterations, args.duration) {
        (_, Some(d)) => Stop::Duration(d),
        (Some(n), None) => Stop::Iterations(n),
        (None, None) => Stop::Iterations(100),
    };
    let base = match inputs_from(args.inputs_mapping.as_deref(), &args.inputs) {
        Ok(i) => i,
        Err(e) => return usage_error(e),
    };
    let lines = match &args.inputs_file {
        Some(path) => match InputSets::read_lines(path) {
            Ok(l) => l,
            Err(e) => return usage_error(e),
        },
        None => Vec::new(),
    };
    let spec = LoadSpec {
        users: args.users,
        stop,
        ramp_up: args.ramp_up,
        inputs: InputSets { base, lines },
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let target: Arc<dyn Target> = match &args.server {
        Some(url) => match remote_target(&rt, url, &args) {
            Ok(t) => t,
            Err(code) => return code,
        },
        None => match local_target(&rt, &args) {
            Ok(t) => t,
            Err(code) => return code,
        },
    };
    let live = Live::new();
    let bar = std::io::stderr().is_terminal().then(|| progress_bar(stop));
    let progress = rt.spawn(show_progress(live.clone(), bar.clone()));
    {
        let live = live.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                live.stop();
            }
        });
    }
    let result = rt.block_on(drive(target, spec, live));
    progress.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", render(&report));
    }
    ExitCode::SUCCESS
}

fn remote_target(
    rt: &tokio::runtime::Runtime,
    url: &str,
    args: &LoadTestArgs,
) -> Result<Arc<dyn Target>, ExitCode> {
    let Some(key) = args
        .key
        .clone()
        .or_else(|| std::env::var("COMPOSER_KEY").ok())
    else {
        return Err(usage_error("--server needs --key KEY (or COMPOSER_KEY)"));
    };
    let path = Path::new(&args.recipe);
    let recipe = if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage_error(format!("cannot read `{}`: {e}", path.display())))?;
        let name = crate::recipe::load_file(path)
            .map(|l| l.recipe.name.clone())
            .unwrap_or_else(|_| args.recipe.clone());
        RemoteRecipe::Inline { name, text }
    } else {
        RemoteRecipe::Named(args.recipe.clone())
    };
    if args.model.is_some() || args.record || args.out.is_some() || args.no_cache {
        eprintln!("warning: --model, --no-cache, --out and --record apply to local runs only; the server decides these");
    }
    let target = RemoteTarget::new(url, &key, recipe).map_err(usage_error)?;
    if let Err(e) = rt.block_on(target.check()) {
        eprintln!("error: {e}");
        return Err(ExitCode::FAILURE);
    }
    Ok(Arc::new(target))
}

fn local_target(
    rt: &tokio::runtime::Runtime,
    args: &LoadTestArgs,
) -> Result<Arc<dyn Target>, ExitCode> {
    let (mut settings, warnings) =
        crate::config::discover(args.config.as_deref()).map_err(usage_error)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let path = PathBuf::from(&args.recipe);
    let loaded = match crate::recipe::load_file(&path) {
        Ok(l) => l,
        Err(failure) => {
            super::print_failure(&failure);
            return Err(ExitCode::from(2));
        }
    };
    let model_override = args
        .model
        .as_deref()
        .map(parse_model)
        .transpose()
        .map_err(usage_error)?;
    let recipe_dir = loaded.recipe.base_dir.clone();
    settings.plugins.paths = search_path(&settings.plugins.paths, Some(&recipe_dir));
    let allow_extra_inputs = args.allow_extra_inputs || settings.engine.allow_extra_inputs;
    if !args.record {
        // Nothing is recorded: no need to reach a shared run store.
        settings.storage.url = None;
    }
    // The cache and rate limits the settings share (`[cache] redis_url`),
    // and with `--record` their run store, as `composer run` uses them.
    let app = rt
        .block_on(Composer::connect(settings, &[Path::new("."), &recipe_dir]))
        .map_err(usage_error)?;
    let app = if args.record {
        app
    } else {
        app.without_run_store()
    };
    for w in app.warnings() {
        eprintln!("warning: {w}");
    }
    if !loaded.recipe.functions().is_empty() {
        for w in &rt.block_on(app.project_functions()).1 {
            eprintln!("warning: {w}");
        }
    }
    let out = match &args.out {
        Some(dir) => OutRoot::Keep(dir.clone()),
        None => OutRoot::temporary().map_err(usage_error)?,
    };
    let source = std::fs::canonicalize(&path).unwrap_or(path);
    Ok(Arc::new(LocalTarget {
        app: Arc::new(app),
        recipe: loaded.recipe,
        model_override,
        out,
        cache_mode: if args.no_cache {
            CacheMode::Off
        } else {
            CacheMode::Use
        },
        allow_extra_inputs,
        source: RecipeSource::File(source).to_json(),
    }))
}

/// The terminal's progress bar: runs done of the total, or a spinner for
/// a test that runs for a time.
fn progress_bar(stop: Stop) -> indicatif::ProgressBar {
    let (bar, template) = match stop {
        Stop::Iterations(n) => (
            indicatif::ProgressBar::new(n),
            "{spinner} [{bar:30}] {pos}/{len} runs {msg} {elapsed:>4}",
        ),
        Stop::Duration(_) => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {pos} runs {msg} {elapsed:>4}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

/// Updates the bar five times a second; without one (not a terminal),
/// prints one line a second on stderr.
async fn show_progress(live: Arc<Live>, bar: Option<indicatif::ProgressBar>) {
    let started = std::time::Instant::now();
    let step = match bar {
        Some(_) => Duration::from_millis(200),
        None => Duration::from_secs(1),
    };
    let mut tick = tokio::time::interval(step);
    tick.tick().await;
    loop {
        tick.tick().await;
        let finished = live.finished.load(Ordering::Relaxed);
        let failed = live.failed.load(Ordering::Relaxed);
        let in_flight = live.in_flight();
        match &bar {
            Some(bar) => {
                bar.set_position(finished);
                bar.set_message(format!("({failed} failed, {in_flight} in flight)"));
            }
            None => eprintln!(
                "load-test: {:.0}s {finished} runs done ({failed} failed), {in_flight} in flight",
                started.elapsed().as_secs_f64()
            ),
        }
    }
}

/// The report as text.
pub fn render(r: &LoadReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "load test of `{}` ({}): {} users, {:.2}s",
        r.recipe, r.mode, r.users, r.elapsed_secs
    );
    let _ = writeln!(
        out,
        "runs        {} ({} succeeded, {} failed)",
        r.runs, r.successes, r.failures
    );
    for (kind, n) in &r.failures_by_kind {
        let _ = writeln!(out, "  failed    {n} {kind}");
    }
    let _ = writeln!(out, "throughput  {:.1} runs/s", r.throughput_per_sec);
    let pct = |p: &crate::loadtest::report::Percentiles| {
        format!(
            "min {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms",
            p.min, p.p50, p.p90, p.p99, p.max
        )
    };
    let _ = writeln!(out, "latency     {}", pct(&r.latency_ms));
    if let Some(q) = &r.queue_wait_ms {
        let _ = writeln!(out, "queue wait  {}", pct(q));
    }
    let _ = writeln!(
        out,
        "provider    {} calls, {} tokens ({} in, {} out){}",
        r.provider_calls,
        r.tokens.total,
        r.tokens.input,
        r.tokens.output,
        r.cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "cache       {}",
        match r.cache.hit_rate {
            Some(rate) => format!(
                "{:.0}% hits ({} of {})",
                rate * 100.0,
                r.cache.hits,
                r.cache.eligible
            ),
            None => "no cacheable node".into(),
        }
    );
    let mem = r
        .peak_rss_bytes
        .map(|b| format!("{:.1} MB peak RSS", b as f64 / 1e6))
        .unwrap_or_else(|| "peak RSS unknown".into());
    let cpu = match (r.cpu_secs, r.cpu_share) {
        (Some(c), Some(s)) => format!(", {c:.2} s CPU ({:.0}% of {} cores)", s * 100.0, r.cores),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "this process {mem}{cpu}{}",
        if r.mode == "server" {
            " (the client's, not the server's)"
        } else {
            ""
        }
    );
    out
}
