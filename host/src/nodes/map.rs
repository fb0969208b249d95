//! `map` (RECIPES.md section 7): run the task once per element of `over`,
//! in parallel (bounded) or in sequence, keeping item order in the output
//! whatever the completion order. `halt` stops at the first failure
//! (dropping the items still running), `skip` leaves failed items out and
//! lists them under `<output>_errors`.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::engine::events::EventKind;
use crate::engine::state::{self, lookup, to_json, Values};
use crate::recipe::model::{
    choose_model, Concurrency, ExecutionMode, MapOnError, MapSpec, Node, NodeKind,
};
use crate::recipe::validate::model_spec_from;
use crate::template;
use futures::stream::{self, StreamExt};
use minijinja::value::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::{JoinError, JoinHandle};

pub async fn run(ctx: &NodeCtx, node: &Node, spec: &MapSpec) -> Result<NodeOutput, NodeError> {
    // The map's own inputs are visible to every item.
    let (base, _) = ctx.resolve_inputs(node)?;
    let items = over(&spec.over, &base)?;
    let total = items.len();
    let concurrency = match (spec.execution_mode, spec.max_concurrency) {
        (ExecutionMode::Sequential, _) => 1,
        (ExecutionMode::Parallel, Concurrency::Fixed(n)) => n,
        (ExecutionMode::Parallel, Concurrency::Auto) => {
            auto_concurrency(ctx, node, &spec.task, total)
        }
    }
    .max(1);

    let task = &spec.task;
    let mut outputs: Vec<Option<Value>> = vec![None; total];
    let mut errors: Vec<serde_json::Value> = Vec::new();
    let mut any_mock = false;
    let mut stats = crate::providers::CallStats::default();
    let mut all_cached = total > 0;
    let mut plugin: Option<crate::engine::events::PluginUsage> = None;
    let progress_step = (total / 200).max(1);
    let mut done = 0usize;

    // Items that run guest or host code (function calls: CPU work) are
    // tasks of their own, so they use every core; the others mostly wait
    // on providers and are polled together here, which costs less. Either
    // way an item starts only when a place among `concurrency` is free, and
    // dropping the stream (a `halt`, a cancelled run) stops the items
    // still running.
    let own_tasks = matches!(
        task.kind,
        NodeKind::FunctionTask { .. } | NodeKind::Reduce { .. }
    );
    let shared_task = Arc::new((**task).clone());
    let mut results = stream::iter(items.into_iter().enumerate().map(|(index, item)| {
        let item_ctx = item_context(ctx, node, task, &base, index, &item);
        let run = run_item(item_ctx, shared_task.clone());
        let run = if own_tasks { spawned(run) } else { run };
        let started = std::time::Instant::now();
        async move { (index, item, run.await, started) }
    }))
    .buffer_unordered(concurrency);

    while let Some((index, item, result, started)) = results.next().await {
        done += 1;
        ctx.run.emit(EventKind::MapItem {
            node: ctx.path.clone(),
            index,
            started: started.saturating_duration_since(ctx.run.started),
            duration: started.elapsed(),
            ok: result.is_ok(),
        });
        match result {
            Ok(output) => {
                any_mock |= output.mock;
                stats.add(&output.stats);
                all_cached &= output.cached;
                if let Some(p) = &output.plugin {
                    plugin.get_or_insert_with(Default::default).add(p);
                }
                outputs[index] = Some(output.value);
            }
            Err(e) => match spec.on_error {
                MapOnError::Halt => {
                    return Err(NodeError::MapItem {
                        index,
                        source: Box::new(e),
                    })
                }
                MapOnError::Skip => {
                    ctx.run.emit(EventKind::Log {
                        node: format!("{}[{index}]", ctx.path),
                        level: "warn".into(),
                        message: format!("item skipped: {e}"),
                    });
                    errors.push(serde_json::json!({
                    "index": index,
                    "item": to_json(&item),
                    "error": e.to_string(),
                    }));
                }
            },
        }
        if done == total || done.is_multiple_of(progress_step) {
            ctx.run.emit(EventKind::MapProgress {
                node: ctx.path.clone(),
                done,
                failed: errors.len(),
                total,
            });
        }
    }
    drop(results);

    let value = Value::from(outputs.into_iter().flatten().collect::<Vec<_>>());
    let mut extra = Vec::new();
    if spec.on_error == MapOnError::Skip {
        errors.sort_by_key(|e| e["index"].as_u64());
        extra.push((
            format!("{}_errors", node.output),
            Value::from_serialize(&errors),
        ));
    }
    Ok(NodeOutput {
        value,
        extra,
        mock: any_mock,
        stats,
        cached: all_cached && errors.is_empty(),
        plugin,
    })
}

type ItemFuture = futures::future::BoxFuture<'static, Result<NodeOutput, NodeError>>;

/// One item, boxed: the declared `Send` ends the type cycle of a map whose
/// task is a map.
fn run_item(ctx: Result<NodeCtx, NodeError>, task: Arc<Node>) -> ItemFuture {
    Box::pin(async move { super::run(&ctx?, &task).await })
}

/// `item` on a task of its own.
fn spawned(item: ItemFuture) -> ItemFuture {
    let task = ItemTask(tokio::spawn(item));
    Box::pin(async move {
        task.await.unwrap_or_else(|e| {
            // A panicking item is that item's failure, never the host's.
            Err(NodeError::Output(format!(
                "internal error: the item's task ended abnormally ({e})"
            )))
        })
    })
}

/// A spawned item; dropped, it stops the item.
struct ItemTask(JoinHandle<Result<NodeOutput, NodeError>>);

impl Future for ItemTask {
    type Output = Result<Result<NodeOutput, NodeError>, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for ItemTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `over`: a template expression, a state key or a dotted path; must be a list.
fn over(over: &str, vars: &Value) -> Result<Vec<Value>, NodeError> {
    let value = if template::is_template(over) {
        template::resolve_template(over, vars).map_err(|e| NodeError::template("`over`", e))?
    } else {
        lookup(vars, over)
            .ok_or_else(|| NodeError::Input(format!("`over`: `{over}` is not in the state")))?
    };
    if value.is_none() {
        return Ok(Vec::new());
    }
    if value.kind() != minijinja::value::ValueKind::Seq {
        return Err(NodeError::Input(format!(
            "`over` must give a list, but `{over}` is {}",
            value.kind()
        )));
    }
    value
        .try_iter()
        .map(|it| it.collect())
        .map_err(|e| NodeError::Input(format!("`over`: {e}")))
}

/// State and map inputs, plus `item`, `index` and the item's own keys; the
/// model the task uses is chosen here (item override, task, map node,
/// `model_config`).
fn item_context(
    ctx: &NodeCtx,
    map: &Node,
    task: &Node,
    base: &Value,
    index: usize,
    item: &Value,
) -> Result<NodeCtx, NodeError> {
    let mut overlay = Values::new();
    let mut item_override = None;
    if item.kind() == minijinja::value::ValueKind::Map {
        if let Ok(keys) = item.try_iter() {
            for key in keys {
                if let (Some(name), Ok(v)) = (key.as_str(), item.get_item(&key)) {
                    overlay.insert(name.to_string(), v);
                }
            }
        }
        if let Some(m) = overlay.get("model_override").filter(|v| !v.is_none()) {
            let spec = model_spec_from(&to_json(m))
                .map_err(|e| NodeError::Input(format!("item {index} `model_override`: {e}")))?;
            item_override = Some(spec);
        }
    }
    let item_model =
        choose_model(None, item_override.as_ref(), task, Some(map), &ctx.recipe).cloned();
    overlay.insert("item".into(), item.clone());
    overlay.insert("index".into(), Value::from(index));
    Ok(NodeCtx {
        run: ctx.run.clone(),
        recipe: ctx.recipe.clone(),
        path: format!("{}[{index}]", ctx.path),
        key: format!("{}[{index}]", ctx.key),
        vars: state::layered(overlay, base.clone()),
        producers: ctx.producers.clone(),
        item_model,
    })
}

/// `max_concurrency: auto`: the item count, capped by `map_concurrency`,
/// by the calls the task's provider allows in flight now (its AIMD limit,
/// which 429s lower), and for function tasks by the memory free for
/// instances at the memory limit configured for the function's plugin.
fn auto_concurrency(ctx: &NodeCtx, map: &Node, task: &Node, items: usize) -> usize {
    let services = &ctx.run.services;
    let mut n = services.settings.auto_map_concurrency(items);
    let model = choose_model(
        ctx.run.model_override.as_ref(),
        None,
        task,
        Some(map),
        &ctx.recipe,
    );
    if task.kind.uses_model() {
        if let Some(policy) = model.and_then(|m| services.providers.policy(&m.provider)) {
            n = n.min(policy.limiter.concurrency_limit());
        }
    }
    if let NodeKind::FunctionTask {
        function_identifier,
    } = &task.kind
    {
        // The memory limit configured for the plugin behind the function
        // (`[plugins.limits]` and its overrides); host functions have none.
        let per_instance = services
            .functions
            .get(function_identifier)
            .and_then(|(_, f)| f.memory_limit());
        if let (Some(free), Some(per_instance)) = (
            crate::metrics::collector::read_available_memory(),
            per_instance,
        ) {
            n = n.min(
                usize::try_from(free / per_instance.max(1))
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        }
    }
    n.max(1)
}
