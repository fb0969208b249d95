//! `hitl`: ask a human. The node's inputs are shown; the reply (a mapping)
//! is the output, and `required_fields` must be in it. Replies come from the
//! run (`--reply NODE=JSON`) or from an interactive `HumanInput`; with
//! neither the node fails, naming what to do.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::engine::state::{from_json, to_json};
use crate::recipe::model::{HitlSpec, Node};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HumanRequest {
    pub node: String,
    pub prompt: Option<String>,
    pub shown: serde_json::Value,
    pub required_fields: Vec<String>,
}

/// Something that can ask a person (a terminal, later a web page).
#[async_trait]
pub trait HumanInput: Send + Sync {
    async fn ask(&self, request: HumanRequest) -> Result<serde_json::Value, String>;
}

pub async fn run(ctx: &NodeCtx, node: &Node, spec: &HitlSpec) -> Result<NodeOutput, NodeError> {
    let (vars, inputs) = ctx.resolve_inputs(node)?;
    let shown = match inputs {
        Some(values) => serde_json::Value::Object(
            values
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        None => serde_json::Value::Object(Default::default()),
    };
    let prompt = match &spec.prompt {
        Some(p) => Some(
            crate::template::render(p, &ctx.prompt_context(vars.clone()))
                .map_err(|e| NodeError::template("prompt", e))?,
        ),
        None => node.description.clone(),
    };
    let reply = match ctx
        .run
        .replies
        .get(&ctx.path)
        .or_else(|| ctx.run.replies.get(&node.id))
    {
        Some(reply) => reply.clone(),
        None => {
            let Some(human) = ctx.run.services.human.clone() else {
                // A recorded run waits: the reply continues it later, from
                // another process if need be.
                if ctx.run.journal.is_some() {
                    ctx.run.emit(crate::engine::events::EventKind::NodeWaiting {
                        node: ctx.path.clone(),
                        prompt,
                        shown,
                        required_fields: spec.required_fields.clone(),
                    });
                    return Err(NodeError::AwaitingReply);
                }
                return Err(NodeError::Human(
                    "needs a human reply, but there is no terminal to ask on; pass `--reply NODE=JSON` (or `--reply NODE=@file.json`)".into(),
                ));
            };
            let request = HumanRequest {
                node: ctx.path.clone(),
                prompt,
                shown,
                required_fields: spec.required_fields.clone(),
            };
            let asked = human.ask(request);
            match spec.timeout {
                Some(seconds) => {
                    match tokio::time::timeout(Duration::from_secs_f64(seconds), asked).await {
                        Ok(r) => r.map_err(NodeError::Human)?,
                        Err(_) => match &spec.default {
                            Some(d) => d.clone(),
                            None => return Err(NodeError::Timeout { seconds }),
                        },
                    }
                }
                None => asked.await.map_err(NodeError::Human)?,
            }
        }
    };
    let serde_json::Value::Object(map) = &reply else {
        return Err(NodeError::Human(format!(
            "the reply must be a mapping, got {reply}"
        )));
    };
    let missing: Vec<&str> = spec
        .required_fields
        .iter()
        .filter(|f| !map.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(NodeError::Human(format!(
            "the reply lacks required field(s) {}",
            missing
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(NodeOutput::value(from_json(&reply)))
}
