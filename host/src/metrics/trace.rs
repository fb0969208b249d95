//! Chrome trace-event files (`composer run --trace FILE.json`), which load
//! in Perfetto (ui.perfetto.dev) and chrome://tracing.
//!
//! - one complete event (`ph: "X"`, `ts`/`dur` in microseconds since the
//!   run started, `pid` 1) per node run, and one per map item;
//! - tracks (`tid`) are assigned by greedy interval partitioning, so spans
//!   that run at the same time never share one: node runs share the
//!   "nodes" tracks, each map node's items get tracks of their own;
//! - provider rate-limit waits and retry delays are complete events nested
//!   inside the span of the node (or map item) that made the call, on its
//!   track: a wait noted at `t` that took `w` is `[t−w, t]`, a retry noted
//!   at `t` with delay `d` is `[t, t+d]` (clamped to the node's span);
//! - a plugin's outbound HTTP request is a complete event `[t−d, t]` (it
//!   ended at `t` after `d`) nested the same way, with method, URL, status,
//!   bytes and any error or refusal;
//! - fallbacks to another model and loop passes are instant events;
//! - metadata events name the process and every track.

use super::model::split_item;
use crate::engine::events::{Event, EventKind};
use crate::providers::CallNote;
use serde_json::{json, Map, Value};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::Path;
use std::time::Duration;

/// Microseconds, rounded to the nearest.
fn us(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Group {
    Nodes,
    /// The items of one map node (its path).
    Items(String),
}

struct Span {
    name: String,
    cat: &'static str,
    start: i64,
    end: Option<i64>,
    group: Group,
    args: Map<String, Value>,
    tid: u32,
}

struct Note {
    node: String,
    at: i64,
    note: CallNote,
}

/// The trace-event document of a run's events.
pub fn chrome_trace(events: &[Event]) -> Value {
    let mut spans: Vec<Span> = Vec::new();
    // Running node spans by path (a stack: loops run a node again).
    let mut open: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
    let mut items: HashMap<(String, usize), Vec<usize>> = HashMap::new();
    let mut notes: Vec<Note> = Vec::new();
    let mut http: Vec<(String, i64, crate::plugins::outbound::HttpRequestRecord)> = Vec::new();
    let mut instants: Vec<Value> = Vec::new();
    let mut other = Map::new();
    let mut last = 0i64;

    for event in events {
        let at = us(event.at);
        last = last.max(at);
        match &event.kind {
            EventKind::RunStarted { run_id, recipe } => {
                other.insert("run_id".into(), json!(run_id));
                other.insert("recipe".into(), json!(recipe));
            }
            EventKind::RunFinished {
                success, duration, ..
            } => {
                other.insert("success".into(), json!(success));
                other.insert("wall_secs".into(), json!(duration.as_secs_f64()));
                last = last.max(us(*duration));
            }
            EventKind::NodeStarted { node, node_type } => {
                let mut args = Map::new();
                args.insert("type".into(), json!(node_type));
                by_path.entry(node.clone()).or_default().push(spans.len());
                open.entry(node.clone()).or_default().push(spans.len());
                spans.push(Span {
                    name: node.clone(),
                    cat: "node",
                    start: at,
                    end: None,
                    group: Group::Nodes,
                    args,
                    tid: 0,
                });
            }
            EventKind::NodeFinished {
                node,
                mock,
                stats,
                cached,
                plugin,
                ..
            } => {
                if let Some(span) = close(&mut spans, &mut open, node, at) {
                    let a = &mut span.args;
                    let status = if *cached { "cached" } else { "completed" };
                    a.insert("status".into(), json!(status));
                    a.insert("cached".into(), json!(cached));
                    a.insert("calls".into(), json!(stats.calls));
                    a.insert("retries".into(), json!(stats.retries));
                    a.insert("input_tokens".into(), json!(stats.input_tokens));
                    a.insert("output_tokens".into(), json!(stats.output_tokens));
                    a.insert(
                        "tokens".into(),
                        json!(stats.input_tokens + stats.output_tokens),
                    );
                    if let Some(cost) = stats.cost_usd {
                        a.insert("cost_usd".into(), json!(cost));
                    }
                    if stats.rate_limit_wait_ms > 0 {
                        a.insert("rate_limit_wait_ms".into(), json!(stats.rate_limit_wait_ms));
                    }
                    if let Some(p) = plugin {
                        a.insert("plugin_fuel".into(), json!(p.fuel));
                        a.insert(
                            "plugin_peak_memory_bytes".into(),
                            json!(p.peak_memory_bytes),
                        );
                    }
                    if *mock {
                        a.insert("mock".into(), json!(true));
                    }
                }
            }
            EventKind::NodeFailed {
                node,
                error,
                continued,
                ..
            } => {
                if let Some(span) = close(&mut spans, &mut open, node, at) {
                    span.args.insert("status".into(), json!("failed"));
                    span.args.insert("error".into(), json!(error));
                    span.args.insert("continued".into(), json!(continued));
                }
            }
            EventKind::NodeCancelled { node } => {
                if let Some(span) = close(&mut spans, &mut open, node, at) {
                    span.args.insert("status".into(), json!("cancelled"));
                }
            }
            EventKind::NodeWaiting { node, .. } => {
                if let Some(span) = close(&mut spans, &mut open, node, at) {
                    span.args.insert("status".into(), json!("waiting"));
                }
            }
            EventKind::MapItem {
                node,
                index,
                started,
                duration,
                ok,
            } => {
                let start = us(*started);
                let end = us(*started + *duration).max(start);
                last = last.max(end);
                items
                    .entry((node.clone(), *index))
                    .or_default()
                    .push(spans.len());
                let mut args = Map::new();
                args.insert("map".into(), json!(node));
                args.insert("index".into(), json!(index));
                args.insert("ok".into(), json!(ok));
                args.insert(
                    "status".into(),
                    json!(if *ok { "completed" } else { "failed" }),
                );
                spans.push(Span {
                    name: format!("{node}[{index}]"),
                    cat: "item",
                    start,
                    end: Some(end),
                    group: Group::Items(node.clone()),
                    args,
                    tid: 0,
                });
            }
            EventKind::PluginHttp { node, request } => {
                http.push((node.clone(), at, request.clone()));
            }
            EventKind::Provider { node, note } => notes.push(Note {
                node: node.clone(),
                at,
                note: note.clone(),
            }),
            EventKind::LoopIteration { nodes, iteration } => instants.push(json!({
                "name": format!("loop pass {iteration}"),
                "cat": "loop",
                "ph": "i",
                "s": "g",
                "ts": at,
                "pid": 1,
                "tid": 1,
                "args": {"nodes": nodes},
            })),
            EventKind::NodeSkipped { .. }
            | EventKind::MapProgress { .. }
            | EventKind::NodeProgress { .. }
            | EventKind::Log { .. } => {}
        }
    }
    // Spans still open when the events end (an interrupted run).
    for span in spans.iter_mut().filter(|s| s.end.is_none()) {
        span.end = Some(last.max(span.start));
        span.args.insert("status".into(), json!("unfinished"));
    }

    let names = assign_tracks(&mut spans);

    let mut out: Vec<Value> = Vec::new();
    let mut process = json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": {"name": "composer run"},
    });
    if let Some(recipe) = other.get("recipe").and_then(Value::as_str) {
        process["args"]["name"] = json!(format!("composer run {recipe}"));
    }
    out.push(process);
    for (tid, name) in &names {
        out.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
            "args": {"name": name},
        }));
        out.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid,
            "args": {"sort_index": tid},
        }));
    }

    let mut timed: Vec<(i64, i64, Value)> = Vec::new();
    for span in &spans {
        let end = span.end.unwrap_or(span.start);
        timed.push((span.start, end - span.start, complete(span, end)));
    }
    for n in &notes {
        let Some(parent) = parent_span(&spans, &by_path, &items, &n.node, n.at) else {
            continue;
        };
        let (ps, pe) = (parent.start, parent.end.unwrap_or(parent.start));
        let mut args = Map::new();
        args.insert("node".into(), json!(n.node));
        let (name, start, end) = match &n.note {
            CallNote::RateLimitWait {
                provider,
                waited_ms,
            } => {
                args.insert("provider".into(), json!(provider));
                args.insert("waited_ms".into(), json!(waited_ms));
                let w = i64::try_from(waited_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
                ("rate-limit wait".to_string(), n.at.saturating_sub(w), n.at)
            }
            CallNote::Retry {
                provider,
                attempt,
                delay_ms,
                reason,
            } => {
                args.insert("provider".into(), json!(provider));
                args.insert("attempt".into(), json!(attempt));
                args.insert("delay_ms".into(), json!(delay_ms));
                args.insert("reason".into(), json!(reason));
                let d = i64::try_from(delay_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
                (
                    format!(
                        "retry {} ({})",
                        attempt.saturating_add(1),
                        short_reason(reason)
                    ),
                    n.at,
                    n.at.saturating_add(d),
                )
            }
            CallNote::Fallback { from, to, reason } => {
                args.insert("reason".into(), json!(reason));
                let at = n.at.clamp(ps, pe);
                timed.push((
                    at,
                    0,
                    json!({
                        "name": format!("fallback {from} → {to}"),
                        "cat": "provider",
                        "ph": "i",
                        "s": "t",
                        "ts": at,
                        "pid": 1,
                        "tid": parent.tid,
                        "args": args,
                    }),
                ));
                continue;
            }
        };
        let start = start.clamp(ps, pe);
        let end = end.clamp(start, pe);
        timed.push((
            start,
            end - start,
            json!({
                "name": name,
                "cat": "provider",
                "ph": "X",
                "ts": start,
                "dur": end - start,
                "pid": 1,
                "tid": parent.tid,
                "args": args,
            }),
        ));
    }
    for (node, at, r) in &http {
        let Some(parent) = parent_span(&spans, &by_path, &items, node, *at) else {
            continue;
        };
        let (ps, pe) = (parent.start, parent.end.unwrap_or(parent.start));
        let d = us(Duration::from_secs_f64(r.secs.max(0.0)));
        let start = at.saturating_sub(d).clamp(ps, pe);
        let end = (*at).clamp(start, pe);
        let mut args = Map::new();
        args.insert("node".into(), json!(node));
        args.insert("plugin".into(), json!(r.plugin));
        args.insert("url".into(), json!(r.url));
        args.insert("status".into(), json!(r.status));
        args.insert("request_bytes".into(), json!(r.request_bytes));
        args.insert("response_bytes".into(), json!(r.response_bytes));
        if r.refused {
            args.insert("refused".into(), json!(true));
        }
        if let Some(e) = &r.error {
            args.insert("error".into(), json!(e));
        }
        let what = match (r.refused, r.status) {
            (true, _) => "refused".to_string(),
            (false, Some(s)) => s.to_string(),
            (false, None) => "failed".to_string(),
        };
        timed.push((
            start,
            end - start,
            json!({
                "name": format!("http {} {} ({what})", r.method, r.url),
                "cat": "http",
                "ph": "X",
                "ts": start,
                "dur": end - start,
                "pid": 1,
                "tid": parent.tid,
                "args": args,
            }),
        ));
    }
    for i in instants {
        let ts = i["ts"].as_i64().unwrap_or(0);
        timed.push((ts, 0, i));
    }
    // By start; at the same start, enclosing spans first.
    timed.sort_by_key(|(start, dur, _)| (*start, Reverse(*dur)));
    out.extend(timed.into_iter().map(|(_, _, v)| v));

    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": other,
    })
}

/// Writes the trace-event document of `events` to `path`.
pub fn write_trace(path: &Path, events: &[Event]) -> Result<(), String> {
    let doc = chrome_trace(events);
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot write the trace `{}`: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut w, &doc)
        .map_err(|e| format!("cannot write the trace `{}`: {e}", path.display()))?;
    std::io::Write::flush(&mut w)
        .map_err(|e| format!("cannot write the trace `{}`: {e}", path.display()))
}

fn close<'a>(
    spans: &'a mut [Span],
    open: &mut HashMap<String, Vec<usize>>,
    node: &str,
    at: i64,
) -> Option<&'a mut Span> {
    let i = open.get_mut(node)?.pop()?;
    let span = spans.get_mut(i)?;
    span.end = Some(at.max(span.start));
    Some(span)
}

fn complete(span: &Span, end: i64) -> Value {
    json!({
        "name": span.name,
        "cat": span.cat,
        "ph": "X",
        "ts": span.start,
        "dur": end - span.start,
        "pid": 1,
        "tid": span.tid,
        "args": span.args,
    })
}

/// The span a provider note at `at` belongs to: the run of that node path
/// (or of that map item) that started last at or before `at`.
fn parent_span<'a>(
    spans: &'a [Span],
    by_path: &HashMap<String, Vec<usize>>,
    items: &HashMap<(String, usize), Vec<usize>>,
    node: &str,
    at: i64,
) -> Option<&'a Span> {
    let candidates = match by_path.get(node) {
        Some(c) => c,
        None => {
            let (map, index) = split_item(node)?;
            items.get(&(map.to_string(), index))?
        }
    };
    let pick = candidates
        .iter()
        .rev()
        .find(|&&i| spans[i].start <= at)
        .or_else(|| candidates.first())?;
    spans.get(*pick)
}

/// `HTTP 429 rate limited: slow down` → `HTTP 429`; other reasons are cut
/// at their first colon or 40 characters.
fn short_reason(reason: &str) -> String {
    let r = reason.trim();
    if let Some(rest) = r.strip_prefix("HTTP ") {
        let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !code.is_empty() {
            return format!("HTTP {code}");
        }
    }
    let head = r.split(':').next().unwrap_or(r).trim();
    let mut s: String = head.chars().take(40).collect();
    if head.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// Greedy interval partitioning, per group: each span (by start) takes the
/// lowest-numbered track of its group that is free by then, or a new one.
/// Returns the tracks' names by tid.
fn assign_tracks(spans: &mut [Span]) -> Vec<(u32, String)> {
    let mut groups: HashMap<Group, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        groups.entry(s.group.clone()).or_default().push(i);
    }
    // Node tracks first, then each map's items in the order they started.
    let mut order: Vec<(Group, Vec<usize>)> = groups.into_iter().collect();
    for (_, members) in &mut order {
        members.sort_by_key(|&i| (spans[i].start, spans[i].end));
    }
    order.sort_by(|(ga, a), (gb, b)| {
        let first = |m: &Vec<usize>| m.first().map(|&i| spans[i].start);
        (ga != &Group::Nodes)
            .cmp(&(gb != &Group::Nodes))
            .then(first(a).cmp(&first(b)))
            .then(ga.cmp(gb))
    });
    let mut names = Vec::new();
    let mut next_tid = 1u32;
    for (group, members) in order {
        let mut free: BTreeSet<u32> = BTreeSet::new();
        let mut busy: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::new();
        let mut tracks = 0u32;
        for i in members {
            let (start, end) = (spans[i].start, spans[i].end.unwrap_or(spans[i].start));
            while let Some(Reverse((until, track))) = busy.peek().copied() {
                if until > start {
                    break;
                }
                busy.pop();
                free.insert(track);
            }
            let track = free.pop_first().unwrap_or_else(|| {
                tracks += 1;
                tracks - 1
            });
            busy.push(Reverse((end, track)));
            spans[i].tid = next_tid + track;
        }
        for t in 0..tracks {
            let name = match &group {
                Group::Nodes => format!("nodes #{}", t + 1),
                Group::Items(map) => format!("{map} items #{}", t + 1),
            };
            names.push((next_tid + t, name));
        }
        next_tid += tracks;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::short_reason;

    #[test]
    fn reasons_are_short() {
        assert_eq!(short_reason("HTTP 429 rate limited: slow down"), "HTTP 429");
        assert_eq!(short_reason("HTTP 503: busy"), "HTTP 503");
        assert_eq!(
            short_reason("injected failure: input contains `X`"),
            "injected failure"
        );
    }
}
