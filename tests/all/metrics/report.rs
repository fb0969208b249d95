//! `metrics::report`: figures over hand-made run records, checked against
//! values computed by hand.

use composer::metrics::model::{CacheCounts, NodeMetrics, NodeStatus, Totals};
use composer::metrics::report::{self, build, error_kind, Filter, RunRecord};
use composer::metrics::RunMetrics;

fn node_metrics(path: &str, secs: f64) -> NodeMetrics {
    NodeMetrics {
        node: path.into(),
        node_type: "language_task".into(),
        parent: None,
        start: Some(0.0),
        end: Some(secs),
        duration: secs,
        runs: 1,
        status: NodeStatus::Completed,
        calls: 1,
        retries: 0,
        rate_limit_wait_ms: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: None,
        cache_hit: false,
        mock: false,
        plugin_calls: 0,
        plugin_fuel: 0,
        plugin_peak_memory_bytes: 0,
        rss_before_bytes: None,
        rss_after_bytes: None,
        items: None,
        error: None,
    }
}

fn record(id: &str, recipe: &str, started_at: u64, success: bool, wall_secs: f64) -> RunRecord {
    RunRecord {
        id: id.into(),
        recipe: recipe.into(),
        started_at,
        success,
        wall_secs,
        metrics: RunMetrics {
            wall_secs,
            success: Some(success),
            ..RunMetrics::default()
        },
        errors: Vec::new(),
        failure_kind: None,
    }
}

#[test]
fn success_rate_average_p95_and_slowest_runs() {
    // Twenty runs of 1..=20 seconds; every fourth one failed.
    let runs: Vec<RunRecord> = (1..=20u64)
        .map(|i| {
            record(
                &format!("run-{i:02}"),
                "alpha",
                1_000 + i,
                i % 4 != 0,
                i as f64,
            )
        })
        .collect();
    let r = build(&runs);
    assert_eq!((r.runs, r.succeeded, r.failed), (20, 15, 5));
    assert_eq!(r.success_rate, Some(0.75));
    // (1 + ... + 20) / 20 = 210 / 20.
    assert_eq!(r.average_wall_secs, Some(10.5));
    // Nearest rank: ceil(0.95 × 20) = 19th smallest.
    assert_eq!(r.p95_wall_secs, Some(19.0));
    let slowest: Vec<(&str, f64, bool)> = r
        .slowest_runs
        .iter()
        .map(|x| (x.id.as_str(), x.wall_secs, x.success))
        .collect();
    assert_eq!(
        slowest,
        [
            ("run-20", 20.0, false),
            ("run-19", 19.0, true),
            ("run-18", 18.0, true),
            ("run-17", 17.0, true),
            ("run-16", 16.0, false),
        ]
    );

    // Seven runs: ceil(0.95 × 7) = 7th, the largest.
    let r = build(&runs[..7]);
    assert_eq!(r.p95_wall_secs, Some(7.0));
    assert_eq!(r.average_wall_secs, Some(4.0));
    let none = build(&[]);
    assert_eq!(
        (none.runs, none.success_rate, none.p95_wall_secs),
        (0, None, None)
    );
    assert!(report::render_text(&none).contains("no runs"));
}

#[test]
fn slowest_nodes_cache_calls_tokens_and_cost() {
    let mut a = record("r1", "alpha", 10, true, 5.0);
    a.metrics.nodes = vec![
        node_metrics("draft", 3.0),
        node_metrics("title", 0.5),
        // Items of a map's sub-recipe add up as one `each[*]/write`.
        node_metrics("each[0]/write", 0.25),
        node_metrics("each[1]/write", 0.75),
    ];
    a.metrics.cache = CacheCounts {
        hits: 1,
        eligible: 4,
    };
    a.metrics.totals = Totals {
        calls: 4,
        retries: 1,
        input_tokens: 100,
        output_tokens: 50,
        tokens: 150,
        cost_usd: Some(0.5),
        ..Totals::default()
    };
    let mut b = record("r2", "alpha", 20, true, 7.0);
    b.metrics.nodes = vec![node_metrics("draft", 5.0), node_metrics("title", 2.5)];
    let mut skipped = node_metrics("polish", 0.0);
    skipped.runs = 0;
    skipped.status = NodeStatus::Skipped;
    b.metrics.nodes.push(skipped);
    b.metrics.cache = CacheCounts {
        hits: 2,
        eligible: 2,
    };
    b.metrics.totals = Totals {
        calls: 2,
        input_tokens: 10,
        output_tokens: 5,
        tokens: 15,
        cost_usd: Some(0.25),
        ..Totals::default()
    };
    let r = build(&[a, b]);
    let nodes: Vec<(&str, f64, f64, u64)> = r
        .slowest_nodes
        .iter()
        .map(|n| (n.node.as_str(), n.average_secs, n.max_secs, n.runs))
        .collect();
    assert_eq!(
        nodes,
        [
            ("draft", 4.0, 5.0, 2),
            ("title", 1.5, 2.5, 2),
            ("each[*]/write", 1.0, 1.0, 1),
        ],
        "skipped nodes do not count"
    );
    assert_eq!((r.cache_hits, r.cache_eligible), (3, 6));
    assert_eq!(r.cache_hit_rate, Some(0.5));
    assert_eq!((r.calls, r.retries), (6, 1));
    assert_eq!((r.input_tokens, r.output_tokens, r.tokens), (110, 55, 165));
    assert_eq!(r.cost_usd, Some(0.75));
    let text = report::render_text(&r);
    assert!(text.contains("success rate 100%"), "{text}");
    assert!(text.contains("alpha:draft"), "{text}");
    assert!(text.contains("cache: 3 of 6"), "{text}");
}

#[test]
fn errors_group_by_kind() {
    let cases = [
        (
            "node `split` failed: plugin `splitter`, function `split`: ran out of fuel (limit 1000 units); raise `fuel` for this plugin if the work is legitimate",
            "fuel",
        ),
        (
            "node `draft` failed: provider `openai`: HTTP 429 rate limited: slow down (after 5 attempts)",
            "rate limited",
        ),
        ("node `draft` failed: timed out after 30s", "timeout"),
        (
            "node `x` failed: plugin `p`, function `f`: timed out after 500 ms (limit `timeout_ms`)",
            "timeout",
        ),
        (
            "node `x` failed: plugin `p`, function `f`: memory limit of 1048576 bytes exceeded (asked for 2097152)",
            "memory",
        ),
        (
            "node `x` failed: plugin `p`, function `f`: crashed (wasm trap: unreachable)",
            "plugin",
        ),
        (
            "node `draft` failed: provider `anthropic`: HTTP 500: overloaded",
            "provider",
        ),
        (
            "node `draft` failed: prompt: undefined variable `topic`",
            "template",
        ),
        (
            "node `each` failed: `over`: `items` is not in the state",
            "input",
        ),
        ("input `count`: expected a number, found \"x\"", "input"),
        (
            "node `a` failed: sub-recipe `child` failed: node `b` failed: plugin `q`, function `g`: ran out of fuel (limit 5 units)",
            "fuel",
        ),
        ("something else entirely", "other"),
    ];
    for (text, kind) in cases {
        assert_eq!(error_kind(text), kind, "{text}");
    }

    let mut r1 = record("r1", "alpha", 1, false, 1.0);
    r1.errors = vec![cases[0].0.into(), cases[1].0.into()];
    let mut r2 = record("r2", "alpha", 2, false, 1.0);
    r2.errors = vec![cases[1].0.into(), cases[10].0.into(), cases[2].0.into()];
    let mut r3 = record("r3", "beta", 3, false, 1.0);
    r3.errors = vec![cases[1].0.into()];
    let r = build(&[r1, r2, r3]);
    let groups: Vec<(&str, u64)> = r
        .errors
        .iter()
        .map(|g| (g.kind.as_str(), g.count))
        .collect();
    assert_eq!(groups, [("rate limited", 3), ("fuel", 2), ("timeout", 1)]);
    assert_eq!(
        r.errors[1].example, cases[0].0,
        "the first one is the example"
    );
    assert_eq!(r.success_rate, Some(0.0));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["errors"][0]["kind"], "rate limited");
}

#[test]
fn filters_keep_a_recipe_and_a_period() {
    let runs = vec![
        record("r1", "alpha", 100, true, 1.0),
        record("r2", "beta", 200, true, 2.0),
        record("r3", "alpha", 300, false, 3.0),
    ];
    let ids = |f: &Filter| -> Vec<String> {
        report::select(&runs, f).into_iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(&Filter::default()), ["r1", "r2", "r3"]);
    let alpha = Filter {
        recipe: Some("alpha".into()),
        since: None,
    };
    assert_eq!(ids(&alpha), ["r1", "r3"]);
    let recent = Filter {
        recipe: None,
        since: Some(200),
    };
    assert_eq!(ids(&recent), ["r2", "r3"]);
    let both = Filter {
        recipe: Some("alpha".into()),
        since: Some(200),
    };
    assert_eq!(ids(&both), ["r3"]);

    // A record round-trips through JSON (the store keeps metrics as JSON).
    let json = serde_json::to_string(&runs[0]).unwrap();
    let back: RunRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, runs[0]);
}
