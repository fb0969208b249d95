//! `chrome_trace`: the trace of a real run (fan-out, a map, a sub-recipe,
//! provider calls that wait and retry), and the exact placement of wait
//! and retry spans from hand-made events.

use super::{with_flaky, RETRY_MS};
use crate::engine::Setup;
use composer::engine::events::{Event, EventKind};
use composer::metrics::trace::chrome_trace;
use composer::providers::{CallNote, CallStats};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// A complete event, read back from the trace.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    cat: String,
    ts: i64,
    dur: i64,
    tid: i64,
    args: Value,
}

impl Span {
    fn end(&self) -> i64 {
        self.ts + self.dur
    }

    fn contains(&self, other: &Span) -> bool {
        self.ts <= other.ts && other.end() <= self.end()
    }
}

/// Parses the document as JSON text (as a viewer would) and returns its
/// complete events; checks the shape every event must have.
fn complete_events(doc: &Value) -> Vec<Span> {
    let text = serde_json::to_string(doc).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let mut spans = Vec::new();
    for e in events {
        assert_eq!(e["pid"], 1, "{e}");
        assert!(e["tid"].is_i64(), "{e}");
        match e["ph"].as_str() {
            Some("X") => {
                let (ts, dur) = (e["ts"].as_i64().unwrap(), e["dur"].as_i64().unwrap());
                assert!(ts >= 0 && dur >= 0, "{e}");
                spans.push(Span {
                    name: e["name"].as_str().unwrap().to_string(),
                    cat: e["cat"].as_str().unwrap().to_string(),
                    ts,
                    dur,
                    tid: e["tid"].as_i64().unwrap(),
                    args: e["args"].clone(),
                });
            }
            Some("M") | Some("i") => {}
            other => panic!("unexpected phase {other:?} in {e}"),
        }
    }
    spans
}

/// Track names from the metadata events, by tid.
fn track_names(doc: &Value) -> HashMap<i64, String> {
    doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_i64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Node and item spans on one track never overlap (touching is fine).
fn assert_no_overlap_per_track(spans: &[Span]) {
    let mut by_track: HashMap<i64, Vec<&Span>> = HashMap::new();
    for s in spans.iter().filter(|s| s.cat != "provider") {
        by_track.entry(s.tid).or_default().push(s);
    }
    for (tid, mut list) in by_track {
        list.sort_by_key(|s| (s.ts, s.end()));
        for pair in list.windows(2) {
            assert!(
                pair[0].end() <= pair[1].ts,
                "track {tid}: `{}` [{}, {}] overlaps `{}` [{}, {}]",
                pair[0].name,
                pair[0].ts,
                pair[0].end(),
                pair[1].name,
                pair[1].ts,
                pair[1].end()
            );
        }
    }
}

/// Every provider span lies inside the span of the node or item that made
/// the call, on the same track. Returns how many there were.
fn assert_provider_spans_nested(spans: &[Span]) -> usize {
    let providers: Vec<&Span> = spans.iter().filter(|s| s.cat == "provider").collect();
    for p in &providers {
        let owner = p.args["node"].as_str().unwrap();
        let parent = spans
            .iter()
            .find(|s| s.cat != "provider" && s.name == owner && s.tid == p.tid && s.contains(p));
        assert!(
            parent.is_some(),
            "`{}` of `{owner}` [{}, {}] on track {} is not inside its node's span; spans: {spans:#?}",
            p.name,
            p.ts,
            p.end(),
            p.tid
        );
    }
    providers.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_real_run_has_one_span_per_node_and_item_on_non_overlapping_tracks() {
    let setup = with_flaky(Setup::new(
        r#"
name: traced
model_config: {provider: mock, model: echo, latency_ms: [10, 40]}
nodes:
  - id: plan
    type: language_task
    prompt: "plan"
    output_format: json
    model: {provider: mock, model: echo, latency_ms: 10, reply: '["a", "b", "c", "d", "e"]'}
  - {id: left, type: language_task, prompt: "left side"}
  - {id: right, type: language_task, prompt: "right side", model: {provider: flaky, model: f}}
  - id: each
    type: map
    over: plan
    max_concurrency: 3
    task: {type: language_task, prompt: "item {{ item }}", model: {provider: flaky, model: f}}
  - {id: sub, type: recipe, recipe_path: sub/child.yaml, input_mapping: {subject: "{{ left }}"}}
  - {id: join, type: language_task, prompt: "{{ right }} {{ each | length }} {{ sub }}"}
edges:
  - {from: START, to: plan}
  - {from: plan, to: left}
  - {from: plan, to: right}
  - {from: plan, to: each}
  - {from: left, to: sub}
  - {from: sub, to: join}
  - {from: right, to: join}
  - {from: each, to: join}
  - {from: join, to: END}
"#,
    ));
    let ran = setup.run().await;
    ran.outputs();
    let doc = chrome_trace(&ran.events);
    let spans = complete_events(&doc);

    // One complete event per node run (sub-recipe nodes included) and per
    // map item, each with its status.
    let mut node_spans: Vec<&str> = spans
        .iter()
        .filter(|s| s.cat == "node")
        .map(|s| s.name.as_str())
        .collect();
    node_spans.sort_unstable();
    let mut expected = vec![
        "each",
        "join",
        "left",
        "plan",
        "right",
        "sub",
        "sub/title",
        "sub/write",
    ];
    expected.sort_unstable();
    assert_eq!(node_spans, expected, "{spans:#?}");
    let started = ran
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::NodeStarted { .. }))
        .count();
    assert_eq!(node_spans.len(), started);
    let mut items: Vec<&str> = spans
        .iter()
        .filter(|s| s.cat == "item")
        .map(|s| s.name.as_str())
        .collect();
    items.sort_unstable();
    assert_eq!(
        items,
        ["each[0]", "each[1]", "each[2]", "each[3]", "each[4]"]
    );
    for s in spans.iter().filter(|s| s.cat != "provider") {
        assert_eq!(s.args["status"], "completed", "{s:?}");
    }
    let right = spans.iter().find(|s| s.name == "right").unwrap();
    assert_eq!(right.args["tokens"], 15);
    assert_eq!(right.args["cost_usd"], 0.25);
    assert_eq!(right.args["cached"], false);

    // Items run three at a time: they need several tracks, all the map's.
    assert_no_overlap_per_track(&spans);
    let names = track_names(&doc);
    let item_tracks: std::collections::HashSet<i64> = spans
        .iter()
        .filter(|s| s.cat == "item")
        .map(|s| s.tid)
        .collect();
    assert!(item_tracks.len() >= 2, "{spans:#?}");
    for tid in &item_tracks {
        assert!(
            names[tid].starts_with("each items"),
            "track {tid} is named {:?}",
            names.get(tid)
        );
    }
    // `left`, `right` and `each` run at the same time: three node tracks.
    let node_tracks: std::collections::HashSet<i64> = spans
        .iter()
        .filter(|s| s.cat == "node")
        .map(|s| s.tid)
        .collect();
    assert!(node_tracks.len() >= 3, "{spans:#?}");
    assert!(node_tracks.is_disjoint(&item_tracks));
    for tid in node_tracks.iter().chain(&item_tracks) {
        assert!(names.contains_key(tid), "track {tid} has no name");
    }

    // `right` and the five items each waited once and retried once.
    assert_eq!(assert_provider_spans_nested(&spans), 12);
    let retries: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "retry 2 (HTTP 429)")
        .collect();
    assert_eq!(retries.len(), 6);
    for r in retries {
        assert!(
            (RETRY_MS as i64 - 5) * 1000 <= r.dur,
            "a retry lasts its delay: {r:?}"
        );
    }
    let waits = spans.iter().filter(|s| s.name == "rate-limit wait").count();
    assert_eq!(waits, 6);
    assert_eq!(doc["otherData"]["recipe"], "traced");
    assert_eq!(doc["otherData"]["success"], true);
}

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn ev(ms: u64, kind: EventKind) -> Event {
    Event::new(at(ms), kind)
}

fn provider(node: &str, note: CallNote) -> EventKind {
    EventKind::Provider {
        node: node.into(),
        note,
    }
}

fn wait(waited_ms: u64) -> CallNote {
    CallNote::RateLimitWait {
        provider: "openai".into(),
        waited_ms,
    }
}

fn retry(attempt: u32, delay_ms: u64) -> CallNote {
    CallNote::Retry {
        provider: "openai".into(),
        attempt,
        delay_ms,
        reason: "HTTP 429 rate limited: slow down".into(),
    }
}

fn finished(node: &str, ms: u64) -> EventKind {
    EventKind::NodeFinished {
        node: node.into(),
        duration: at(ms),
        mock: false,
        stats: CallStats::default(),
        cached: false,
        plugin: None,
    }
}

#[test]
fn waits_and_retries_nest_inside_their_node_at_the_right_times() {
    let events = vec![
        ev(
            0,
            EventKind::RunStarted {
                run_id: "run-x".into(),
                recipe: "hand".into(),
            },
        ),
        ev(
            10,
            EventKind::NodeStarted {
                node: "ask".into(),
                node_type: "language_task",
            },
        ),
        // Waited 50 ms for the limiter, from 50 to 100.
        ev(100, provider("ask", wait(50))),
        // Attempt 1 failed at 200; attempt 2 after 300 ms.
        ev(200, provider("ask", retry(1, 300))),
        // Attempt 2 failed at 700; attempt 3 after 1000 ms, but the node
        // ends (times out) at 1200: the span is cut at the node's end.
        ev(700, provider("ask", retry(2, 1000))),
        ev(
            1200,
            EventKind::NodeFailed {
                node: "ask".into(),
                error: "provider `openai`: HTTP 429 rate limited".into(),
                kind: composer_error_kind(),
                duration: at(1190),
                continued: false,
            },
        ),
        // A wait longer than the node has run is cut at its start.
        ev(
            1300,
            EventKind::NodeStarted {
                node: "other".into(),
                node_type: "language_task",
            },
        ),
        ev(1310, provider("other", wait(500))),
        ev(1400, finished("other", 100)),
        // Map items: notes name the item; they nest in the item's span.
        ev(
            1400,
            EventKind::NodeStarted {
                node: "m".into(),
                node_type: "map",
            },
        ),
        ev(1500, provider("m[1]", wait(20))),
        ev(
            1600,
            EventKind::MapItem {
                node: "m".into(),
                index: 0,
                started: at(1400),
                duration: at(200),
                ok: true,
            },
        ),
        ev(
            1650,
            EventKind::MapItem {
                node: "m".into(),
                index: 1,
                started: at(1410),
                duration: at(240),
                ok: false,
            },
        ),
        ev(1660, finished("m", 260)),
        ev(
            1700,
            EventKind::RunFinished {
                success: false,
                duration: at(1700),
                status: composer_status(false),
                error: None,
            },
        ),
    ];
    let doc = chrome_trace(&events);
    let spans = complete_events(&doc);
    let find = |name: &str, ts: i64| {
        spans
            .iter()
            .find(|s| s.name == name && s.ts == ts)
            .unwrap_or_else(|| panic!("no `{name}` at {ts}: {spans:#?}"))
    };
    let ask = find("ask", 10_000);
    assert_eq!(ask.dur, 1_190_000);
    assert_eq!(ask.args["status"], "failed");
    assert_eq!(
        ask.args["error"],
        "provider `openai`: HTTP 429 rate limited"
    );

    let w = find("rate-limit wait", 50_000);
    assert_eq!((w.dur, w.tid), (50_000, ask.tid));
    assert_eq!(w.args["waited_ms"], 50);
    let r2 = find("retry 2 (HTTP 429)", 200_000);
    assert_eq!((r2.dur, r2.tid), (300_000, ask.tid));
    let r3 = find("retry 3 (HTTP 429)", 700_000);
    assert_eq!(
        (r3.dur, r3.tid),
        (500_000, ask.tid),
        "cut at the node's end"
    );

    let other = find("other", 1_300_000);
    let w = find("rate-limit wait", 1_300_000);
    assert_eq!(
        (w.dur, w.tid),
        (10_000, other.tid),
        "cut at the node's start"
    );

    let item1 = find("m[1]", 1_410_000);
    assert_eq!(item1.dur, 240_000);
    assert_eq!(item1.args["status"], "failed");
    let w = find("rate-limit wait", 1_480_000);
    assert_eq!((w.dur, w.tid), (20_000, item1.tid));
    let item0 = find("m[0]", 1_400_000);
    assert_ne!(item0.tid, item1.tid, "items that overlap get two tracks");

    assert_eq!(assert_provider_spans_nested(&spans), 5);
    assert_no_overlap_per_track(&spans);
    // `ask` and `other` never overlap: one node track serves both; `m`
    // starts as `other` ends and takes it too.
    assert_eq!(ask.tid, other.tid);
    assert_eq!(find("m", 1_400_000).tid, ask.tid);
}

#[test]
fn greedy_partitioning_uses_as_many_tracks_as_spans_overlap() {
    // Spans [0,100], [10,50], [20,30], [60,90], [100,120]: at most three
    // run at once (at 20..30), so three tracks; the fifth reuses the first.
    let spans = [
        ("a", 0, 100),
        ("b", 10, 50),
        ("c", 20, 30),
        ("d", 60, 90),
        ("e", 100, 120),
    ];
    let mut events = Vec::new();
    let mut timeline: Vec<(u64, EventKind)> = Vec::new();
    for (name, start, end) in spans {
        timeline.push((
            start,
            EventKind::NodeStarted {
                node: name.into(),
                node_type: "function_task",
            },
        ));
        timeline.push((end, finished(name, end - start)));
    }
    timeline.sort_by_key(|(t, _)| *t);
    for (t, kind) in timeline {
        events.push(ev(t, kind));
    }
    let doc = chrome_trace(&events);
    let got = complete_events(&doc);
    assert_no_overlap_per_track(&got);
    let tid = |name: &str| got.iter().find(|s| s.name == name).unwrap().tid;
    let tracks: std::collections::HashSet<i64> = got.iter().map(|s| s.tid).collect();
    assert_eq!(tracks.len(), 3);
    assert_eq!(tid("d"), tid("b"), "b ended at 50, before d started");
    assert_eq!(tid("e"), tid("a"), "a ended exactly when e started");
    assert_eq!(track_names(&doc).len(), 3);
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
