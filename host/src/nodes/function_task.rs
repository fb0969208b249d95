//! `function_task` and `reduce`: call a registered function with the
//! resolved inputs as one JSON object (the whole state when the node has no
//! `input`), and store the JSON it returns.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::engine::events::{EventKind, PluginUsage};
use crate::engine::state::{from_json, to_json};
use crate::plugins::{CallContext, CallError};
use crate::recipe::model::Node;
use std::sync::Arc;

pub async fn run(ctx: &NodeCtx, node: &Node, function: &str) -> Result<NodeOutput, NodeError> {
    let (vars, inputs) = ctx.resolve_inputs(node)?;
    let input = match inputs {
        Some(values) => serde_json::Value::Object(
            node.input
                .iter()
                .flat_map(|entries| entries.keys())
                .filter_map(|k| values.get(k).map(|v| (k.clone(), to_json(v))))
                .collect(),
        ),
        None => to_json(&vars),
    };
    let Some((_, f)) = ctx.run.services.functions.get(function) else {
        return Err(NodeError::Function {
            function: function.to_string(),
            message: "no such function is registered".into(),
        });
    };
    let (run, path) = (ctx.run.clone(), ctx.path.clone());
    let on_log = Arc::new(move |level: &str, message: &str| {
        run.emit(EventKind::Log {
            node: path.clone(),
            level: level.to_string(),
            message: message.to_string(),
        });
    });
    let (run, path) = (ctx.run.clone(), ctx.path.clone());
    let on_progress = Arc::new(move |done: u64, total: u64| {
        run.emit(EventKind::NodeProgress {
            node: path.clone(),
            done,
            total,
        });
    });
    let usage: Arc<std::sync::Mutex<Option<PluginUsage>>> = Arc::default();
    let seen = usage.clone();
    let on_usage = Arc::new(move |u: PluginUsage| {
        if let Ok(mut total) = seen.lock() {
            total.get_or_insert_with(Default::default).add(&u);
        }
    });
    let (run, path) = (ctx.run.clone(), ctx.path.clone());
    let on_http = Arc::new(move |request| {
        run.emit(EventKind::PluginHttp {
            node: path.clone(),
            request,
        });
    });
    let call = CallContext {
        out_dir: ctx.run.out_dir.clone(),
        read_grants: ctx.run.read_grants.clone(),
        opened: Some(ctx.run.opened_grants.clone()),
        node: ctx.path.clone(),
        on_log: Some(on_log),
        on_progress: Some(on_progress),
        on_usage: Some(on_usage),
        caps: ctx.run.plugin_caps,
        on_http: Some(on_http),
        policy: ctx.run.services.plugin_policy.clone(),
    };
    // Pure functions are cached by default; others when the node says so.
    let info = f.info();
    // The key's parts copy the input: built only when the cache is used.
    let parts = || {
        serde_json::json!({
            "kind": "function",
            "function": function,
            "code": f.content_hash().unwrap_or_else(|| format!("native:{}", f.origin())),
            "input": &input,
        })
    };
    let (output, cached) = ctx
        .cached(node, "function", info.pure, parts, || async {
            f.call(input.clone(), &call).await.map_err(|e| match e {
                CallError::Plugin(p) => NodeError::Plugin(p),
                CallError::Message(message) => NodeError::Function {
                    function: function.to_string(),
                    message,
                },
            })
        })
        .await?;
    Ok(NodeOutput {
        value: from_json(&output),
        plugin: usage.lock().ok().and_then(|u| *u),
        cached,
        ..NodeOutput::default()
    })
}
