//! `composer inputs RECIPE [--json]`

use crate::recipe::model::{InputType, UserInput};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path, as_json: bool) -> ExitCode {
    let loaded = match crate::recipe::load_file(path) {
        Ok(l) => l,
        Err(failure) => {
            super::print_failure(&failure);
            return ExitCode::FAILURE;
        }
    };
    let recipe = &loaded.recipe;
    if as_json {
        let schema = json_schema(&recipe.name, &recipe.user_inputs);
        match serde_json::to_string_pretty(&schema) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot encode schema: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if recipe.user_inputs.is_empty() {
        println!("{} takes no inputs", recipe.name);
        return ExitCode::SUCCESS;
    }
    println!("{}", recipe.name);
    for input in &recipe.user_inputs {
        let mut line = format!("  {} ({})", input.id, input.input_type.as_str());
        if !input.required {
            line.push_str(", optional");
        }
        if let Some(d) = &input.default {
            line.push_str(&format!(", default {d}"));
        }
        if let Some(values) = &input.literal_values {
            let shown: Vec<String> = values.iter().map(Value::to_string).collect();
            line.push_str(&format!(", one of {}", shown.join(" | ")));
        }
        println!("{line}");
        if input.label != input.id {
            println!("      {}", input.label);
        }
        if let Some(desc) = input.description.as_ref().filter(|d| **d != input.label) {
            println!("      {desc}");
        }
    }
    ExitCode::SUCCESS
}

/// A JSON Schema (draft 2020-12) object describing the inputs.
pub fn json_schema(title: &str, inputs: &[UserInput]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in inputs {
        let mut prop = match input.input_type {
            InputType::String | InputType::Text => json!({"type": "string"}),
            InputType::Int => json!({"type": "integer"}),
            InputType::Float => json!({"type": "number"}),
            InputType::Bool => json!({"type": "boolean"}),
            InputType::File => json!({
                "anyOf": [
                    {"type": "string", "format": "path"},
                    {"type": "array", "items": {"type": "string", "format": "path"}}
                ]
            }),
            InputType::Literal => json!({"enum": input.literal_values.clone().unwrap_or_default()}),
        };
        if let Value::Object(p) = &mut prop {
            p.insert("title".into(), Value::String(input.label.clone()));
            if let Some(d) = &input.description {
                p.insert("description".into(), Value::String(d.clone()));
            }
            if let Some(d) = &input.default {
                p.insert("default".into(), d.clone());
            }
            if input.input_type == InputType::Text {
                p.insert("x-composer-multiline".into(), Value::Bool(true));
            }
        }
        if input.required && input.default.is_none() {
            required.push(Value::String(input.id.clone()));
        }
        properties.insert(input.id.clone(), prop);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}
