//! `composer inputs RECIPE [--json]`

use crate::recipe::inputs::json_schema;
use serde_json::Value;
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
