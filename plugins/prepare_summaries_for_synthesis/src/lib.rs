//! `prepare_summaries_for_synthesis`: lays out summaries (e.g. one per file
//! of a map) as one Markdown text for a synthesis prompt.
//!
//! Input: `summaries_list`, a list whose entries are strings, or mappings
//! with the text under `summary` or `content` (else `text`) and an optional
//! `title` or `file_name`. `null` entries and empty texts are skipped.
//!
//! Output: `{"file_count": <sections written>, "formatted_summaries":
//! "### 1. <title>\n\n<text>\n\n### 2. ..."}`. An entry without a title is
//! called `Summary <n>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
pub struct Input {
    #[serde(default)]
    pub summaries_list: Vec<Value>,
}

#[derive(Serialize, Debug)]
pub struct Output {
    pub file_count: usize,
    pub formatted_summaries: String,
}

/// `(title, text)` of one entry; `None` to skip it.
fn entry(index: usize, value: &Value) -> Result<Option<(Option<String>, String)>, String> {
    let text_of = |v: &Value| match v {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let (title, text) = match value {
        Value::Null => return Ok(None),
        Value::String(s) => (None, s.trim().to_string()),
        Value::Object(map) => {
            let text = ["summary", "content", "text"]
                .iter()
                .find_map(|k| map.get(*k))
                .ok_or_else(|| {
                    format!("summaries_list[{index}] has no `summary` or `content` key")
                })?;
            let title = ["title", "file_name"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            (title, text_of(text))
        }
        other => (None, other.to_string()),
    };
    Ok((!text.is_empty()).then_some((title, text)))
}

pub fn prepare_summaries_for_synthesis(input: Input) -> Result<Output, String> {
    let mut sections = Vec::new();
    for (i, value) in input.summaries_list.iter().enumerate() {
        if let Some((title, text)) = entry(i, value)? {
            let n = sections.len() + 1;
            let title = title.unwrap_or_else(|| format!("Summary {n}"));
            sections.push(format!("### {n}. {title}\n\n{text}"));
        }
    }
    Ok(Output {
        file_count: sections.len(),
        formatted_summaries: sections.join("\n\n"),
    })
}

composer_plugin_sdk::export!(
    prepare_summaries_for_synthesis: "Formats a list of summaries as numbered Markdown sections for a synthesis prompt" (pure)
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(list: Value) -> Result<Output, String> {
        prepare_summaries_for_synthesis(
            serde_json::from_value(json!({ "summaries_list": list })).unwrap(),
        )
    }

    #[test]
    fn formats_strings_and_mappings_as_numbered_sections() {
        let out = run(json!([
            "  First text. ",
            null,
            {"file_name": "report.pdf", "summary": "Second."},
            {"title": "Notes", "file_name": "n.md", "content": "Third."},
            {"content": ""},
        ]))
        .unwrap();
        assert_eq!(out.file_count, 3);
        assert_eq!(
            out.formatted_summaries,
            "### 1. Summary 1\n\nFirst text.\n\n### 2. report.pdf\n\nSecond.\n\n### 3. Notes\n\nThird."
        );
    }

    #[test]
    fn empty_and_missing_lists_give_nothing() {
        let out = run(json!([])).unwrap();
        assert_eq!((out.file_count, out.formatted_summaries.as_str()), (0, ""));
        let out = prepare_summaries_for_synthesis(serde_json::from_str("{}").unwrap()).unwrap();
        assert_eq!(out.file_count, 0);
    }

    #[test]
    fn mapping_without_text_is_an_error_naming_the_entry() {
        let err = run(json!(["a", {"title": "x"}])).err().unwrap();
        assert!(err.contains("summaries_list[1]"), "{err}");
    }

    #[test]
    fn structured_content_is_kept_as_json() {
        let out = run(json!([{"summary": {"points": [1, 2]}}, 7])).unwrap();
        assert!(out.formatted_summaries.contains(r#"{"points":[1,2]}"#));
        assert!(out.formatted_summaries.ends_with("### 2. Summary 2\n\n7"));
    }
}
