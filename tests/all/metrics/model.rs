//! `RunMetrics`: the figures of known runs (durations from mock latencies,
//! statuses, tokens from the mock's usage), sub-recipe nodes and map items
//! counted under their node, cached and cancelled nodes from hand-made
//! events, and the critical path of a diamond.

use super::{node, plan_of, run_with_metrics, with_flaky};
use crate::engine::{load, Setup};
use composer::engine::events::{Event, EventKind, PluginUsage};
use composer::metrics::collector::NodeRss;
use composer::metrics::{NodeStatus, RunMetrics};
use composer::providers::CallStats;
use std::collections::HashMap;
use std::time::Duration;

/// The mock's token estimate: four characters a token, rounded up.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// A node's measured duration is at least its mock latency, and not much
/// more (the machine may be busy: a generous bound).
fn assert_about(secs: f64, latency_ms: u64, what: &str) {
    let low = latency_ms as f64 / 1000.0;
    assert!(
        secs >= low && secs < low + 1.0,
        "{what}: {secs}s for a latency of {latency_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_run_gives_known_figures() {
    let setup = Setup::new(
        r#"
name: known
model_config: {provider: mock, model: echo}
nodes:
  - {id: first, type: language_task, prompt: "12345678", model: {provider: mock, model: echo, latency_ms: 150}}
  - {id: gate, type: function_task, function_identifier: echo, input: {go: false, items: [a, bb, ccc]}}
  - {id: never, type: language_task, prompt: "not asked"}
  - id: risky
    type: language_task
    prompt: "BOOM here"
    on_error: continue
    model: {provider: mock, model: echo, fail_when: BOOM, latency_ms: 50}
  - id: each
    type: map
    over: gate.items
    task: {type: language_task, prompt: "item {{ item }}", model: {provider: mock, model: echo, latency_ms: 20}}
  - {id: sub, type: recipe, recipe_path: sub/child.yaml, input_mapping: {subject: "x"}}
  - {id: last, type: language_task, prompt: "{{ first }} done", model: {provider: mock, model: echo, reply: ok}}
edges:
  - {from: START, to: first}
  - {from: first, to: gate}
  - {from: gate, to: never, condition: "gate.go"}
  - {from: first, to: risky}
  - {from: gate, to: each}
  - {from: first, to: sub}
  - {from: risky, to: last}
  - {from: each, to: last}
  - {from: sub, to: last}
  - {from: never, to: END}
  - {from: last, to: END}
"#,
    );
    let (ran, m) = run_with_metrics(setup).await;
    ran.outputs();
    assert_eq!(m.recipe.as_deref(), Some("known"));
    assert_eq!(m.success, Some(true));
    assert_eq!(m.run_id.as_deref(), Some(ran.outcome.run_id.as_str()));
    assert!((m.wall_secs - ran.outcome.duration.as_secs_f64()).abs() < 1e-9);

    let first = node(&m, "first");
    assert_eq!(first.status, NodeStatus::Completed);
    assert_eq!(first.node_type, "language_task");
    assert_about(first.duration, 150, "first");
    assert_eq!((first.calls, first.retries), (1, 0));
    assert_eq!(first.input_tokens, tokens("12345678"));
    assert_eq!(first.output_tokens, tokens("12345678"));
    assert!(first.mock && !first.cache_hit && first.parent.is_none());
    assert!(first.start.is_some() && first.end.is_some());

    let never = node(&m, "never");
    assert_eq!(never.status, NodeStatus::Skipped);
    assert_eq!(never.node_type, "language_task", "from the plan");
    assert_eq!((never.runs, never.duration, never.start), (0, 0.0, None));

    let risky = node(&m, "risky");
    assert_eq!(risky.status, NodeStatus::Failed);
    assert_about(risky.duration, 50, "risky");
    let error = risky.error.as_deref().unwrap_or_default();
    assert!(error.contains("injected failure"), "{error}");

    // Map items count under their map node.
    let each = node(&m, "each");
    assert_eq!(each.status, NodeStatus::Completed);
    let items = each.items.clone().expect("item figures");
    assert_eq!((items.count, items.failed), (3, 0));
    assert!(
        items.max_secs >= 0.02 && items.mean_secs >= 0.02,
        "{items:?}"
    );
    assert_eq!(each.calls, 3);
    let item_prompts = ["item a", "item bb", "item ccc"];
    let item_tokens: u64 = item_prompts.iter().map(|p| 2 * tokens(p)).sum();
    assert_eq!(each.tokens(), item_tokens);
    assert!(m.nodes.iter().all(|n| !n.node.starts_with("each[")));

    // Sub-recipe nodes are listed under their parent, whose figures hold theirs.
    let sub = node(&m, "sub");
    let write = node(&m, "sub/write");
    let title = node(&m, "sub/title");
    assert_eq!(write.parent.as_deref(), Some("sub"));
    assert_eq!(title.parent.as_deref(), Some("sub"));
    assert_eq!(sub.calls, write.calls + title.calls);
    assert_eq!(sub.tokens(), write.tokens() + title.tokens());
    assert!(sub.duration >= write.duration + title.duration);

    let last = node(&m, "last");
    assert_eq!(last.input_tokens, tokens("12345678 done"));
    assert_eq!(last.output_tokens, tokens("ok"));

    // Totals and counts are over top-level nodes: nothing counted twice.
    let top: Vec<_> = m.nodes.iter().filter(|n| n.parent.is_none()).collect();
    assert_eq!(top.len(), 7);
    let calls: u32 = top.iter().map(|n| n.calls).sum();
    assert_eq!(m.totals.calls, u64::from(calls));
    assert_eq!(m.totals.calls, 1 + 3 + 2 + 1, "first, items, sub, last");
    let toks: u64 = top.iter().map(|n| n.tokens()).sum();
    assert_eq!(m.totals.tokens, toks);
    assert_eq!(m.totals.cost_usd, None, "the mock has no price");
    let c = &m.counts;
    assert_eq!(
        (c.completed, c.cached, c.skipped, c.failed, c.cancelled),
        (5, 0, 1, 1, 0)
    );
    // Could have been cached: first, gate, each, last, sub/write, sub/title.
    assert_eq!((m.cache.hits, m.cache.eligible), (0, 6));
    assert_eq!(m.cache_hit_rate, Some(0.0));

    // The longest chain: first → sub → last or first → gate → each → last,
    // whichever took longer; it always starts at `first` and ends at `last`.
    let path = &m.critical_path;
    assert_eq!(path.nodes.first().map(String::as_str), Some("first"));
    assert_eq!(path.nodes.last().map(String::as_str), Some("last"));
    let summed: f64 = path.nodes.iter().map(|n| node(&m, n).duration).sum();
    assert!((path.total_secs - summed).abs() < 1e-9);

    // Serialized with serde and read back unchanged.
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["nodes"][0]["status"], "completed");
    let back: RunMetrics = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_critical_path_of_a_diamond_follows_its_slow_side() {
    let setup = Setup::new(
        r#"
name: diamond
nodes:
  - {id: a, type: language_task, prompt: "a", model: {provider: mock, model: echo, latency_ms: 50}}
  - {id: b, type: language_task, prompt: "b", model: {provider: mock, model: echo, latency_ms: 30}}
  - {id: c, type: language_task, prompt: "c", model: {provider: mock, model: echo, latency_ms: 300}}
  - {id: d, type: language_task, prompt: "{{ b }} {{ c }}", model: {provider: mock, model: echo, latency_ms: 40}}
edges:
  - {from: START, to: a}
  - {from: a, to: b}
  - {from: a, to: c}
  - {from: b, to: d}
  - {from: c, to: d}
  - {from: d, to: END}
"#,
    );
    let (_, m) = run_with_metrics(setup).await;
    assert_eq!(m.critical_path.nodes, ["a", "c", "d"]);
    let summed = node(&m, "a").duration + node(&m, "c").duration + node(&m, "d").duration;
    assert!((m.critical_path.total_secs - summed).abs() < 1e-9);
    assert!(m.critical_path.total_secs >= 0.39);
    assert!(m.critical_path.total_secs <= m.wall_secs + 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_waits_and_cost_add_up() {
    let setup = with_flaky(Setup::new(
        r#"
name: priced
model_config: {provider: flaky, model: f}
nodes:
  - {id: one, type: language_task, prompt: "one"}
  - {id: two, type: language_task, prompt: "two"}
"#,
    ));
    let (_, m) = run_with_metrics(setup).await;
    let one = node(&m, "one");
    assert_eq!((one.calls, one.retries), (2, 1));
    assert_eq!(one.rate_limit_wait_ms, super::WAIT_MS);
    assert_eq!(one.cost_usd, Some(0.25));
    assert_eq!(m.totals.calls, 4);
    assert_eq!(m.totals.retries, 2);
    assert_eq!(m.totals.rate_limit_wait_ms, 2 * super::WAIT_MS);
    assert_eq!((m.totals.input_tokens, m.totals.output_tokens), (20, 10));
    assert_eq!(m.totals.tokens, 30);
    assert_eq!(m.totals.cost_usd, Some(0.5));
    assert_eq!(m.critical_path.nodes, ["one", "two"]);
}

fn ev(ms: u64, kind: EventKind) -> Event {
    Event::new(Duration::from_millis(ms), kind)
}

fn started(node: &str, node_type: &'static str) -> EventKind {
    EventKind::NodeStarted {
        node: node.into(),
        node_type,
    }
}

#[test]
fn cached_and_cancelled_nodes_and_plugin_use_from_hand_made_events() {
    let recipe = load(
        r#"
name: hand
model_config: {provider: mock, model: echo}
nodes:
  - {id: a, type: language_task, prompt: "a"}
  - {id: b, type: language_task, prompt: "b"}
  - {id: f, type: function_task, function_identifier: echo}
  - {id: c, type: language_task, prompt: "c"}
edges:
  - {from: START, to: a}
  - {from: START, to: b}
  - {from: START, to: f}
  - {from: a, to: c}
"#,
    );
    let plan = plan_of(&recipe);
    let finished =
        |node: &str, ms: u64, cached: bool, plugin: Option<PluginUsage>| EventKind::NodeFinished {
            node: node.into(),
            duration: Duration::from_millis(ms),
            mock: false,
            stats: CallStats::default(),
            cached,
            plugin,
        };
    let events = vec![
        ev(0, started("a", "language_task")),
        ev(0, started("b", "language_task")),
        ev(0, started("f", "function_task")),
        ev(5, finished("a", 5, true, None)),
        ev(
            40,
            finished(
                "f",
                40,
                false,
                Some(PluginUsage {
                    calls: 2,
                    fuel: 12_345,
                    peak_memory_bytes: 1 << 20,
                }),
            ),
        ),
        ev(5, started("c", "language_task")),
        ev(
            105,
            EventKind::NodeFailed {
                node: "c".into(),
                error: "timed out after 0.1s".into(),
                kind: composer_error_kind(),
                duration: Duration::from_millis(100),
                continued: false,
            },
        ),
        ev(105, EventKind::NodeCancelled { node: "b".into() }),
        ev(
            106,
            EventKind::RunFinished {
                success: false,
                duration: Duration::from_millis(106),
                status: composer_status(false),
                error: None,
            },
        ),
    ];
    let mut rss = HashMap::new();
    rss.insert(
        "f".to_string(),
        NodeRss {
            before: Some(1000),
            after: Some(3000),
        },
    );
    let m = RunMetrics::compute(&events, &plan, &rss, Some(5000));
    assert_eq!(node(&m, "a").status, NodeStatus::Cached);
    assert!(node(&m, "a").cache_hit);
    let b = node(&m, "b");
    assert_eq!(b.status, NodeStatus::Cancelled);
    assert!((b.duration - 0.105).abs() < 1e-9, "{}", b.duration);
    let f = node(&m, "f");
    assert_eq!(
        (f.plugin_calls, f.plugin_fuel, f.plugin_peak_memory_bytes),
        (2, 12_345, 1 << 20)
    );
    assert_eq!(
        (f.rss_before_bytes, f.rss_after_bytes),
        (Some(1000), Some(3000))
    );
    assert_eq!(node(&m, "c").status, NodeStatus::Failed);
    let c = &m.counts;
    assert_eq!(
        (c.completed, c.cached, c.skipped, c.failed, c.cancelled),
        (1, 1, 0, 1, 1)
    );
    // a (cached) and f (completed) could have been cached; c failed, b was cancelled.
    assert_eq!((m.cache.hits, m.cache.eligible), (1, 2));
    assert_eq!(m.cache_hit_rate, Some(0.5));
    assert_eq!((m.success, m.wall_secs), (Some(false), 0.106));
    assert_eq!(m.totals.plugin_fuel, 12_345);
    assert_eq!(m.peak_rss_bytes, Some(5000));
    // a → c (0.005 + 0.1) beats b alone (0.105)? Equal sums: the first found
    // wins; f (0.04) is shorter than both.
    assert!((m.critical_path.total_secs - 0.105).abs() < 1e-9);
    // Slowest first.
    let order: Vec<&str> = m.slowest().iter().map(|n| n.node.as_str()).collect();
    assert_eq!(order.len(), 4);
    assert_eq!(order[3], "a");
    assert_eq!(order[2], "f");
}

fn composer_error_kind() -> composer::engine::error::ErrorKind {
    composer::engine::error::ErrorKind::Internal
}

fn composer_status(success: bool) -> composer::engine::events::RunStatus {
    if success {
        composer::engine::events::RunStatus::Succeeded
    } else {
        composer::engine::events::RunStatus::Failed
    }
}
