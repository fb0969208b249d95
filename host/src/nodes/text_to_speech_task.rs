//! `text_to_speech_task`: speak `input.text` with `input.voice`; the output
//! is the audio file's path. Other inputs (stability, speed, ...) go to the
//! provider as they are.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::engine::state::{lookup, to_json};
use crate::providers::SpeechRequest;
use crate::recipe::model::Node;
use minijinja::value::Value;

pub async fn run(ctx: &NodeCtx, node: &Node) -> Result<NodeOutput, NodeError> {
    let (vars, inputs) = ctx.resolve_inputs(node)?;
    let text = lookup(&vars, "text")
        .filter(|v| !v.is_none())
        .ok_or_else(|| NodeError::Input("text_to_speech_task needs `input.text`".into()))?;
    let voice = lookup(&vars, "voice")
        .filter(|v| !v.is_none())
        .map(|v| v.to_string());
    let params = inputs
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "text" && k != "voice")
        .map(|(k, v)| (k, to_json(&v)))
        .collect();
    let model = ctx.model_for(node)?;
    let provider = ctx.run.services.providers.speech(&model.provider)?;
    let (observer, tally) = ctx.counting_observer();
    let request = SpeechRequest {
        model,
        text: text.to_string(),
        voice,
        params,
        out_stem: ctx.file_stem(),
        retry: node.settings.retry,
        observer: Some(observer),
    };
    let parts = serde_json::json!({
        "kind": "text_to_speech_task",
        "provider": request.model.provider,
        "model": request.model.model,
        "params": request.model.params,
        "text": request.text,
        "voice": request.voice,
        "extra": request.params,
    });
    let cache = ctx.run.services.cache.clone();
    let (answer, hit) = ctx
        .cached(
            node,
            "text_to_speech_task",
            true,
            || parts,
            || async {
                let path = provider.speak(&request).await?;
                // The audio itself is kept by content hash, so a later run gets
                // its own copy even after this run's folder is gone.
                let blob = cache.as_ref().and_then(|c| c.put_blob(&path));
                Ok(serde_json::json!({"path": path, "blob": blob}))
            },
        )
        .await?;
    let restored = match (hit, answer.get("blob").and_then(|b| b.as_str()), &cache) {
        (true, Some(blob), Some(cache)) => cache.restore_blob(blob, &request.out_stem),
        _ => None,
    };
    let (path, cached) = match restored {
        Some(p) => (p, true),
        None if hit => (provider.speak(&request).await?, false),
        None => (
            std::path::PathBuf::from(
                answer
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default(),
            ),
            false,
        ),
    };
    Ok(NodeOutput {
        value: Value::from(path.display().to_string()),
        mock: request.model.provider == "mock",
        stats: tally.stats(!cached),
        cached,
        ..NodeOutput::default()
    })
}
