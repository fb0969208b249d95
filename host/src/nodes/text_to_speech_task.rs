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
    let request = SpeechRequest {
        model,
        text: text.to_string(),
        voice,
        params,
        out_stem: ctx.file_stem(),
        retry: node.settings.retry.clone(),
        observer: Some(ctx.observer()),
    };
    let path = provider.speak(&request).await?;
    Ok(NodeOutput {
        value: Value::from(path.display().to_string()),
        extra: Vec::new(),
        mock: request.model.provider == "mock",
        stats: crate::providers::CallStats {
            calls: 1,
            ..Default::default()
        },
        cached: false,
        plugin: None,
    })
}
