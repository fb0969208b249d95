//! `speech_to_text_task`: transcribe `input.audio_file`.

use super::{NodeCtx, NodeOutput};
use crate::engine::error::NodeError;
use crate::engine::state::lookup;
use crate::providers::TranscriptionRequest;
use crate::recipe::model::{Node, NodeKind};
use minijinja::value::Value;
use std::path::PathBuf;

pub async fn run(ctx: &NodeCtx, node: &Node) -> Result<NodeOutput, NodeError> {
    let NodeKind::SpeechToTextTask {
        language,
        response_format,
    } = &node.kind
    else {
        return Err(NodeError::Input("not a speech_to_text_task".into()));
    };
    let (vars, _) = ctx.resolve_inputs(node)?;
    let audio_file = lookup(&vars, "audio_file")
        .filter(|v| !v.is_none())
        .ok_or_else(|| NodeError::Input("speech_to_text_task needs `input.audio_file`".into()))?;
    let audio_file = PathBuf::from(audio_file.to_string());
    if !audio_file.is_file() {
        return Err(NodeError::Input(format!(
            "audio file `{}` does not exist",
            audio_file.display()
        )));
    }
    let model = ctx.model_for(node)?;
    let provider = ctx.run.services.providers.transcription(&model.provider)?;
    let mock = model.provider == "mock";
    let request = TranscriptionRequest {
        model,
        audio_file,
        language: language.clone(),
        response_format: response_format.clone(),
        retry: node.settings.retry.clone(),
        observer: Some(ctx.observer()),
    };
    let text = provider.transcribe(&request).await?;
    Ok(NodeOutput {
        value: Value::from(text),
        extra: Vec::new(),
        mock,
        stats: crate::providers::CallStats {
            calls: 1,
            ..Default::default()
        },
        cached: false,
        plugin: None,
    })
}
