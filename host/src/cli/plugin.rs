//! `composer plugin new|build|inspect|list`

use crate::plugins::catalog::{self, PluginHost, PluginSettings};
use crate::plugins::FunctionRegistry;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate (Rust, built for wasm32-wasip2).
    New {
        name: String,
        /// Folder to create it in (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin crate into a component.
    Build {
        /// The crate's folder (default: the current folder).
        path: Option<PathBuf>,
    },
    /// Show a component's functions, imports, size and hash.
    Inspect { file: PathBuf },
    /// List the functions composer can call, with their scopes.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PluginCommand, settings: PluginSettings) -> ExitCode {
    match command {
        PluginCommand::New { name, dir } => new(&name, dir),
        PluginCommand::Build { path } => build(&path.unwrap_or_else(|| PathBuf::from("."))),
        PluginCommand::Inspect { file } => inspect(&file, settings),
        PluginCommand::List { json } => list(settings, json),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn new(name: &str, dir: Option<PathBuf>) -> ExitCode {
    if !valid_name(name) {
        eprintln!("error: plugin name `{name}` must be lower-case letters, digits and `_`, starting with a letter (it is also the function's name)");
        return ExitCode::from(2);
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        eprintln!("error: `{}` already exists", dir.display());
        return ExitCode::FAILURE;
    }
    // The SDK this composer was built with; a crate elsewhere can point at
    // its own copy.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    let sdk = std::fs::canonicalize(&sdk).unwrap_or(sdk);
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
composer-plugin-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"

# A plugin builds on its own, outside any enclosing workspace.
[workspace]
"#,
        sdk = sdk.display()
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
    let written = std::fs::create_dir_all(dir.join("src"))
        .and_then(|()| std::fs::write(dir.join("Cargo.toml"), cargo_toml))
        .and_then(|()| std::fs::write(dir.join("src/lib.rs"), lib_rs));
    if let Err(e) = written {
        eprintln!("error: cannot write `{}`: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    println!("created {}", dir.display());
    println!("next: composer plugin build {}", dir.display());
    ExitCode::SUCCESS
}

fn ensure_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "rustup target add wasm32-wasip2 failed".into())
}

fn build(path: &Path) -> ExitCode {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        eprintln!("error: `{}` has no Cargo.toml", path.display());
        return ExitCode::from(2);
    }
    if let Err(e) = ensure_target() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    }
    let metadata = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output();
    let target_dir = metadata
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["target_directory"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| path.join("target"));
    let out = target_dir.join("wasm32-wasip2/release");
    let mut found = false;
    if let Ok(entries) = std::fs::read_dir(&out) {
        for entry in entries.filter_map(Result::ok) {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "wasm") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                println!("{} ({} KB)", p.display(), size / 1024);
                found = true;
            }
        }
    }
    if !found {
        eprintln!("error: the build made no component in `{}`", out.display());
        return ExitCode::FAILURE;
    }
    println!("copy it into a plugin folder (default `plugins/dist`) to use it");
    ExitCode::SUCCESS
}

fn inspect(file: &Path, settings: PluginSettings) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let host = PluginHost::new(settings);
    let result = rt.block_on(async {
        let runtime = host.runtime()?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = runtime.load(&name, file).map_err(|e| e.to_string())?;
        let functions = runtime
            .describe(&loaded, &host.limits_for(&name))
            .await
            .map_err(|e| e.to_string())?;
        let ty = loaded.component.component_type();
        let engine = runtime.engine();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        Ok::<_, String>((
            loaded.size,
            loaded.hash.clone(),
            functions,
            imports,
            exports,
        ))
    });
    match result {
        Ok((size, hash, functions, imports, exports)) => {
            println!("{}", file.display());
            println!("  size    {size} bytes");
            println!("  sha256  {hash}");
            println!("  functions:");
            for f in functions {
                let pure = if f.pure { " (pure)" } else { "" };
                println!("    {}{pure}: {}", f.name, f.description);
            }
            println!("  imports:");
            for i in imports {
                println!("    {i}");
            }
            println!("  exports:");
            for e in exports {
                println!("    {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(settings: PluginSettings, json: bool) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let host = PluginHost::new(settings);
    let mut registry = FunctionRegistry::default();
    let warnings = rt.block_on(catalog::register_project_plugins(&host, &mut registry));
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let entries = registry.list();
    if json {
        match serde_json::to_string_pretty(&entries) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if entries.is_empty() {
        println!(
            "no functions found (plugin paths: {:?})",
            host.settings().paths
        );
    }
    for e in entries {
        let shadowed = if e.active { "" } else { "  (shadowed)" };
        println!(
            "{:<8} {:<34} {}{shadowed}",
            e.scope.as_str(),
            e.info.name,
            e.origin
        );
    }
    ExitCode::SUCCESS
}
