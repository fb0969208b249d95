//! Per-node and per-run figures computed from a run's events and its plan.
//!
//! Counting rules:
//! - every node path that had an event gets a `NodeMetrics` (sub-recipe
//!   nodes as `parent/child`, with `parent` set); a node a loop ran several
//!   times has one entry with `runs` > 1 and its durations summed;
//! - map items are not nodes: they count under their map node (`items`);
//! - run totals (calls, retries, tokens, cost, plugin use) and the node
//!   counts by status are over top-level nodes, whose figures already
//!   include their sub-recipe's and items' (nothing is counted twice);
//! - plugins' outbound HTTP requests are counted over the whole run, at
//!   any depth (each one's details are in the trace);
//! - the cache hit rate is over nodes at any depth that call a provider or
//!   a function (language, speech, transcription, function, reduce, and
//!   maps of those): cached ones / completed ones (cached included);
//! - the critical path follows the top-level plan's forward edges through
//!   nodes that ran, and is the chain with the largest summed duration.

use super::collector::NodeRss;
use crate::engine::events::{Event, EventKind};
use crate::engine::plan::{Endpoint, Plan};
use crate::recipe::model::{Node, NodeKind, Recipe};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Completed,
    /// Completed from the cache (no provider or plugin call).
    Cached,
    Skipped,
    Failed,
    Cancelled,
    /// A `hitl` node waiting for a reply.
    Waiting,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Completed => "completed",
            NodeStatus::Waiting => "waiting",
            NodeStatus::Cached => "cached",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Failed => "failed",
            NodeStatus::Cancelled => "cancelled",
        }
    }
}

/// A map node's items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemStats {
    pub count: u64,
    pub failed: u64,
    /// Seconds.
    pub mean_secs: f64,
    pub max_secs: f64,
}

/// One node of a run. Times are seconds since the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// The node's path: its id, `parent/child` inside a sub-recipe,
    /// `map[3]/child` inside a map item's sub-recipe.
    pub node: String,
    pub node_type: String,
    /// The node this one runs under (sub-recipe or map node), if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// When it first started (None: it never ran).
    pub start: Option<f64>,
    /// When it last ended.
    pub end: Option<f64>,
    /// Seconds it ran, summed over its runs.
    pub duration: f64,
    /// How many times it ran (loops run nodes again).
    #[serde(default)]
    pub runs: u32,
    pub status: NodeStatus,
    /// Provider calls (attempts), retries, rate-limiter wait.
    pub calls: u32,
    pub retries: u32,
    pub rate_limit_wait_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// USD, when the models have prices.
    pub cost_usd: Option<f64>,
    /// The result came from the cache.
    pub cache_hit: bool,
    /// Some output came from the mock provider.
    #[serde(default)]
    pub mock: bool,
    pub plugin_calls: u32,
    pub plugin_fuel: u64,
    pub plugin_peak_memory_bytes: u64,
    /// Process RSS when it first started and when it last ended.
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// Map nodes: their items.
    #[serde(default)]
    pub items: Option<ItemStats>,
    pub error: Option<String>,
}

impl NodeMetrics {
    fn new(node: &str) -> Self {
        NodeMetrics {
            node: node.to_string(),
            node_type: String::new(),
            parent: parent_of(node).map(str::to_string),
            start: None,
            end: None,
            duration: 0.0,
            runs: 0,
            status: NodeStatus::Cancelled,
            calls: 0,
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

    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Ran at least once (completed, cached, failed or cancelled while running).
    pub fn ran(&self) -> bool {
        self.runs > 0
    }
}

/// The chain of nodes that bounded the run's wall time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Top-level node ids, in order.
    pub nodes: Vec<String>,
    /// Their summed durations, seconds.
    pub total_secs: f64,
}

/// Summed over the run's top-level nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub calls: u64,
    pub retries: u64,
    pub rate_limit_wait_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens: u64,
    pub cost_usd: Option<f64>,
    pub plugin_calls: u64,
    pub plugin_fuel: u64,
    /// Plugins' outbound HTTP requests at any depth, refused ones included.
    #[serde(default)]
    pub http_requests: u64,
    #[serde(default)]
    pub http_refused: u64,
    #[serde(default)]
    pub http_bytes_sent: u64,
    #[serde(default)]
    pub http_bytes_received: u64,
}

/// Top-level nodes by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub completed: u32,
    pub cached: u32,
    pub skipped: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl StatusCounts {
    fn add(&mut self, status: NodeStatus) {
        match status {
            NodeStatus::Completed => self.completed += 1,
            NodeStatus::Cached => self.cached += 1,
            NodeStatus::Skipped => self.skipped += 1,
            NodeStatus::Failed => self.failed += 1,
            // Still open: counted with the unfinished.
            NodeStatus::Cancelled | NodeStatus::Waiting => self.cancelled += 1,
        }
    }
}

/// Cache use over the nodes that call a provider or a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounts {
    /// Completed from the cache.
    pub hits: u32,
    /// Completed (cached or not).
    pub eligible: u32,
}

/// A whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub recipe: Option<String>,
    /// None while the run has not finished.
    #[serde(default)]
    pub success: Option<bool>,
    /// Seconds from start to end.
    pub wall_secs: f64,
    pub critical_path: CriticalPath,
    pub totals: Totals,
    /// `cache.hits / cache.eligible`; None when no node could be cached.
    pub cache_hit_rate: Option<f64>,
    pub cache: CacheCounts,
    pub counts: StatusCounts,
    /// The largest process RSS sampled during the run, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// In the order they first appeared.
    pub nodes: Vec<NodeMetrics>,
}

/// Map item paths: `map[3]` → (`map`, 3).
pub fn split_item(path: &str) -> Option<(&str, usize)> {
    let inner = path.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let index = inner[open + 1..].parse().ok()?;
    Some((&inner[..open], index))
}

/// `map[3][1]` → `map`.
fn strip_items(mut segment: &str) -> &str {
    while let Some((base, _)) = split_item(segment) {
        segment = base;
    }
    segment
}

/// The node a path runs under: `a/b` → `a`, `m[2]/b` → `m`, `a` → None.
pub fn parent_of(path: &str) -> Option<&str> {
    let slash = path.rfind('/')?;
    Some(strip_items(&path[..slash]))
}

/// The recipe node at a path (`a`, `a/b`, `m[2]/b`).
pub fn find_node<'a>(recipe: &'a Recipe, path: &str) -> Option<&'a Node> {
    let mut recipe = recipe;
    let mut segments = path.split('/').peekable();
    loop {
        let id = strip_items(segments.next()?);
        let node = recipe.nodes.iter().find(|n| n.id == id)?;
        if segments.peek().is_none() {
            return Some(node);
        }
        recipe = match &node.kind {
            NodeKind::Recipe(sub) => &sub.recipe,
            NodeKind::Map(spec) => match &spec.task.kind {
                NodeKind::Recipe(sub) => &sub.recipe,
                _ => return None,
            },
            _ => return None,
        };
    }
}

/// Whether a node of this kind calls a provider or a function itself (and
/// so could be served from the cache).
pub fn calls_out(kind: &NodeKind) -> bool {
    match kind {
        NodeKind::LanguageTask { .. }
        | NodeKind::TextToSpeechTask
        | NodeKind::SpeechToTextTask { .. }
        | NodeKind::FunctionTask { .. }
        | NodeKind::Reduce { .. } => true,
        NodeKind::Map(spec) => calls_out(&spec.task.kind),
        NodeKind::Recipe(_) | NodeKind::Hitl(_) => false,
    }
}

fn add_cost(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

impl RunMetrics {
    /// Computes the figures of a run from its events (in emission order),
    /// its plan, the RSS samples by node path and the peak RSS.
    pub fn compute(
        events: &[Event],
        plan: &Plan,
        rss: &HashMap<String, NodeRss>,
        peak_rss: Option<u64>,
    ) -> RunMetrics {
        let mut m = RunMetrics {
            recipe: Some(plan.recipe.name.clone()),
            peak_rss_bytes: peak_rss,
            ..RunMetrics::default()
        };
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut nodes: Vec<NodeMetrics> = Vec::new();
        // When each running node's current run started.
        let mut open: HashMap<String, f64> = HashMap::new();
        let mut item_secs: HashMap<String, (f64, f64)> = HashMap::new();
        let mut last_at = 0.0f64;
        let mut slot = |path: &str, nodes: &mut Vec<NodeMetrics>| -> usize {
            *index.entry(path.to_string()).or_insert_with(|| {
                nodes.push(NodeMetrics::new(path));
                nodes.len() - 1
            })
        };

        for event in events {
            let at = event.at.as_secs_f64();
            last_at = last_at.max(at);
            match &event.kind {
                EventKind::RunStarted { run_id, recipe } => {
                    m.run_id = Some(run_id.clone());
                    m.recipe = Some(recipe.clone());
                }
                EventKind::RunFinished {
                    success, duration, ..
                } => {
                    m.success = Some(*success);
                    m.wall_secs = duration.as_secs_f64();
                }
                EventKind::NodeStarted { node, node_type } => {
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    n.node_type = node_type.to_string();
                    n.start.get_or_insert(at);
                    n.runs += 1;
                    open.insert(node.clone(), at);
                }
                EventKind::NodeFinished {
                    node,
                    duration,
                    mock,
                    stats,
                    cached,
                    plugin,
                } => {
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    open.remove(node);
                    n.status = if *cached {
                        NodeStatus::Cached
                    } else {
                        NodeStatus::Completed
                    };
                    n.end = Some(at);
                    n.duration += duration.as_secs_f64();
                    n.calls += stats.calls;
                    n.retries += stats.retries;
                    n.rate_limit_wait_ms += stats.rate_limit_wait_ms;
                    n.input_tokens += stats.input_tokens;
                    n.output_tokens += stats.output_tokens;
                    n.cost_usd = add_cost(n.cost_usd, stats.cost_usd);
                    n.cache_hit = *cached;
                    n.mock |= *mock;
                    if let Some(p) = plugin {
                        n.plugin_calls += p.calls;
                        n.plugin_fuel += p.fuel;
                        n.plugin_peak_memory_bytes =
                            n.plugin_peak_memory_bytes.max(p.peak_memory_bytes);
                    }
                }
                EventKind::NodeFailed {
                    node,
                    error,
                    duration,
                    ..
                } => {
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    open.remove(node);
                    n.status = NodeStatus::Failed;
                    n.end = Some(at);
                    n.duration += duration.as_secs_f64();
                    n.error = Some(error.clone());
                }
                EventKind::NodeSkipped { node } => {
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    // A loop may skip a node it ran on an earlier pass.
                    if n.runs == 0 {
                        n.status = NodeStatus::Skipped;
                    }
                }
                EventKind::NodeCancelled { node } | EventKind::NodeWaiting { node, .. } => {
                    let waiting = matches!(event.kind, EventKind::NodeWaiting { .. });
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    if let Some(started) = open.remove(node) {
                        n.duration += (at - started).max(0.0);
                        n.end = Some(at);
                    }
                    n.status = if waiting {
                        NodeStatus::Waiting
                    } else {
                        NodeStatus::Cancelled
                    };
                }
                EventKind::MapItem {
                    node, duration, ok, ..
                } => {
                    let i = slot(node, &mut nodes);
                    let n = &mut nodes[i];
                    let items = n.items.get_or_insert_with(ItemStats::default);
                    let secs = duration.as_secs_f64();
                    items.count += 1;
                    if !ok {
                        items.failed += 1;
                    }
                    items.max_secs = items.max_secs.max(secs);
                    let sum = item_secs.entry(node.clone()).or_default();
                    sum.0 += secs;
                    sum.1 += 1.0;
                }
                // Counted over the whole run (per request: the trace).
                EventKind::PluginHttp { request, .. } => {
                    let t = &mut m.totals;
                    t.http_requests += 1;
                    t.http_refused += u64::from(request.refused);
                    t.http_bytes_sent += request.request_bytes;
                    t.http_bytes_received += request.response_bytes;
                }
                EventKind::MapProgress { .. }
                | EventKind::Provider { .. }
                | EventKind::NodeProgress { .. }
                | EventKind::LoopIteration { .. }
                | EventKind::Log { .. } => {}
            }
        }
        // Nodes still running when the events end (an unfinished run).
        for (node, started) in open {
            if let Some(&i) = index.get(&node) {
                nodes[i].duration += (last_at - started).max(0.0);
            }
        }
        if m.success.is_none() {
            m.wall_secs = last_at;
        }

        for n in &mut nodes {
            if let Some(items) = &mut n.items {
                if let Some((sum, count)) = item_secs.get(&n.node) {
                    items.mean_secs = sum / count.max(1.0);
                }
            }
            // Top-level nodes by the plan's index; nested paths by walking.
            let spec = match plan.index.get(n.node.as_str()) {
                Some(&i) => plan.recipe.nodes.get(i),
                None => find_node(&plan.recipe, &n.node),
            };
            if n.node_type.is_empty() {
                n.node_type = spec.map(|s| s.kind.type_name()).unwrap_or("").to_string();
            }
            if let Some(r) = rss.get(&n.node) {
                n.rss_before_bytes = r.before;
                n.rss_after_bytes = r.after;
            }
            if n.parent.is_none() {
                m.counts.add(n.status);
                let t = &mut m.totals;
                t.calls += u64::from(n.calls);
                t.retries += u64::from(n.retries);
                t.rate_limit_wait_ms += n.rate_limit_wait_ms;
                t.input_tokens += n.input_tokens;
                t.output_tokens += n.output_tokens;
                t.cost_usd = add_cost(t.cost_usd, n.cost_usd);
                t.plugin_calls += u64::from(n.plugin_calls);
                t.plugin_fuel += n.plugin_fuel;
            }
            let eligible = matches!(n.status, NodeStatus::Completed | NodeStatus::Cached)
                && spec.is_some_and(|s| calls_out(&s.kind));
            if eligible {
                m.cache.eligible += 1;
                if n.status == NodeStatus::Cached {
                    m.cache.hits += 1;
                }
            }
        }
        m.totals.tokens = m.totals.input_tokens + m.totals.output_tokens;
        m.cache_hit_rate =
            (m.cache.eligible > 0).then(|| f64::from(m.cache.hits) / f64::from(m.cache.eligible));
        m.critical_path = critical_path(plan, &nodes, &index);
        m.nodes = nodes;
        m
    }

    /// Nodes, slowest first (ties: earlier start first).
    pub fn slowest(&self) -> Vec<&NodeMetrics> {
        let mut nodes: Vec<&NodeMetrics> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| {
            b.duration.total_cmp(&a.duration).then(
                a.start
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.start.unwrap_or(f64::MAX)),
            )
        });
        nodes
    }
}

/// The longest (by summed duration) chain of top-level nodes that ran,
/// following the plan's forward edges (back edges would make cycles).
fn critical_path(
    plan: &Plan,
    nodes: &[NodeMetrics],
    index: &HashMap<String, usize>,
) -> CriticalPath {
    let count = plan.nodes.len();
    let weight: Vec<Option<f64>> = plan
        .recipe
        .nodes
        .iter()
        .map(|n| {
            index
                .get(&n.id)
                .map(|&i| &nodes[i])
                .filter(|m| m.ran())
                .map(|m| m.duration)
        })
        .collect();
    // Forward edges between nodes, as adjacency.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut indegree = vec![0usize; count];
    for edge in &plan.edges {
        if edge.back {
            continue;
        }
        if let (Endpoint::Node(a), Endpoint::Node(b)) = (edge.from, edge.to) {
            if a != b && !succ[a].contains(&b) {
                succ[a].push(b);
                indegree[b] += 1;
            }
        }
    }
    // Kahn's order; nodes left in a cycle (should not happen) are ignored.
    let mut order = Vec::with_capacity(count);
    let mut ready: Vec<usize> = (0..count).rev().filter(|&n| indegree[n] == 0).collect();
    while let Some(n) = ready.pop() {
        order.push(n);
        for &s in succ[n].iter().rev() {
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(s);
            }
        }
    }
    // best[n]: the heaviest chain of nodes that ran ending at n.
    let mut best: Vec<f64> = vec![0.0; count];
    let mut prev: Vec<Option<usize>> = vec![None; count];
    let mut top: Option<usize> = None;
    for &n in &order {
        let Some(w) = weight[n] else { continue };
        best[n] += w;
        if top.is_none_or(|t| best[n] > best[t]) {
            top = Some(n);
        }
        for &s in &succ[n] {
            if weight[s].is_some() && best[n] > best[s] {
                best[s] = best[n];
                prev[s] = Some(n);
            }
        }
    }
    let Some(end) = top else {
        return CriticalPath::default();
    };
    let mut chain = vec![end];
    let mut at = end;
    while let Some(p) = prev[at] {
        chain.push(p);
        at = p;
    }
    chain.reverse();
    CriticalPath {
        total_secs: best[end],
        nodes: chain
            .into_iter()
            .map(|n| plan.recipe.nodes[n].id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(split_item("m[3]"), Some(("m", 3)));
        assert_eq!(split_item("a/m[12]"), Some(("a/m", 12)));
        assert_eq!(split_item("m[x]"), None);
        assert_eq!(split_item("m"), None);
        assert_eq!(parent_of("a"), None);
        assert_eq!(parent_of("a/b"), Some("a"));
        assert_eq!(parent_of("m[2]/b"), Some("m"));
        assert_eq!(parent_of("a/m[2][1]/b"), Some("a/m"));
    }
}
