//! `composer report`: figures over many runs (from the run store):
//! success rate, wall time (average, p95, slowest runs), the slowest nodes
//! on average, cache hit rate, provider calls, tokens, cost, and errors
//! grouped by kind.
//!
//! `build` is a pure function over `RunRecord`s, so the figures can be
//! checked by hand and the store only has to produce records.

use super::model::RunMetrics;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;

/// How many runs and nodes the "slowest" lists keep.
pub const SLOWEST_RUNS: usize = 5;
pub const SLOWEST_NODES: usize = 10;

/// One stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (`run-YYYYMMDD-HHMMSS-xxxx`).
    #[serde(default)]
    pub id: String,
    pub recipe: String,
    /// Unix seconds.
    pub started_at: u64,
    pub success: bool,
    pub wall_secs: f64,
    pub metrics: RunMetrics,
    /// The run's error and its nodes' errors, as text.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The kind stored with the run's own error (the first of `errors`);
    /// without it the kind is read from the text.
    #[serde(default)]
    pub failure_kind: Option<String>,
}

/// Which runs a report covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub recipe: Option<String>,
    /// Unix seconds: runs started at or after.
    pub since: Option<u64>,
}

impl Filter {
    pub fn keeps(&self, r: &RunRecord) -> bool {
        self.recipe.as_ref().is_none_or(|name| &r.recipe == name)
            && self.since.is_none_or(|t| r.started_at >= t)
    }
}

/// The runs `filter` keeps.
pub fn select(runs: &[RunRecord], filter: &Filter) -> Vec<RunRecord> {
    runs.iter().filter(|r| filter.keeps(r)).cloned().collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLine {
    pub id: String,
    pub recipe: String,
    pub started_at: u64,
    pub success: bool,
    pub wall_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLine {
    pub recipe: String,
    /// Map item indices are written `[*]` so items of all runs add up.
    pub node: String,
    pub node_type: String,
    /// Runs in which the node ran.
    pub runs: u64,
    pub average_secs: f64,
    pub max_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    pub kind: String,
    pub count: u64,
    /// The first error of this kind (in the order of the runs).
    pub example: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// succeeded / runs; None without runs.
    pub success_rate: Option<f64>,
    /// Seconds.
    pub average_wall_secs: Option<f64>,
    /// Nearest-rank 95th percentile of the wall times.
    pub p95_wall_secs: Option<f64>,
    pub slowest_runs: Vec<RunLine>,
    /// By average duration, slowest first.
    pub slowest_nodes: Vec<NodeLine>,
    /// Cached nodes / nodes that could have been (over all runs).
    pub cache_hit_rate: Option<f64>,
    pub cache_hits: u64,
    pub cache_eligible: u64,
    pub calls: u64,
    pub retries: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens: u64,
    pub cost_usd: Option<f64>,
    /// Most frequent first.
    pub errors: Vec<ErrorGroup>,
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `m[3]/child` → `m[*]/child`.
fn generic_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].chars().all(|c| c.is_ascii_digit()) => {
                out.push('*');
                rest = &after[close..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The kind of an error, from its text: the most specific category that
/// the text (or the error it wraps) names.
pub fn error_kind(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if has(&["ran out of fuel"]) {
        "fuel"
    } else if has(&["memory limit", "table limit"]) {
        "memory"
    } else if has(&["http 429", "rate limit"]) {
        "rate limited"
    } else if has(&["timed out", "timeout"]) {
        "timeout"
    } else if has(&["plugin `"]) {
        "plugin"
    } else if has(&["provider `", "http "]) {
        "provider"
    } else if has(&["undefined variable", "template", "syntax error"]) {
        "template"
    } else if has(&["loop over", "max_iterations"]) {
        "loop limit"
    } else if has(&["condition on"]) {
        "condition"
    } else if has(&["final output", "output_format", "reply is not json"]) {
        "output"
    } else if has(&["input `", "`over`", "is not in the state", "input "]) {
        "input"
    } else if has(&["function `"]) {
        "function"
    } else if has(&["human", "reply", "hitl"]) {
        "human"
    } else if has(&["quota `"]) {
        "quota"
    } else if has(&["cancelled", "interrupted"]) {
        "cancelled"
    } else {
        "other"
    }
}

/// A stored kind as one of the report's names.
fn known_kind(kind: &str) -> Option<&'static str> {
    const KINDS: [&str; 15] = [
        "fuel",
        "memory",
        "rate limited",
        "timeout",
        "plugin",
        "provider",
        "template",
        "recipe",
        "input",
        "human",
        "quota",
        "cancelled",
        "internal",
        "output",
        "other",
    ];
    KINDS.iter().copied().find(|k| *k == kind)
}

/// The report's name for a stored failure.
pub fn failure_kind(f: &crate::engine::error::Failure) -> &'static str {
    use crate::engine::error::ErrorKind as K;
    match f.kind {
        K::PluginLimit => match f.limit.as_ref().map(|l| l.name.as_str()) {
            Some("fuel") => "fuel",
            Some("timeout_ms") => "timeout",
            Some("max_output_bytes") => "output",
            _ => "memory",
        },
        K::RateLimit => "rate limited",
        K::Timeout => "timeout",
        K::Plugin => "plugin",
        K::Provider => "provider",
        K::Template => "template",
        K::InvalidRecipe => "recipe",
        K::InvalidInput => "input",
        K::Human => "human",
        K::Quota => "quota",
        K::Cancelled => "cancelled",
        K::Internal => "internal",
    }
}

/// The report over `runs` (already filtered).
pub fn build(runs: &[RunRecord]) -> Report {
    let mut r = Report {
        runs: runs.len() as u64,
        ..Report::default()
    };
    if runs.is_empty() {
        return r;
    }
    r.succeeded = runs.iter().filter(|x| x.success).count() as u64;
    r.failed = r.runs - r.succeeded;
    r.success_rate = Some(r.succeeded as f64 / r.runs as f64);
    let walls: Vec<f64> = runs.iter().map(|x| x.wall_secs).collect();
    r.average_wall_secs = Some(walls.iter().sum::<f64>() / walls.len() as f64);
    r.p95_wall_secs = percentile(&walls, 95.0);

    let mut slowest: Vec<&RunRecord> = runs.iter().collect();
    slowest.sort_by(|a, b| {
        b.wall_secs
            .total_cmp(&a.wall_secs)
            .then(a.started_at.cmp(&b.started_at))
    });
    r.slowest_runs = slowest
        .into_iter()
        .take(SLOWEST_RUNS)
        .map(|x| RunLine {
            id: x.id.clone(),
            recipe: x.recipe.clone(),
            started_at: x.started_at,
            success: x.success,
            wall_secs: x.wall_secs,
        })
        .collect();

    // (recipe, node) → (type, runs, summed, max); first-seen order breaks ties.
    let mut nodes: Vec<NodeLine> = Vec::new();
    let mut node_index: HashMap<(String, String), usize> = HashMap::new();
    let mut errors: Vec<ErrorGroup> = Vec::new();
    let mut error_index: HashMap<&'static str, usize> = HashMap::new();
    for run in runs {
        let m = &run.metrics;
        r.cache_hits += u64::from(m.cache.hits);
        r.cache_eligible += u64::from(m.cache.eligible);
        r.calls += m.totals.calls;
        r.retries += m.totals.retries;
        r.input_tokens += m.totals.input_tokens;
        r.output_tokens += m.totals.output_tokens;
        if let Some(c) = m.totals.cost_usd {
            r.cost_usd = Some(r.cost_usd.unwrap_or(0.0) + c);
        }
        // A node appears once per run (map items of a sub-recipe add up).
        let mut in_run: HashMap<String, f64> = HashMap::new();
        let mut types: HashMap<String, String> = HashMap::new();
        for n in m.nodes.iter().filter(|n| n.ran()) {
            let path = generic_path(&n.node);
            *in_run.entry(path.clone()).or_default() += n.duration;
            types.entry(path).or_insert_with(|| n.node_type.clone());
        }
        let mut paths: Vec<(String, f64)> = in_run.into_iter().collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, secs) in paths {
            let key = (run.recipe.clone(), path.clone());
            let i = *node_index.entry(key).or_insert_with(|| {
                nodes.push(NodeLine {
                    recipe: run.recipe.clone(),
                    node: path.clone(),
                    node_type: types.get(&path).cloned().unwrap_or_default(),
                    runs: 0,
                    average_secs: 0.0,
                    max_secs: 0.0,
                });
                nodes.len() - 1
            });
            let line = &mut nodes[i];
            line.runs += 1;
            // Summed for now; divided below.
            line.average_secs += secs;
            line.max_secs = line.max_secs.max(secs);
        }
        for (n, e) in run.errors.iter().enumerate() {
            let kind = match (&run.failure_kind, n) {
                (Some(k), 0) => known_kind(k).unwrap_or_else(|| error_kind(e)),
                _ => error_kind(e),
            };
            let i = *error_index.entry(kind).or_insert_with(|| {
                errors.push(ErrorGroup {
                    kind: kind.to_string(),
                    count: 0,
                    example: e.clone(),
                });
                errors.len() - 1
            });
            errors[i].count += 1;
        }
    }
    r.tokens = r.input_tokens + r.output_tokens;
    r.cache_hit_rate =
        (r.cache_eligible > 0).then(|| r.cache_hits as f64 / r.cache_eligible as f64);
    for n in &mut nodes {
        n.average_secs /= n.runs.max(1) as f64;
    }
    // Stable sorts: ties keep first-seen order.
    nodes.sort_by(|a, b| b.average_secs.total_cmp(&a.average_secs));
    nodes.truncate(SLOWEST_NODES);
    r.slowest_nodes = nodes;
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    r.errors = errors;
    r
}

/// `1.23s`, `850ms`, `2m05s`.
pub fn secs_text(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        let whole = secs.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

/// `YYYY-MM-DD HH:MM` (UTC) of unix seconds.
fn date_text(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let (y, m, d) = civil(days);
    let rest = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        (rest / 60) % 60
    )
}

/// Days since 1970-01-01 → (year, month, day).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The report as text for a terminal.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    if r.runs == 0 {
        s.push_str("no runs recorded (for this recipe and period)\n");
        return s;
    }
    let _ = writeln!(
        s,
        "runs: {} ({} succeeded, {} failed; success rate {})",
        r.runs,
        r.succeeded,
        r.failed,
        percent(r.success_rate)
    );
    let _ = writeln!(
        s,
        "wall time: average {}, p95 {}",
        r.average_wall_secs.map_or("-".into(), secs_text),
        r.p95_wall_secs.map_or("-".into(), secs_text)
    );
    let _ = writeln!(
        s,
        "cache: {} of {} nodes served from the cache ({})",
        r.cache_hits,
        r.cache_eligible,
        percent(r.cache_hit_rate)
    );
    let _ = writeln!(
        s,
        "provider calls: {} ({} retries); tokens: {} ({} in, {} out); cost: {}",
        r.calls,
        r.retries,
        r.tokens,
        r.input_tokens,
        r.output_tokens,
        r.cost_usd.map_or("-".into(), |c| format!("${c:.4}"))
    );
    s.push_str("\nslowest runs:\n");
    for x in &r.slowest_runs {
        let _ = writeln!(
            s,
            "  {:>9}  {}  {}  {}{}",
            secs_text(x.wall_secs),
            date_text(x.started_at),
            x.recipe,
            x.id,
            if x.success { "" } else { "  (failed)" }
        );
    }
    if !r.slowest_nodes.is_empty() {
        s.push_str("\nslowest nodes (average per run):\n");
        let width = r
            .slowest_nodes
            .iter()
            .map(|n| n.recipe.len() + n.node.len() + 1)
            .max()
            .unwrap_or(0);
        for n in &r.slowest_nodes {
            let _ = writeln!(
                s,
                "  {:>9}  {:<width$}  max {:>8}  in {} run{}  ({})",
                secs_text(n.average_secs),
                format!("{}:{}", n.recipe, n.node),
                secs_text(n.max_secs),
                n.runs,
                if n.runs == 1 { "" } else { "s" },
                n.node_type,
            );
        }
    }
    if !r.errors.is_empty() {
        s.push_str("\nerrors by kind:\n");
        for e in &r.errors {
            let example: String = e.example.chars().take(100).collect();
            let _ = writeln!(s, "  {:>4} × {:<13} e.g. {example}", e.count, e.kind);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 95.0), None);
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&v, 50.0), Some(10.0));
    }

    #[test]
    fn generic_paths() {
        assert_eq!(generic_path("m[3]/child"), "m[*]/child");
        assert_eq!(generic_path("a/b"), "a/b");
        assert_eq!(generic_path("m[12][0]"), "m[*][*]");
        assert_eq!(generic_path("odd[x]"), "odd[x]");
    }

    #[test]
    fn dates() {
        assert_eq!(date_text(0), "1970-01-01 00:00");
        assert_eq!(date_text(1_796_000_000), "2026-11-30 00:53");
    }
}
