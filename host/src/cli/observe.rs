//! `composer run --metrics` and `--trace FILE.json`: a metrics collector
//! next to the progress sink, and what it shows after the run.

use crate::engine::events::{EventSink, FanOut};
use crate::engine::plan::Plan;
use crate::metrics::{render, trace, MetricsCollector, RunMetrics};
use crate::recipe::model::Recipe;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug, Default)]
pub struct ObserveArgs {
    /// After the run, print per-node metrics (slowest first) and a summary
    /// on stderr; with `--json`, stdout is `{"outputs": ..., "metrics": ...}`.
    #[arg(long)]
    pub metrics: bool,
    /// Write a Chrome trace-event file of the run (open it in Perfetto or
    /// chrome://tracing); written even when the run fails.
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
}

/// The collector of one `composer run`, if metrics or a trace were asked for.
pub struct Observer {
    metrics: bool,
    trace: Option<PathBuf>,
    collector: Option<Arc<MetricsCollector>>,
    plan: Option<Plan>,
}

impl Observer {
    pub fn new(args: &ObserveArgs, recipe: &Arc<Recipe>) -> Self {
        let wanted = args.metrics || args.trace.is_some();
        Observer {
            metrics: args.metrics,
            trace: args.trace.clone(),
            collector: wanted.then(MetricsCollector::new),
            // A recipe whose plan cannot be built never starts.
            plan: args
                .metrics
                .then(|| Plan::build(recipe.clone()).ok())
                .flatten(),
        }
    }

    /// `events`, plus the collector when there is one.
    pub fn wrap(&self, events: Arc<dyn EventSink>) -> Arc<dyn EventSink> {
        match &self.collector {
            Some(c) => Arc::new(FanOut(vec![events, c.clone()])),
            None => events,
        }
    }

    fn run_metrics(&self) -> Option<RunMetrics> {
        if !self.metrics {
            return None;
        }
        Some(self.collector.as_ref()?.metrics(self.plan.as_ref()?))
    }

    /// After the run (success or failure): write the trace, print the
    /// metrics table on stderr. Returns the metrics for `--json`.
    pub fn after_run(&self) -> Option<RunMetrics> {
        if let (Some(path), Some(c)) = (&self.trace, &self.collector) {
            match trace::write_trace(path, &c.events()) {
                Ok(()) => eprintln!("trace written to {}", path.display()),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        let metrics = self.run_metrics()?;
        eprintln!();
        eprint!("{}", render::render_table(&metrics));
        Some(metrics)
    }

    /// What `--json` prints: the outputs, or with `--metrics` an object
    /// holding the outputs and the metrics.
    pub fn json_output(
        metrics: Option<&RunMetrics>,
        outputs: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        match metrics {
            Some(m) => serde_json::json!({
                "outputs": outputs,
                "metrics": m,
            }),
            None => serde_json::Value::Object(outputs.clone()),
        }
    }
}
