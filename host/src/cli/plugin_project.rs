//! Plugin projects: which language a folder is written in, its name and
//! entry point, and the scaffolds `composer plugin new` writes.
//!
//! | language | marker | name from | entry |
//! | --- | --- | --- | --- |
//! | Rust | `Cargo.toml` | `[package] name` | the crate |
//! | Python | `pyproject.toml` | `[project] name` | `[tool.composer] module` (default `functions`) |
//! | JavaScript | `package.json` | `name` | `main` (default `functions.js`) |

use std::path::{Path, PathBuf};
use thiserror::Error;

/// What `composer plugin new|build|test` can fail with.
#[derive(Debug, Error)]
pub enum PluginCliError {
    #[error("plugin name `{0}` must be lower-case letters, digits and `_`, starting with a letter (it is also the example function's name)")]
    InvalidName(String),
    #[error("`{}` already exists", .0.display())]
    Exists(PathBuf),
    #[error("`{}` is not a plugin folder: it has no Cargo.toml (Rust), pyproject.toml (Python) or package.json (JavaScript)", .0.display())]
    NotAPlugin(PathBuf),
    #[error("`{}`: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run `{program}`: {source}{hint}")]
    Spawn {
        program: String,
        hint: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}){details}")]
    ToolFailed {
        what: String,
        status: String,
        details: String,
    },
    #[error("{0}")]
    Tool(String),
    #[error("the build made no component in `{}`", .0.display())]
    NoComponent(PathBuf),
    #[error("`{}`: {message}", path.display())]
    Tests { path: PathBuf, message: String },
    #[error("{0}")]
    Host(String),
    #[error("`{}` is not a plugin: {message}", path.display())]
    InvalidComponent { path: PathBuf, message: String },
    #[error("no user plugin folder: neither XDG_DATA_HOME nor HOME is set; pass --dir")]
    NoUserFolder,
}

impl PluginCliError {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        PluginCliError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// A plugin folder, as found on disk.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
    /// The component's file stem (also the `[plugins.overrides.<name>]` key).
    pub name: String,
    /// Python: the module of functions; JavaScript: the module file; Rust:
    /// the manifest file name.
    pub entry: String,
}

/// The file a plugin's own tests live in (run by `composer plugin test`).
pub const TESTS_FILE: &str = "tests.json";

/// A name usable as a component file stem and a function name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn read(path: &Path) -> Result<String, PluginCliError> {
    std::fs::read_to_string(path).map_err(|e| PluginCliError::io("read", path, e))
}

fn manifest_error(path: &Path, message: impl Into<String>) -> PluginCliError {
    PluginCliError::Manifest {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn component_stem(raw: &str) -> String {
    raw.replace('-', "_")
}

/// Finds out what kind of plugin `dir` holds.
pub fn detect(dir: &Path) -> Result<Project, PluginCliError> {
    let cargo = dir.join("Cargo.toml");
    let pyproject = dir.join("pyproject.toml");
    let package = dir.join("package.json");
    if cargo.is_file() {
        let doc: toml::Table =
            toml::from_str(&read(&cargo)?).map_err(|e| manifest_error(&cargo, e.to_string()))?;
        let name = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| manifest_error(&cargo, "no `[package] name`"))?;
        return Ok(Project {
            dir: dir.to_path_buf(),
            lang: Lang::Rust,
            name: component_stem(name),
            entry: "Cargo.toml".into(),
        });
    }
    if pyproject.is_file() {
        let doc: toml::Table = toml::from_str(&read(&pyproject)?)
            .map_err(|e| manifest_error(&pyproject, e.to_string()))?;
        let name = doc
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| manifest_error(&pyproject, "no `[project] name`"))?;
        let module = doc
            .get("tool")
            .and_then(|t| t.get("composer"))
            .and_then(|c| c.get("module"))
            .and_then(|m| m.as_str())
            .unwrap_or("functions")
            .to_string();
        let file = dir.join(module.replace('.', "/"));
        if !file.with_extension("py").is_file() && !file.join("__init__.py").is_file() {
            return Err(manifest_error(
                &pyproject,
                format!(
                    "the module `{module}` (`[tool.composer] module`) is neither `{module}.py` nor a package in `{}`",
                    dir.display()
                ),
            ));
        }
        return Ok(Project {
            dir: dir.to_path_buf(),
            lang: Lang::Python,
            name: component_stem(name),
            entry: module,
        });
    }
    if package.is_file() {
        let doc: serde_json::Value = serde_json::from_str(&read(&package)?)
            .map_err(|e| manifest_error(&package, e.to_string()))?;
        let name = doc["name"]
            .as_str()
            .ok_or_else(|| manifest_error(&package, "no `name`"))?;
        let name = name.rsplit('/').next().unwrap_or(name);
        let main = doc["main"].as_str().unwrap_or("functions.js").to_string();
        let main = main.trim_start_matches("./").to_string();
        if !dir.join(&main).is_file() {
            return Err(manifest_error(
                &package,
                format!("its `main` module `{main}` does not exist"),
            ));
        }
        return Ok(Project {
            dir: dir.to_path_buf(),
            lang: Lang::Js,
            name: component_stem(name),
            entry: main,
        });
    }
    Err(PluginCliError::NotAPlugin(dir.to_path_buf()))
}

/// Writes a new plugin of `lang` named `name` into `dir` (which must not
/// exist): one example function and its tests. Returns the files written.
pub fn scaffold(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>, PluginCliError> {
    if !valid_name(name) {
        return Err(PluginCliError::InvalidName(name.to_string()));
    }
    if dir.exists() {
        return Err(PluginCliError::Exists(dir.to_path_buf()));
    }
    let files: Vec<(&str, String)> = match lang {
        Lang::Rust => rust_files(name),
        Lang::Python => python_files(name),
        Lang::Js => js_files(name),
    };
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PluginCliError::io("create", parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| PluginCliError::io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The example's tests: the same behaviour in every language.
fn tests_json(name: &str) -> String {
    format!(
        r#"[
  {{
    "name": "counts the words",
    "function": "{name}",
    "input": {{"text": "one two  three"}},
    "output": {{"words": 3}}
  }},
  {{
    "name": "text is required",
    "function": "{name}",
    "input": {{}},
    "error": "text"
  }}
]
"#
    )
}

const GITIGNORE: &str = "dist/\ntarget/\n__pycache__/\nnode_modules/\n";

/// The Rust guest SDK, as this composer was built with it: written into
/// every new Rust plugin, so the plugin builds wherever it is, with no path
/// into composer's source tree.
const SDK_FOLDER: &str = "composer-plugin-sdk";
const SDK_MANIFEST: &str = include_str!("../../../plugin-sdk/Cargo.toml");
const SDK_LIB: &str = include_str!("../../../plugin-sdk/src/lib.rs");

fn rust_files(name: &str) -> Vec<(&'static str, String)> {
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK and WIT contract of the composer that made this plugin (a copy,
# so the plugin builds anywhere, offline).
composer-plugin-sdk = {{ path = "{SDK_FOLDER}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"

# A plugin builds on its own, outside any enclosing workspace.
[workspace]
"#
    );
    let lib_rs = format!(
        r#"//! `{name}`: describe what it does and its input and output here.

use composer_plugin_sdk::{{export, log}};
use serde::{{Deserialize, Serialize}};

#[derive(Deserialize)]
pub struct Input {{
    pub text: String,
}}

#[derive(Serialize)]
pub struct Output {{
    pub words: usize,
}}

pub fn {name}(input: Input) -> Result<Output, String> {{
    log::info("counting words");
    Ok(Output {{ words: input.text.split_whitespace().count() }})
}}

export!({name}: "Counts the words of `text`" (pure));

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn counts_words() {{
        let out = {name}(Input {{ text: "a b c".into() }}).map(|o| o.words);
        assert_eq!(out, Ok(3));
    }}
}}
"#
    );
    vec![
        ("Cargo.toml", cargo_toml),
        ("src/lib.rs", lib_rs),
        (TESTS_FILE, tests_json(name)),
        (".gitignore", GITIGNORE.into()),
        ("composer-plugin-sdk/Cargo.toml", SDK_MANIFEST.into()),
        ("composer-plugin-sdk/src/lib.rs", SDK_LIB.into()),
        (
            "composer-plugin-sdk/wit/plugin.wit",
            super::build::WIT.into(),
        ),
    ]
}

fn python_files(name: &str) -> Vec<(&'static str, String)> {
    let pyproject = format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
description = "A composer plugin"
requires-python = ">=3.11"

[tool.composer]
# The module whose @function-decorated functions this plugin offers.
module = "functions"
"#
    );
    let functions = format!(
        r#""""`{name}`: describe what the plugin does here.

Each function decorated with ``@function`` is one function recipes can call
(``function_identifier: {name}``). It takes the node's inputs as a dict and
returns anything JSON can encode. ``composer_plugin`` comes with composer
(plugin-sdk/python); ``composer plugin build`` provides it.
"""

from composer_plugin import PluginError, function, log

INPUT = {{
    "type": "object",
    "required": ["text"],
    "properties": {{"text": {{"type": "string"}}}},
}}


@function(pure=True, tags=["text"], input_schema=INPUT)
def {name}(input: dict) -> dict:
    """Counts the words of `text`."""
    text = input["text"]
    if not isinstance(text, str):
        raise PluginError("`text` must be a string")
    log.info("counting words")
    return {{"words": len(text.split())}}
"#
    );
    vec![
        ("pyproject.toml", pyproject),
        ("functions.py", functions),
        (TESTS_FILE, tests_json(name)),
        (".gitignore", GITIGNORE.into()),
    ]
}

fn js_files(name: &str) -> Vec<(&'static str, String)> {
    let package = format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "description": "A composer plugin",
  "private": true,
  "type": "module",
  "main": "functions.js"
}}
"#
    );
    let functions = format!(
        r#"// `{name}`: describe what the plugin does here.
//
// Each `register`ed function is one function recipes can call
// (`function_identifier: {name}`). It takes the node's inputs as an object
// and returns anything JSON can encode, or a Promise of it.
// `./composer-plugin.js` comes with composer (plugin-sdk/js);
// `composer plugin build` puts it next to this file.

import {{ register, log }} from "./composer-plugin.js";

register(
  "{name}",
  {{
    description: "Counts the words of `text`",
    pure: true,
    tags: ["text"],
    inputSchema: {{
      type: "object",
      required: ["text"],
      properties: {{ text: {{ type: "string" }} }},
    }},
  }},
  ({{ text }}) => {{
    log.info("counting words");
    return {{ words: text.split(/\s+/).filter(Boolean).length }};
  }},
);
"#
    );
    vec![
        ("package.json", package),
        ("functions.js", functions),
        (TESTS_FILE, tests_json(name)),
        (".gitignore", GITIGNORE.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "composer-scaffold-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn every_scaffold_is_detected_as_its_language_with_its_name() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = temp(lang.as_str());
            let files = scaffold("word_count", lang, &dir);
            assert!(files.is_ok(), "{files:?}");
            let project = detect(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            let project = project.unwrap_or_else(|e| panic!("{lang:?}: {e}"));
            assert_eq!(project.lang, lang);
            assert_eq!(project.name, "word_count");
        }
    }

    #[test]
    fn names_and_existing_folders_are_refused() {
        let dir = temp("refused");
        assert!(matches!(
            scaffold("Word-Count", Lang::Python, &dir),
            Err(PluginCliError::InvalidName(_))
        ));
        std::fs::create_dir_all(&dir).ok();
        assert!(matches!(
            scaffold("ok", Lang::Js, &dir),
            Err(PluginCliError::Exists(_))
        ));
        assert!(matches!(detect(&dir), Err(PluginCliError::NotAPlugin(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_entry_module_is_named() {
        let dir = temp("entry");
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(
            dir.join("pyproject.toml"),
            "[project]\nname = \"x-y\"\n[tool.composer]\nmodule = \"nope\"\n",
        )
        .ok();
        let err = detect(&dir).map(|p| p.name);
        let _ = std::fs::remove_dir_all(&dir);
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("`nope`"), "{text}");
    }
}
