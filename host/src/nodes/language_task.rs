//! `language_task`: render the prompt, ask a language model, shape the reply
//! (`output_format: text | json | sections`). On a provider failure the
//! `fallback` models are tried in order.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::providers::{CallNote, CallStats, LanguageRequest, ProviderError};
use crate::recipe::model::{ModelSpec, Node, NodeKind, OutputFormat};
use crate::template;
use minijinja::value::Value;

pub async fn run(ctx: &NodeCtx, node: &Node) -> Result<NodeOutput, NodeError> {
    let NodeKind::LanguageTask {
        prompt,
        output_format,
        fallback,
    } = &node.kind
    else {
        return Err(NodeError::Input("not a language task".into()));
    };
    let (vars, _) = ctx.resolve_inputs(node)?;
    let prompt = template::render(prompt.text(), &ctx.prompt_context(vars))
        .map_err(|e| NodeError::template("prompt", e))?;
    let json = *output_format == OutputFormat::Json;

    let primary = ctx.model_for(node)?;
    // `--model` replaces fallbacks too: an offline run stays offline.
    let fallbacks = if ctx.run.model_override.is_some() {
        &[][..]
    } else {
        &fallback[..]
    };
    let models: Vec<ModelSpec> = std::iter::once(primary)
        .chain(fallbacks.iter().cloned())
        .collect();
    if !ctx.cache_on(node, true) {
        let (text, mock, stats) = ask(ctx, node, &models, &prompt, json).await?;
        return Ok(NodeOutput {
            value: shape(&text, *output_format)?,
            mock,
            stats,
            ..NodeOutput::default()
        });
    }
    let parts = || {
        serde_json::json!({
            "kind": "language_task",
            "models": models.iter().map(|m| serde_json::json!({"provider": m.provider, "model": m.model, "params": m.params})).collect::<Vec<_>>(),
            "prompt": prompt,
            "json": json,
        })
    };
    let (answer, from_cache) = ctx
        .cached(node, "language_task", true, parts, || async {
            let (text, mock, stats) = ask(ctx, node, &models, &prompt, json).await?;
            Ok(serde_json::json!({"text": text, "mock": mock, "stats": stats}))
        })
        .await?;
    let text = answer
        .get("text")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let stats = if from_cache {
        CallStats::default()
    } else {
        serde_json::from_value(answer.get("stats").cloned().unwrap_or_default()).unwrap_or_default()
    };
    Ok(NodeOutput {
        value: shape(text, *output_format)?,
        mock: answer
            .get("mock")
            .and_then(|m| m.as_bool())
            .unwrap_or(false),
        stats,
        cached: from_cache,
        ..NodeOutput::default()
    })
}

/// Asks each model in turn until one answers (later ones are the node's
/// `fallback`s); returns the reply, whether the mock made it, and the calls.
async fn ask(
    ctx: &NodeCtx,
    node: &Node,
    models: &[ModelSpec],
    prompt: &str,
    json: bool,
) -> Result<(String, bool, CallStats), NodeError> {
    let observer = ctx.observer();
    let mut stats = CallStats::default();
    let mut last_error: Option<ProviderError> = None;
    for (i, model) in models.iter().enumerate() {
        if let (Some(e), Some(previous)) = (&last_error, i.checked_sub(1).map(|p| &models[p])) {
            observer(CallNote::Fallback {
                from: format!("{}/{}", previous.provider, previous.model),
                to: format!("{}/{}", model.provider, model.model),
                reason: e.message.clone(),
            });
        }
        let provider = ctx.run.services.providers.language(&model.provider)?;
        let request = LanguageRequest {
            model: model.clone(),
            prompt: prompt.to_string(),
            json,
            retry: node.settings.retry,
            observer: Some(observer.clone()),
        };
        match provider.complete(&request).await {
            Ok(response) => {
                stats.add(&response.stats);
                return Ok((response.text, response.mock, stats));
            }
            Err(e) => {
                stats.calls += e.attempts.max(1);
                stats.retries += e.attempts.saturating_sub(1);
                last_error = Some(e);
            }
        }
    }
    Err(last_error
        .map(NodeError::Provider)
        .unwrap_or_else(|| NodeError::Output("no model answered".into())))
}

fn shape(text: &str, format: OutputFormat) -> Result<Value, NodeError> {
    match format {
        OutputFormat::Text => Ok(Value::from(text)),
        OutputFormat::Json => {
            let body = strip_code_fence(text);
            let parsed: serde_json::Value = serde_json::from_str(body).map_err(|e| {
                let preview: String = body.chars().take(120).collect();
                NodeError::Output(format!(
                    "output_format is json but the reply is not JSON ({e}); reply began: {preview:?}"
                ))
            })?;
            Ok(Value::from_serialize(&parsed))
        }
        OutputFormat::Sections => Ok(Value::from_serialize(sections(text))),
    }
}

/// Models often wrap JSON in a Markdown code fence.
fn strip_code_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// `KEY: value` blocks into a mapping with lower-case keys; lines without a
/// key continue the current block.
pub fn sections(text: &str) -> indexmap::IndexMap<String, String> {
    let mut out: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let header = line.split_once(':').and_then(|(key, value)| {
            let k = key.trim().trim_matches(|c| c == '*' || c == '#').trim();
            let is_key = !k.is_empty()
                && k.len() <= 60
                && k.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ' ' || c == '-')
                && k.chars().next().is_some_and(char::is_alphabetic);
            is_key.then(|| {
                (
                    k.to_lowercase().replace([' ', '-'], "_"),
                    value.trim().to_string(),
                )
            })
        });
        match header {
            Some((key, value)) => {
                out.insert(key.clone(), value);
                current = Some(key);
            }
            None => {
                if let Some(entry) = current.as_ref().and_then(|k| out.get_mut(k)) {
                    if !entry.is_empty() {
                        entry.push('\n');
                    }
                    entry.push_str(line);
                }
            }
        }
    }
    for v in out.values_mut() {
        *v = v.trim().to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_into_lowercase_keys() {
        let s = sections("TITLE: Hello\nSUMMARY: first line\nsecond line\nKey Points: a");
        assert_eq!(s.get("title").map(String::as_str), Some("Hello"));
        assert_eq!(
            s.get("summary").map(String::as_str),
            Some("first line\nsecond line")
        );
        assert_eq!(s.get("key_points").map(String::as_str), Some("a"));
    }

    #[test]
    fn json_replies_may_be_fenced() {
        let v = shape("```json\n{\"a\": [1]}\n```", OutputFormat::Json).map(|v| v.to_string());
        assert_eq!(v.ok().as_deref(), Some("{\"a\": [1]}"));
        assert!(shape("not json", OutputFormat::Json).is_err());
    }
}
