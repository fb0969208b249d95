//! Errors of a run and of a node. Node executors never name their node:
//! the scheduler wraps their `NodeError` with the node's path.

use crate::providers::ProviderError;
use crate::template::TemplateError;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum NodeError {
    #[error("{what}: {source}")]
    Template {
        what: String,
        #[source]
        source: TemplateError,
    },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("function `{function}` failed: {message}")]
    Function { function: String, message: String },
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Output(String),
    #[error("map item {index} failed: {source}")]
    MapItem {
        index: usize,
        #[source]
        source: Box<NodeError>,
    },
    #[error("sub-recipe `{recipe}` failed: {source}")]
    SubRecipe {
        recipe: String,
        #[source]
        source: Box<RunError>,
    },
    #[error("timed out after {seconds}s")]
    Timeout { seconds: f64 },
    #[error("{0}")]
    Human(String),
    /// A `hitl` node has no reply yet: the run waits (status `waiting`).
    #[error("waits for a human reply")]
    AwaitingReply,
    /// A tenant quota would be passed by this call.
    #[error(transparent)]
    Quota(#[from] QuotaError),
}

/// A tenant's budget or rate would be passed.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("quota `{quota}` of tenant `{tenant}` exceeded: {message}")]
pub struct QuotaError {
    pub tenant: String,
    /// `concurrent_runs`, `runs_per_minute`, `tokens_per_day`, `cost_per_day_usd`.
    pub quota: String,
    pub message: String,
    /// When it is worth trying again.
    pub retry_after: Option<std::time::Duration>,
}

/// What kind of failure: stored with runs, grouped by `composer report`,
/// and present in `--json` failure output and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRecipe,
    InvalidInput,
    Template,
    Provider,
    RateLimit,
    PluginLimit,
    Plugin,
    Human,
    Quota,
    Timeout,
    Cancelled,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRecipe => "invalid_recipe",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Template => "template",
            ErrorKind::Provider => "provider",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::PluginLimit => "plugin_limit",
            ErrorKind::Plugin => "plugin",
            ErrorKind::Human => "human",
            ErrorKind::Quota => "quota",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A plugin limit that was hit: its setting name and value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitHit {
    pub name: String,
    pub value: u64,
}

/// A failure as stored and reported: kind, the node path (if a node
/// failed), the message, and for limits and quotas what was hit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

impl NodeError {
    /// The innermost cause's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::Template { .. } => ErrorKind::Template,
            NodeError::Provider(p) if p.is_rate_limited() => ErrorKind::RateLimit,
            NodeError::Provider(p) if p.status.is_none() && p.message.contains("timed out") => {
                ErrorKind::Timeout
            }
            NodeError::Provider(_) => ErrorKind::Provider,
            NodeError::Function { .. } => ErrorKind::Plugin,
            NodeError::Plugin(p) => match limit_of(p) {
                Some(_) => ErrorKind::PluginLimit,
                None => ErrorKind::Plugin,
            },
            NodeError::Input(_) => ErrorKind::InvalidInput,
            NodeError::Output(_) => ErrorKind::Provider,
            NodeError::MapItem { source, .. } => source.kind(),
            NodeError::SubRecipe { source, .. } => source.kind(),
            NodeError::Timeout { .. } => ErrorKind::Timeout,
            NodeError::Human(_) | NodeError::AwaitingReply => ErrorKind::Human,
            NodeError::Quota(_) => ErrorKind::Quota,
        }
    }

    fn limit(&self) -> Option<LimitHit> {
        match self {
            NodeError::Plugin(p) => limit_of(p),
            NodeError::MapItem { source, .. } => source.limit(),
            NodeError::SubRecipe { source, .. } => source.failure().limit,
            _ => None,
        }
    }

    fn quota(&self) -> Option<String> {
        match self {
            NodeError::Quota(q) => Some(q.quota.clone()),
            NodeError::MapItem { source, .. } => source.quota(),
            NodeError::SubRecipe { source, .. } => source.failure().quota,
            _ => None,
        }
    }
}

fn limit_of(p: &crate::plugins::PluginError) -> Option<LimitHit> {
    use crate::plugins::PluginError as P;
    let (name, value) = match p {
        P::FuelExhausted { fuel, .. } => ("fuel", *fuel),
        P::Timeout { timeout_ms, .. } => ("timeout_ms", *timeout_ms),
        P::MemoryLimit { limit_bytes, .. } => ("memory_bytes", *limit_bytes),
        P::TableLimit { limit, .. } => ("table_elements", *limit),
        P::OutputTooLarge { limit_bytes, .. } => ("max_output_bytes", *limit_bytes),
        _ => return None,
    };
    Some(LimitHit {
        name: name.to_string(),
        value,
    })
}

impl NodeError {
    pub fn template(what: impl Into<String>, source: TemplateError) -> Self {
        NodeError::Template {
            what: what.into(),
            source,
        }
    }
}

#[derive(Debug, Error, Clone)]
pub enum RunError {
    #[error("node `{node}` failed: {source}")]
    NodeFailed {
        node: String,
        #[source]
        source: NodeError,
    },
    #[error("condition on {edge} (`{condition}`) failed: {source}")]
    Condition {
        edge: String,
        condition: String,
        #[source]
        source: TemplateError,
    },
    #[error("loop over {} ran {limit} times and wanted another pass; raise `max_iterations` on the recipe or the back edge if that is intended", nodes.join(", "))]
    LoopLimit { nodes: Vec<String>, limit: u32 },
    #[error("final output `{key}`: {message}")]
    FinalOutput { key: String, message: String },
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Inputs(Vec<crate::engine::inputs::InputProblem>),
    /// Problems found before anything ran, one per entry.
    #[error("{}", .0.join("; "))]
    Preflight(Vec<String>),
    /// The recipe itself is invalid (sub-recipe plans, stored recipes).
    #[error("{}", .0.join("; "))]
    InvalidRecipe(Vec<String>),
    /// `hitl` nodes wait for replies; the run can be continued later.
    #[error("waits for a human reply to {}", nodes.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Waiting { nodes: Vec<String> },
    #[error("cancelled")]
    Cancelled,
    /// The process is shutting down: the run stops and stays queued.
    #[error("interrupted by shutdown; it continues when a worker takes it again")]
    Interrupted,
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::NodeFailed { source, .. } => source.kind(),
            RunError::Condition { .. } => ErrorKind::Template,
            RunError::LoopLimit { .. } => ErrorKind::InvalidRecipe,
            RunError::FinalOutput { .. } => ErrorKind::Template,
            RunError::Inputs(_) => ErrorKind::InvalidInput,
            RunError::Preflight(_) | RunError::InvalidRecipe(_) => ErrorKind::InvalidRecipe,
            RunError::Waiting { .. } => ErrorKind::Human,
            RunError::Cancelled | RunError::Interrupted => ErrorKind::Cancelled,
            RunError::Quota(_) => ErrorKind::Quota,
            RunError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The failure as stored and reported.
    pub fn failure(&self) -> Failure {
        let (node, limit, quota) = match self {
            RunError::NodeFailed { node, source } => (
                Some(innermost_node(node, source)),
                source.limit(),
                source.quota(),
            ),
            RunError::Quota(q) => (None, None, Some(q.quota.clone())),
            _ => (None, None, None),
        };
        Failure {
            kind: self.kind(),
            node,
            message: self.to_string(),
            limit,
            quota,
        }
    }
}

/// `parent/child` for a failure inside a sub-recipe, `map[3]` for an item.
fn innermost_node(node: &str, source: &NodeError) -> String {
    match source {
        NodeError::SubRecipe { source, .. } => match source.as_ref() {
            RunError::NodeFailed { node: inner, .. } => inner.clone(),
            _ => node.to_string(),
        },
        NodeError::MapItem { index, .. } => format!("{node}[{index}]"),
        _ => node.to_string(),
    }
}
