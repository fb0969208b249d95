//! `split_transcript`: groups a transcript (`Speaker: words` lines) into
//! turns. Consecutive lines of one speaker form one turn; a line without a
//! speaker tag continues the current turn. Each turn gets the voice mapped
//! to its speaker, or `default_voice_id`.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct Input {
    pub transcript: String,
    #[serde(default)]
    pub voice_mapping: HashMap<String, String>,
    #[serde(default)]
    pub default_voice_id: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Phrase {
    pub text: String,
    pub speaker: String,
    pub voice_id: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct Output {
    pub phrases: Vec<Phrase>,
}

/// A `Speaker Name: words` line: the tag is short and holds no sentence
/// punctuation, so "Note: this" style prose is not mistaken for a speaker
/// only when it is long.
fn speaker_tag(line: &str) -> Option<(&str, &str)> {
    let (tag, rest) = line.split_once(':')?;
    let tag = tag.trim().trim_matches('*').trim();
    let plausible = !tag.is_empty()
        && tag.len() <= 40
        && tag.split_whitespace().count() <= 4
        && !tag.contains(['.', ',', '!', '?', '"']);
    plausible.then(|| (tag, rest.trim()))
}

pub fn split_transcript(input: Input) -> Result<Output, String> {
    let mut phrases: Vec<Phrase> = Vec::new();
    for line in input.transcript.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("```") {
            continue;
        }
        match speaker_tag(line) {
            Some((speaker, text)) => {
                if let Some(last) = phrases.last_mut().filter(|p| p.speaker == speaker) {
                    if !text.is_empty() {
                        last.text.push(' ');
                        last.text.push_str(text);
                    }
                    continue;
                }
                let voice_id = input
                    .voice_mapping
                    .get(speaker)
                    .cloned()
                    .or_else(|| input.default_voice_id.clone());
                phrases.push(Phrase {
                    text: text.to_string(),
                    speaker: speaker.to_string(),
                    voice_id,
                });
            }
            None => match phrases.last_mut() {
                Some(last) => {
                    last.text.push(' ');
                    last.text.push_str(line);
                }
                None => phrases.push(Phrase {
                    text: line.to_string(),
                    speaker: String::new(),
                    voice_id: input.default_voice_id.clone(),
                }),
            },
        }
    }
    phrases.retain(|p| !p.text.trim().is_empty());
    Ok(Output { phrases })
}

composer_plugin_sdk::export!(
    split_transcript: "Groups a `Speaker: words` transcript into speaker turns with voice ids" (pure)
);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(transcript: &str) -> Vec<Phrase> {
        let input = Input {
            transcript: transcript.into(),
            voice_mapping: [("Speaker A".to_string(), "va".to_string())].into(),
            default_voice_id: Some("vd".into()),
        };
        split_transcript(input)
            .map(|o| o.phrases)
            .unwrap_or_default()
    }

    #[test]
    fn groups_consecutive_lines_of_one_speaker() {
        let p =
            run("Speaker A: Hello.\nSpeaker A: Again.\nSpeaker B: Hi.\nand more\nSpeaker C: Yo");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].text, "Hello. Again.");
        assert_eq!(p[0].voice_id.as_deref(), Some("va"));
        assert_eq!(p[1].text, "Hi. and more");
        assert_eq!(p[1].voice_id.as_deref(), Some("vd"));
        assert_eq!(p[2].speaker, "Speaker C");
    }

    #[test]
    fn skips_code_fences_and_blank_lines() {
        let p = run("```\nSpeaker A: one\n\n```");
        assert_eq!(
            p,
            vec![Phrase {
                text: "one".into(),
                speaker: "Speaker A".into(),
                voice_id: Some("va".into())
            }]
        );
    }
}
