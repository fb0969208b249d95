//! Diagnostics: what is wrong with a recipe, and where.
//!
//! The loader and validator never stop at the first problem: they collect
//! every `Diagnostic` they can, and the CLI prints them all (or emits them as
//! JSON). A diagnostic names the file, the path inside the recipe
//! (`nodes[3].task.function_identifier`) and, when the source is known, the
//! line and column.

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The kind of a problem: stable names that tests and tools match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    Io,
    TooLarge,
    Syntax,
    AliasBomb,
    TooDeep,
    NotAMapping,
    ImportMissing,
    ImportCycle,
    InvalidImport,
    UnknownReference,
    ReferenceCycle,
    MissingField,
    WrongType,
    InvalidValue,
    UnknownField,
    DuplicateId,
    UnknownNodeType,
    UnknownNode,
    InvalidEdge,
    ReservedName,
    InvalidTemplate,
    RecipeCycle,
    SubRecipe,
    UnknownOutput,
    SubRecipeInput,
    UnknownFunction,
    NoModel,
    UnreachableNode,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "io",
            Code::TooLarge => "too-large",
            Code::Syntax => "syntax",
            Code::AliasBomb => "alias-bomb",
            Code::TooDeep => "too-deep",
            Code::NotAMapping => "not-a-mapping",
            Code::ImportMissing => "import-missing",
            Code::ImportCycle => "import-cycle",
            Code::InvalidImport => "invalid-import",
            Code::UnknownReference => "unknown-reference",
            Code::ReferenceCycle => "reference-cycle",
            Code::MissingField => "missing-field",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::UnknownField => "unknown-field",
            Code::DuplicateId => "duplicate-id",
            Code::UnknownNodeType => "unknown-node-type",
            Code::UnknownNode => "unknown-node",
            Code::InvalidEdge => "invalid-edge",
            Code::ReservedName => "reserved-name",
            Code::InvalidTemplate => "invalid-template",
            Code::RecipeCycle => "recipe-cycle",
            Code::SubRecipe => "sub-recipe",
            Code::UnknownOutput => "unknown-output",
            Code::SubRecipeInput => "sub-recipe-input",
            Code::UnknownFunction => "unknown-function",
            Code::NoModel => "no-model",
            Code::UnreachableNode => "unreachable-node",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Path inside the recipe, e.g. `nodes[3].task.function_identifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// A suggestion such as "did you mean `function_identifier`?".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            path: None,
            line: None,
            column: None,
            hint: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn at_line(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}[{}]: {}", self.code.as_str(), self.message)?;
        let mut location = String::new();
        if let Some(file) = &self.file {
            location.push_str(&file.display().to_string());
            if let Some(line) = self.line {
                location.push_str(&format!(":{line}"));
                if let Some(col) = self.column {
                    location.push_str(&format!(":{col}"));
                }
            }
        }
        if let Some(path) = &self.path {
            if !location.is_empty() {
                location.push_str(" at ");
            }
            location.push_str(&format!("`{path}`"));
        }
        if !location.is_empty() {
            write!(f, "\n  --> {location}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest names to `wanted` among `known`, best first, for "did you mean".
pub fn closest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(f64, &str)> = known
        .into_iter()
        .map(|name| {
            let score = strsim::jaro_winkler(&wanted_lower, &name.to_lowercase());
            (score, name)
        })
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

/// "did you mean `x`?" (or "`x` or `y`"), when anything is close enough.
pub fn did_you_mean<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names = closest(wanted, known);
    if names.is_empty() {
        return None;
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    Some(format!("did you mean {}?", quoted.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["function_identifier", "description", "input"];
        assert_eq!(
            closest("fucntion_identifier", known),
            vec!["function_identifier"]
        );
        assert!(closest("zzz", known).is_empty());
    }

    #[test]
    fn display_shows_location_and_hint() {
        let d = Diagnostic::error(Code::UnknownNode, "edge names unknown node `x`")
            .in_file(Path::new("r.yaml"))
            .at("edges[0]")
            .at_line(4, 3)
            .with_hint(Some("did you mean `y`?".into()));
        let text = d.to_string();
        assert!(text.contains("r.yaml:4:3 at `edges[0]`"), "{text}");
        assert!(text.contains("hint: did you mean `y`?"), "{text}");
    }
}
