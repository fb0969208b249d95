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
    #[error("{0}")]
    Preflight(String),
    #[error("internal error: {0}")]
    Internal(String),
}
