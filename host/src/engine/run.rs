//! The scheduler (RECIPES.md section 6): runs a plan's nodes as their
//! incoming edges settle, truly in parallel (tokio tasks, bounded by
//! `max_parallel_nodes`), with conditions, skip propagation, loops, `END`,
//! `on_error: continue`, and cancellation of running siblings on failure.
//!
//! Rules, as implemented:
//! - an edge is unsettled, taken or not taken; START edges are taken at the
//!   start; an edge is settled when its source finishes (condition
//!   evaluated on the state then) or is skipped (not taken);
//! - a node decides when all its incoming forward edges are settled: it runs
//!   if one was taken, else it is skipped and its own edges are not taken;
//! - back edges (see `plan`) are not waited for; when one is taken, the loop
//!   body reachable from its target runs again once the current pass has
//!   settled, up to the loop's `max_iterations` passes;
//! - edges leaving a loop settle only when the loop stops.
//!
//! The scheduler owns the state and is its only writer; each node runs on a
//! copy-on-write snapshot taken when it starts.

use super::error::{NodeError, RunError};
use super::events::EventKind;
use super::plan::{Endpoint, Plan};
use super::state::{self, Values};
use crate::config::EngineSettings;
use crate::nodes::{self, HumanInput, NodeCtx, NodeOutput};
use crate::plugins::FunctionRegistry;
use crate::providers::Providers;
use crate::recipe::model::{ModelSpec, OnError, Recipe};
use crate::template;
use minijinja::value::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a process offers every run: providers, functions, a way to ask a
/// human, settings.
pub struct Services {
    pub providers: Providers,
    pub functions: FunctionRegistry,
    pub human: Option<Arc<dyn HumanInput>>,
    pub settings: EngineSettings,
    /// The result cache (None: nothing is cached).
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// Where runs are recorded (None: they are not).
    pub store: Option<Arc<dyn crate::store::RunStore>>,
    /// What the run's plugins may reach and read when it brings its own
    /// grants (a tenant's); None: the process config's.
    pub plugin_policy: Option<Arc<crate::plugins::RunPluginPolicy>>,
}

impl Services {
    pub fn new(settings: EngineSettings) -> Self {
        Services {
            providers: Providers::builtin(),
            functions: FunctionRegistry::default(),
            human: None,
            settings,
            cache: None,
            store: None,
            plugin_policy: None,
        }
    }
}

/// One run, shared by its nodes and nested sub-recipe runs.
pub struct RunContext {
    pub services: Arc<Services>,
    pub run_id: String,
    /// The run's own output folder.
    pub out_dir: PathBuf,
    /// Numbers events and hands them to the run's sinks in order.
    pub emitter: super::events::Emitter,
    pub started: Instant,
    /// `--model`: replaces every node's model.
    pub model_override: Option<ModelSpec>,
    /// Human replies, by node id or path (scripted, or stored for a
    /// waiting run).
    pub replies: HashMap<String, serde_json::Value>,
    /// Folders plugins may read: those holding the run's `file` inputs.
    pub read_grants: Vec<PathBuf>,
    /// The folders its plugin calls are granted, opened once for the run.
    pub opened_grants: Arc<crate::plugins::sandbox::OpenGrants>,
    /// Read and write the cache, only write it, or leave it alone.
    pub cache_mode: crate::cache::CacheMode,
    /// Prefix of every cache key of this run: tenants never share entries.
    pub cache_namespace: String,
    /// Checkpoints and events of a recorded run (None: not durable).
    pub journal: Option<super::durable::SharedJournal>,
    /// Cancels the run: running nodes stop and are recorded as cancelled.
    pub cancel: CancellationToken,
    /// Shutting down: start no new node, let running ones finish.
    pub drain: CancellationToken,
    /// The tenant's token and cost budget.
    pub budget: Option<Arc<dyn super::budget::Budget>>,
    /// The tenant's caps over plugin limits.
    pub plugin_caps: Option<crate::plugins::limits::LimitCaps>,
}

impl RunContext {
    pub fn emit(&self, kind: EventKind) {
        self.emitter.emit(kind);
    }
}

/// What a finished (sub-)run leaves.
pub struct Finished {
    pub state: Arc<Values>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Some output came from the mock provider.
    pub mock: bool,
    /// Provider calls, retries, tokens and cost of every node, summed.
    pub stats: crate::providers::CallStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Ready,
    Running,
    Done,
    Skipped,
    Cancelled,
    /// A `hitl` node without a reply: the run stops in `waiting`.
    Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EdgeState {
    Unsettled,
    Taken,
    NotTaken,
}

struct Scheduler {
    run: Arc<RunContext>,
    plan: Arc<Plan>,
    prefix: String,
    /// Prefix of checkpoint keys (`parent#1/` inside a sub-recipe).
    key_prefix: String,
    /// Per node: how many times it has started (loop passes).
    runs: Vec<u32>,
    producers: Arc<HashSet<String>>,
    state: Arc<Values>,
    status: Vec<Status>,
    edges: Vec<EdgeState>,
    /// Per loop: the pass now running (from 1).
    passes: Vec<u32>,
    /// Per loop: back edges taken during the current pass.
    repeat: Vec<Vec<usize>>,
    ready: VecDeque<usize>,
    /// Nodes whose incoming edges changed and must be looked at again.
    to_decide: Vec<usize>,
    started: Vec<Option<Instant>>,
    mock: bool,
    stats: crate::providers::CallStats,
}

/// Runs a plan to the end. `prefix` is prepended to node ids in events
/// (`parent/` for sub-recipes).
pub async fn execute(
    run: Arc<RunContext>,
    plan: Arc<Plan>,
    inputs: serde_json::Map<String, serde_json::Value>,
    prefix: String,
    key_prefix: String,
) -> Result<Finished, RunError> {
    let mut s = Scheduler::new(run, plan, inputs, prefix, key_prefix);
    let mut running: JoinSet<(usize, Result<NodeOutput, NodeError>)> = JoinSet::new();
    let mut task_nodes: HashMap<tokio::task::Id, usize> = HashMap::new();
    let max_parallel = s.run.services.settings.max_parallel_nodes.max(1);

    let result = async {
        s.begin()?;
        loop {
            while running.len() < max_parallel && !s.run.drain.is_cancelled() {
                let Some(n) = s.ready.pop_front() else { break };
                // A node an earlier attempt finished is restored, not run.
                if let Some(out) = s.restore(n) {
                    s.settle(n, Ok(out), true)?;
                    continue;
                }
                let id = s.spawn(n, &mut running);
                task_nodes.insert(id, n);
            }
            if running.is_empty() && s.run.drain.is_cancelled() && !s.ready.is_empty() {
                return Err(RunError::Interrupted);
            }
            let joined = tokio::select! {
                joined = running.join_next_with_id() => joined,
                () = s.run.cancel.cancelled() => return Err(RunError::Cancelled),
            };
            let Some(joined) = joined else {
                break;
            };
            let (n, result) = match joined {
                Ok((id, r)) => {
                    task_nodes.remove(&id);
                    r
                }
                Err(e) => {
                    // A panicking node is that node's failure, never the host's.
                    let n = task_nodes.remove(&e.id()).unwrap_or_default();
                    (
                        n,
                        Err(NodeError::Output(format!(
                            "internal error: the node's task ended abnormally ({e})"
                        ))),
                    )
                }
            };
            s.settle(n, result, false)?;
        }
        s.finish_run()
    }
    .await;

    if result.is_err() {
        running.abort_all();
        // Interrupted by a shutdown: nodes left ready run when the run is
        // continued; they were not cancelled.
        let interrupted = matches!(result, Err(RunError::Interrupted));
        for n in 0..s.status.len() {
            let left = match s.status[n] {
                Status::Running => true,
                Status::Ready => !interrupted,
                _ => false,
            };
            if left {
                s.status[n] = Status::Cancelled;
                s.run.emit(EventKind::NodeCancelled { node: s.path(n) });
            }
        }
        while running.join_next().await.is_some() {}
    }
    result
}

impl Scheduler {
    fn new(
        run: Arc<RunContext>,
        plan: Arc<Plan>,
        inputs: serde_json::Map<String, serde_json::Value>,
        prefix: String,
        key_prefix: String,
    ) -> Self {
        let mut values = Values::with_capacity(inputs.len() + plan.nodes.len());
        for (k, v) in &inputs {
            values.insert(k.clone(), state::from_json(v));
        }
        let producers: HashSet<String> =
            plan.recipe.nodes.iter().map(|n| n.output.clone()).collect();
        let nodes = plan.nodes.len();
        Scheduler {
            status: vec![Status::Pending; nodes],
            edges: vec![EdgeState::Unsettled; plan.edges.len()],
            passes: vec![1; plan.loops.len()],
            repeat: vec![Vec::new(); plan.loops.len()],
            ready: VecDeque::new(),
            to_decide: Vec::new(),
            started: vec![None; nodes],
            runs: vec![0; nodes],
            key_prefix,
            producers: Arc::new(producers),
            state: Arc::new(values),
            run,
            plan,
            prefix,
            mock: false,
            stats: crate::providers::CallStats::default(),
        }
    }

    fn path(&self, n: usize) -> String {
        format!("{}{}", self.prefix, self.plan.recipe.nodes[n].id)
    }

    /// The checkpoint key of node `n`'s current execution.
    fn key(&self, n: usize) -> String {
        format!(
            "{}{}#{}",
            self.key_prefix, self.plan.recipe.nodes[n].id, self.runs[n]
        )
    }

    /// Counts a new execution of `n` and returns its stored result, if an
    /// earlier attempt of this run finished it.
    fn restore(&mut self, n: usize) -> Option<NodeOutput> {
        self.runs[n] += 1;
        let journal = self.run.journal.as_ref()?;
        let stored = journal.restored(&self.key(n))?;
        self.status[n] = Status::Running;
        Some(stored.into_output())
    }

    fn begin(&mut self) -> Result<(), RunError> {
        for (e, edge) in self.plan.edges.iter().enumerate() {
            if edge.from == Endpoint::Start {
                self.edges[e] = EdgeState::Taken;
            }
        }
        self.to_decide.extend((0..self.plan.nodes.len()).rev());
        self.drain()
    }

    /// Looks at every node whose incoming edges changed, until none is left
    /// (a worklist, so a long chain of skips needs no deep recursion).
    fn drain(&mut self) -> Result<(), RunError> {
        while let Some(n) = self.to_decide.pop() {
            if self.status[n] != Status::Pending {
                continue;
            }
            let forward: Vec<EdgeState> = self.plan.nodes[n]
                .incoming
                .iter()
                .filter(|&&e| !self.plan.edges[e].back)
                .map(|&e| self.edges[e])
                .collect();
            if forward.is_empty() {
                self.make_ready(n);
            } else if forward.contains(&EdgeState::Unsettled) {
                continue;
            } else if forward.contains(&EdgeState::Taken) {
                self.make_ready(n);
            } else {
                self.skip(n)?;
            }
        }
        Ok(())
    }

    fn make_ready(&mut self, n: usize) {
        self.status[n] = Status::Ready;
        self.ready.push_back(n);
    }

    fn spawn(
        &mut self,
        n: usize,
        running: &mut JoinSet<(usize, Result<NodeOutput, NodeError>)>,
    ) -> tokio::task::Id {
        self.status[n] = Status::Running;
        self.started[n] = Some(Instant::now());
        let node = &self.plan.recipe.nodes[n];
        self.run.emit(EventKind::NodeStarted {
            node: self.path(n),
            node_type: node.kind.type_name(),
        });
        let ctx = NodeCtx {
            run: self.run.clone(),
            recipe: self.plan.recipe.clone(),
            path: self.path(n),
            key: self.key(n),
            vars: state::context(&self.state),
            producers: self.producers.clone(),
            item_model: None,
        };
        let plan = self.plan.clone();
        // A hitl node's `timeout` is how long to wait for the human.
        let timeout = match node.kind {
            crate::recipe::model::NodeKind::Hitl(_) => None,
            _ => node.settings.timeout,
        };
        running
            .spawn(async move {
                let node = &plan.recipe.nodes[n];
                let result = match timeout {
                    Some(seconds) => tokio::time::timeout(
                        Duration::from_secs_f64(seconds),
                        nodes::run(&ctx, node),
                    )
                    .await
                    .unwrap_or(Err(NodeError::Timeout { seconds })),
                    None => nodes::run(&ctx, node).await,
                };
                (n, result)
            })
            .id()
    }

    fn write(&mut self, key: &str, value: Value) {
        Arc::make_mut(&mut self.state).insert(key.to_string(), value);
    }

    /// Records node `n`'s result and settles its edges. `restored`: the
    /// result comes from an earlier attempt (its events are already in
    /// the run's history).
    fn settle(
        &mut self,
        n: usize,
        result: Result<NodeOutput, NodeError>,
        restored: bool,
    ) -> Result<(), RunError> {
        let duration = self.started[n].map(|s| s.elapsed()).unwrap_or_default();
        let node = &self.plan.recipe.nodes[n];
        let output = node.output.clone();
        match result {
            Ok(out) => {
                self.write(&output, out.value);
                for (key, value) in out.extra {
                    self.write(&key, value);
                }
                self.mock |= out.mock;
                self.stats.add(&out.stats);
                if !restored {
                    self.run.emit(EventKind::NodeFinished {
                        node: self.path(n),
                        duration,
                        mock: out.mock,
                        stats: out.stats,
                        cached: out.cached,
                        plugin: out.plugin,
                    });
                }
            }
            Err(NodeError::AwaitingReply) => {
                // Not settled: the run stops in `waiting` once nothing else
                // can run, and continues from here after the reply.
                self.status[n] = Status::Waiting;
                return Ok(());
            }
            Err(e) if node.settings.on_error == Some(OnError::Continue) => {
                self.run.emit(EventKind::NodeFailed {
                    node: self.path(n),
                    error: e.to_string(),
                    kind: e.kind(),
                    duration,
                    continued: true,
                });
                self.write(&output, Value::from(()));
                self.write(&format!("{output}_error"), Value::from(e.to_string()));
            }
            Err(e) => {
                // Failed (not cancelled): the event says so.
                self.status[n] = Status::Done;
                self.run.emit(EventKind::NodeFailed {
                    node: self.path(n),
                    error: e.to_string(),
                    kind: e.kind(),
                    duration,
                    continued: false,
                });
                return Err(RunError::NodeFailed {
                    node: self.path(n),
                    source: e,
                });
            }
        }
        self.status[n] = Status::Done;
        for &e in &self.plan.nodes[n].outgoing.clone() {
            let edge = &self.plan.edges[e];
            if edge.back {
                if self.condition(e)? {
                    let l = self.plan.nodes[n].in_loop.unwrap_or_default();
                    self.repeat[l].push(e);
                }
            } else if !self.leaves_loop(e) {
                self.edges[e] = if self.condition(e)? {
                    EdgeState::Taken
                } else {
                    EdgeState::NotTaken
                };
                self.queue_target(e);
            }
        }
        if let Some(l) = self.plan.nodes[n].in_loop {
            self.check_loop(l)?;
        }
        self.drain()
    }

    fn skip(&mut self, n: usize) -> Result<(), RunError> {
        self.status[n] = Status::Skipped;
        self.run.emit(EventKind::NodeSkipped { node: self.path(n) });
        for &e in &self.plan.nodes[n].outgoing.clone() {
            if !self.plan.edges[e].back && !self.leaves_loop(e) {
                self.edges[e] = EdgeState::NotTaken;
                self.queue_target(e);
            }
        }
        if let Some(l) = self.plan.nodes[n].in_loop {
            self.check_loop(l)?;
        }
        Ok(())
    }

    fn queue_target(&mut self, e: usize) {
        if let Endpoint::Node(t) = self.plan.edges[e].to {
            self.to_decide.push(t);
        }
    }

    /// An edge from inside a loop to outside it (END included).
    fn leaves_loop(&self, e: usize) -> bool {
        let edge = &self.plan.edges[e];
        let Endpoint::Node(from) = edge.from else {
            return false;
        };
        let Some(l) = self.plan.nodes[from].in_loop else {
            return false;
        };
        match edge.to {
            Endpoint::Node(to) => self.plan.nodes[to].in_loop != Some(l),
            _ => true,
        }
    }

    fn condition(&self, e: usize) -> Result<bool, RunError> {
        let edge = &self.plan.edges[e];
        let Some(cond) = &edge.condition else {
            return Ok(true);
        };
        template::is_true(cond, &state::context(&self.state)).map_err(|source| {
            RunError::Condition {
                edge: format!(
                    "edge `{} to {}` ({})",
                    self.plan.node_name(edge.from),
                    self.plan.node_name(edge.to),
                    edge.path
                ),
                condition: cond.clone(),
                source,
            }
        })
    }

    /// Once every node of a loop has settled for this pass: run it again if
    /// a back edge was taken, else settle the edges that leave it.
    fn check_loop(&mut self, l: usize) -> Result<(), RunError> {
        let members = self.plan.loops[l].nodes.clone();
        if members.iter().any(|&m| {
            matches!(
                self.status[m],
                Status::Pending | Status::Ready | Status::Running | Status::Waiting
            )
        }) {
            return Ok(());
        }
        let taken = std::mem::take(&mut self.repeat[l]);
        if taken.is_empty() {
            for &m in &members {
                for &e in &self.plan.nodes[m].outgoing.clone() {
                    if self.leaves_loop(e) {
                        let take = self.status[m] == Status::Done && self.condition(e)?;
                        self.edges[e] = if take {
                            EdgeState::Taken
                        } else {
                            EdgeState::NotTaken
                        };
                        self.queue_target(e);
                    }
                }
            }
            return Ok(());
        }
        let limit = taken
            .iter()
            .map(|&e| self.plan.edges[e].max_iterations)
            .min()
            .unwrap_or(super::plan::DEFAULT_MAX_ITERATIONS);
        if self.passes[l] >= limit {
            return Err(RunError::LoopLimit {
                nodes: members.iter().map(|&m| self.path(m)).collect(),
                limit,
            });
        }
        self.passes[l] += 1;
        self.run.emit(EventKind::LoopIteration {
            nodes: members.iter().map(|&m| self.path(m)).collect(),
            iteration: self.passes[l],
        });
        // Re-run what the taken back edges lead to, within the loop.
        let targets: Vec<usize> = taken
            .iter()
            .filter_map(|&e| match self.plan.edges[e].to {
                Endpoint::Node(t) => Some(t),
                _ => None,
            })
            .collect();
        let mut reset: HashSet<usize> = HashSet::new();
        let mut stack = targets.clone();
        while let Some(n) = stack.pop() {
            if !reset.insert(n) {
                continue;
            }
            for &e in &self.plan.nodes[n].outgoing {
                let edge = &self.plan.edges[e];
                if let Endpoint::Node(t) = edge.to {
                    if !edge.back && self.plan.nodes[t].in_loop == Some(l) {
                        self.edges[e] = EdgeState::Unsettled;
                        stack.push(t);
                    }
                }
            }
        }
        for &n in &reset {
            self.status[n] = Status::Pending;
        }
        let mut targets = targets;
        targets.sort_unstable();
        targets.dedup();
        for t in targets {
            self.make_ready(t);
        }
        Ok(())
    }

    fn finish_run(&mut self) -> Result<Finished, RunError> {
        let waiting: Vec<String> = (0..self.status.len())
            .filter(|&n| self.status[n] == Status::Waiting)
            .map(|n| self.path(n))
            .collect();
        if !waiting.is_empty() {
            return Err(RunError::Waiting { nodes: waiting });
        }
        // Nothing is running and nothing is ready: any node still pending can
        // never run (its inputs were never settled); record it as skipped.
        for n in 0..self.status.len() {
            if self.status[n] == Status::Pending {
                self.status[n] = Status::Skipped;
                self.run.emit(EventKind::NodeSkipped { node: self.path(n) });
            }
        }
        let node_outputs: Vec<String> = {
            let mut seen = HashSet::new();
            self.plan
                .recipe
                .nodes
                .iter()
                .map(|n| n.output.clone())
                .filter(|o| seen.insert(o.clone()))
                .collect()
        };
        let outputs = state::final_outputs(
            self.plan.recipe.final_outputs.as_deref(),
            &self.state,
            &node_outputs,
            &self.producers,
        )
        .map_err(|(key, message)| RunError::FinalOutput { key, message })?;
        Ok(Finished {
            state: self.state.clone(),
            outputs,
            mock: self.mock,
            stats: self.stats.clone(),
        })
    }
}

/// The recipe's problems that would fail a run before it starts: nodes
/// without a usable model or provider, missing API keys (grouped by
/// variable, naming the nodes that need it), unknown functions.
pub fn preflight(
    recipe: &Recipe,
    services: &Services,
    model_override: Option<&ModelSpec>,
) -> Vec<String> {
    let mut check = Preflight {
        services,
        model_override,
        problems: Vec::new(),
        keys: std::collections::BTreeMap::new(),
    };
    check.nodes(recipe, recipe.nodes.iter(), "", None);
    let mut problems = check.problems;
    // Granted plugin secrets that are not set, like missing provider keys.
    problems.extend(crate::plugins::catalog::missing_secrets(
        &services.functions,
        recipe,
        services.plugin_policy.as_deref(),
    ));
    for (var, nodes) in check.keys {
        problems.push(format!(
            "`{var}` is not set; it is needed by {} (set it in the environment or a .env file)",
            nodes
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    problems
}

struct Preflight<'a> {
    services: &'a Services,
    model_override: Option<&'a ModelSpec>,
    problems: Vec<String>,
    /// Missing key variable → nodes that need it.
    keys: std::collections::BTreeMap<String, Vec<String>>,
}

impl Preflight<'_> {
    /// A model the node may call: its provider must exist and have its key.
    fn model(&mut self, kind: &str, m: &ModelSpec, path: &str) {
        if !self.services.providers.has(kind, &m.provider) {
            self.problems.push(format!(
                "node `{path}` uses provider `{}`, which has no {kind} client; run offline with `--model mock/echo`",
                m.provider
            ));
        } else if let Err(e) = self.services.providers.check_model(m) {
            self.problems.push(format!("node `{path}`: {}", e.message));
        } else if let Some(var) = self.services.providers.missing_key(&m.provider) {
            let nodes = self.keys.entry(var.to_string()).or_default();
            if !nodes.iter().any(|n| n == path) {
                nodes.push(path.to_string());
            }
        }
    }

    fn nodes<'n>(
        &mut self,
        recipe: &Recipe,
        nodes: impl Iterator<Item = &'n crate::recipe::model::Node>,
        prefix: &str,
        map: Option<&crate::recipe::model::Node>,
    ) {
        use crate::recipe::model::NodeKind;
        for node in nodes {
            let path = format!("{prefix}{}", node.id);
            let kind = match &node.kind {
                NodeKind::LanguageTask { .. } => Some("language"),
                NodeKind::TextToSpeechTask => Some("speech"),
                NodeKind::SpeechToTextTask { .. } => Some("transcription"),
                _ => None,
            };
            if let Some(kind) = kind {
                let model = crate::recipe::model::choose_model(
                    self.model_override,
                    None,
                    node,
                    map,
                    recipe,
                );
                // `--model` replaces fallbacks too; otherwise each needs its key.
                let fallbacks: &[ModelSpec] = match (&node.kind, self.model_override) {
                    (NodeKind::LanguageTask { fallback, .. }, None) => fallback,
                    _ => &[],
                };
                match model {
                    None => self.problems.push(format!(
                        "node `{path}` has no model (give it `model`, the recipe `model_config`, or run with `--model`)"
                    )),
                    Some(m) => {
                        for m in std::iter::once(m).chain(fallbacks) {
                            self.model(kind, m, &path);
                        }
                    }
                }
            }
            match &node.kind {
                NodeKind::FunctionTask {
                    function_identifier,
                }
                | NodeKind::Reduce {
                    function_identifier,
                } if self.services.functions.get(function_identifier).is_none() => {
                    let hint = crate::recipe::diagnostic::did_you_mean(
                        function_identifier,
                        self.services.functions.names(),
                    )
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                    self.problems.push(format!(
                        "node `{path}` calls function `{function_identifier}`, which no scope provides{hint}"
                    ));
                }
                NodeKind::Map(spec) => self.nodes(
                    recipe,
                    std::iter::once(spec.task.as_ref()),
                    &format!("{path}."),
                    Some(node),
                ),
                NodeKind::Recipe(sub) => self.nodes(
                    &sub.recipe,
                    sub.recipe.nodes.iter(),
                    &format!("{path}/"),
                    None,
                ),
                _ => {}
            }
        }
    }
}
