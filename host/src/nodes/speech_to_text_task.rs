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
    let (observer, tally) = ctx.counting_observer();
    let request = TranscriptionRequest {
        model,
        audio_file,
        language: language.clone(),
        response_format: response_format.clone(),
        retry: node.settings.retry,
        observer: Some(observer),
    };
    // The audio's content, not its path, decides the transcript.
    let audio_hash = std::fs::read(&request.audio_file)
        .map(|b| crate::plugins::runtime::content_hash(&b))
        .unwrap_or_default();
    let parts = serde_json::json!({
        "kind": "speech_to_text_task",
        "provider": request.model.provider,
        "model": request.model.model,
        "params": request.model.params,
        "audio": audio_hash,
        "language": request.language,
        "response_format": request.response_format,
    });
    let (answer, cached) = ctx
        .cached(
            node,
            "speech_to_text_task",
            true,
            || parts,
            || async {
                Ok(serde_json::Value::String(
                    provider.transcribe(&request).await?,
                ))
            },
        )
        .await?;
    Ok(NodeOutput {
        value: Value::from(answer.as_str().unwrap_or_default()),
        mock,
        stats: tally.stats(!cached),
        cached,
        ..NodeOutput::default()
    })
}
