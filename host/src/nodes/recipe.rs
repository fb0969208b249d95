//! `recipe`: run another recipe as one node. Inputs come from
//! `input_mapping` (same resolution rules as `input`) or, without it, from
//! parent keys named like the sub-recipe's inputs and the node's own
//! `input` entries. Values the sub-recipe does not declare are passed into
//! its state as they are. With `output_mapping`,
//! each mapped key is written to the parent state (after the node output,
//! so a mapped key wins over an output of the same name) and the node output
//! holds the mapping; without it the output is the sub-recipe's final outputs.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::{NodeError, RunError};
use crate::engine::inputs;
use crate::engine::state::{self, from_json, lookup, to_json};
use crate::recipe::model::{Node, SubRecipe};
use minijinja::value::Value;

pub async fn run(ctx: &NodeCtx, node: &Node, sub: &SubRecipe) -> Result<NodeOutput, NodeError> {
    let (vars, _) = ctx.resolve_inputs(node)?;
    let recipe = sub.recipe.clone();
    let mut given = serde_json::Map::new();
    match &sub.input_mapping {
        Some(mapping) => {
            for (key, raw) in mapping {
                let v = state::resolve_entry(raw, &vars, &ctx.producers)
                    .map_err(|e| NodeError::template(format!("input_mapping `{key}`"), e))?;
                given.insert(key.clone(), to_json(&v));
            }
        }
        None => {
            for input in &recipe.user_inputs {
                if let Some(v) = lookup(&vars, &input.id).filter(|v| !v.is_none()) {
                    given.insert(input.id.clone(), to_json(&v));
                }
            }
            // The node's own `input` entries go in too, declared or not.
            for key in node.input.iter().flat_map(|entries| entries.keys()) {
                if let (false, Some(v)) = (given.contains_key(key), lookup(&vars, key)) {
                    given.insert(key.clone(), to_json(&v));
                }
            }
        }
    }
    let fail = |source: RunError| NodeError::SubRecipe {
        recipe: recipe.name.clone(),
        source: Box::new(source),
    };
    // Mapped values the sub-recipe does not declare are passed into its
    // state as they are (validation warned about them).
    let values = inputs::prepare(&recipe.user_inputs, &given, true)
        .map_err(|p| fail(RunError::Inputs(p)))?;
    let prefix = format!("{}/", ctx.path);
    let key_prefix = format!("{}/", ctx.key);
    let finished = match Box::pin(crate::engine::run::execute(
        ctx.run.clone(),
        sub.plan.clone(),
        values,
        prefix,
        key_prefix,
    ))
    .await
    {
        Ok(f) => f,
        // A hitl node inside waits: so does this node.
        Err(RunError::Waiting { .. }) => return Err(NodeError::AwaitingReply),
        Err(e) => return Err(fail(e)),
    };

    let Some(mapping) = &sub.output_mapping else {
        return Ok(NodeOutput {
            value: from_json(&serde_json::Value::Object(finished.outputs)),
            extra: Vec::new(),
            mock: finished.mock,
            stats: finished.stats,
            cached: false,
            plugin: None,
        });
    };
    let sub_state = state::context(&finished.state);
    let mut mapped = state::Values::new();
    let mut extra = Vec::new();
    for (parent_key, sub_key) in mapping {
        let v = lookup(&sub_state, sub_key)
            .or_else(|| finished.outputs.get(sub_key).map(from_json))
            .unwrap_or(Value::from(()));
        mapped.insert(parent_key.clone(), v.clone());
        extra.push((parent_key.clone(), v));
    }
    Ok(NodeOutput {
        value: mapping
            .keys()
            .filter_map(|k| mapped.get(k).map(|v| (k.clone(), v.clone())))
            .collect::<Value>(),
        extra,
        mock: finished.mock,
        stats: finished.stats,
        cached: false,
        plugin: None,
    })
}
