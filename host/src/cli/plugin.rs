//! `composer plugin new|build|test|inspect|list`, the same for plugins in
//! Rust, Python and JavaScript.

#[path = "plugin_build.rs"]
mod build;
#[path = "plugin_project.rs"]
mod project;
#[path = "plugin_test.rs"]
mod test;

use crate::plugins::catalog::{self, PluginHost, PluginSettings};
use crate::plugins::FunctionRegistry;
use project::{Lang, PluginCliError, Project, TESTS_FILE};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin with one example function and its tests.
    New {
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Folder to create it in (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin folder (Rust, Python or JavaScript) into a component.
    Build {
        /// The plugin's folder (default: the current folder).
        path: Option<PathBuf>,
        /// Put the component into this folder (e.g. `plugins/dist`). Default:
        /// `DIR/dist` for Python and JavaScript, cargo's target folder for Rust.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rebuild even when the sources are unchanged.
        #[arg(long)]
        force: bool,
    },
    /// Build a plugin folder and run its tests (`tests.json`) through the host.
    Test {
        /// The plugin's folder (default: the current folder).
        path: Option<PathBuf>,
    },
    /// Put a plugin where composer finds it from any folder: the user's
    /// plugin folder (`$XDG_DATA_HOME/composer/plugins`). The component is
    /// checked first (it must describe its functions under the limits).
    Install {
        /// A `.wasm` component, or a plugin's folder (built first).
        path: PathBuf,
        /// Install into this folder instead.
        #[arg(long)]
        dir: Option<PathBuf>,
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
    let here = || PathBuf::from(".");
    let result = match command {
        PluginCommand::New { name, lang, dir } => new(&name, lang, dir),
        PluginCommand::Build { path, out, force } => {
            build_command(&path.unwrap_or_else(here), out.as_deref(), force)
        }
        PluginCommand::Test { path } => test_command(&path.unwrap_or_else(here), settings),
        PluginCommand::Install { path, dir } => install_command(&path, dir, settings),
        PluginCommand::Inspect { file } => return inspect(&file, settings),
        PluginCommand::List { json } => return list(settings, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                PluginCliError::InvalidName(_) | PluginCliError::NotAPlugin(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, PluginCliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginCliError::Host(format!("cannot start the async runtime: {e}")))
}

fn new(name: &str, lang: Lang, dir: Option<PathBuf>) -> Result<ExitCode, PluginCliError> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    project::scaffold(name, lang, &dir)?;
    println!("created {} ({} plugin)", dir.display(), lang.as_str());
    println!("next: composer plugin test {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn build_project(
    dir: &Path,
    out: Option<&Path>,
    force: bool,
) -> Result<(Project, build::Built), PluginCliError> {
    let project = project::detect(dir)?;
    if project.lang != Lang::Rust {
        eprintln!(
            "building {} ({} plugin) ...",
            project.name,
            project.lang.as_str()
        );
    }
    let built = build::build(&project, out, force)?;
    Ok((project, built))
}

fn build_command(dir: &Path, out: Option<&Path>, force: bool) -> Result<ExitCode, PluginCliError> {
    let (_, built) = build_project(dir, out, force)?;
    let state = if built.rebuilt { "" } else { ", up to date" };
    println!(
        "{} ({} KB{state})",
        built.component.display(),
        built.size / 1024
    );
    if out.is_none() {
        println!(
            "install it with `composer plugin install {}` to call it from any folder",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn install_command(
    path: &Path,
    dir: Option<PathBuf>,
    settings: PluginSettings,
) -> Result<ExitCode, PluginCliError> {
    let component = if path.is_dir() {
        build_project(path, None, false)?.1.component
    } else {
        path.to_path_buf()
    };
    let invalid = |message: String| PluginCliError::InvalidComponent {
        path: component.clone(),
        message,
    };
    if component.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return Err(invalid("a component file ends in `.wasm`".into()));
    }
    let name = component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rt = runtime()?;
    let host = PluginHost::new(settings);
    let functions = rt
        .block_on(function_names(&host, &name, &component))
        .map_err(invalid)?;
    let folder = match dir {
        Some(d) => d,
        None => crate::plugins::discovery::user_plugin_dir().ok_or(PluginCliError::NoUserFolder)?,
    };
    std::fs::create_dir_all(&folder).map_err(|e| PluginCliError::io("create", &folder, e))?;
    // Copied beside, then renamed: a run starting meanwhile sees the old
    // component or the new one, never half of one.
    let target = folder.join(format!("{name}.wasm"));
    let partial = folder.join(format!(".{name}.wasm.{}.partial", std::process::id()));
    std::fs::copy(&component, &partial).map_err(|e| PluginCliError::io("copy", &partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        PluginCliError::io("install", &target, e)
    })?;
    println!("installed {} ({})", target.display(), functions.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The names of a component's functions, as its `describe` reports them
/// under the limits configured for it.
async fn function_names(host: &PluginHost, name: &str, file: &Path) -> Result<Vec<String>, String> {
    let runtime = host.runtime()?;
    let loaded = runtime.load(name, file).map_err(|e| e.to_string())?;
    let functions = runtime
        .describe(&loaded, &host.limits_for(name))
        .await
        .map_err(|e| e.to_string())?;
    Ok(functions.into_iter().map(|f| f.name).collect())
}

fn test_command(dir: &Path, settings: PluginSettings) -> Result<ExitCode, PluginCliError> {
    let tests = dir.join(TESTS_FILE);
    let cases = test::read_cases(&tests)?;
    let (project, built) = build_project(dir, None, false)?;
    let rt = runtime()?;
    let host = PluginHost::new(PluginSettings {
        paths: vec![built.component.clone()],
        ..settings
    });
    let scratch = test::Scratch::new()?;
    let results = rt.block_on(test::run_cases(&host, &built.component, &cases, &scratch.0))?;
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for r in &results {
        match &r.failure {
            None => println!("ok    {}", r.label),
            Some(why) => println!("FAIL  {}: {why}", r.label),
        }
    }
    println!(
        "{}: {} passed, {failed} failed ({} plugin, {})",
        project.name,
        results.len() - failed,
        project.lang.as_str(),
        built.component.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn inspect(file: &Path, settings: PluginSettings) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
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
                let tags = if f.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", f.tags.join(", "))
                };
                println!("    {}{pure}{tags}: {}", f.name, f.description);
                if let Some(schema) = &f.input_schema {
                    println!("      input: {schema}");
                }
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
    // What a run started here would find: the configured folders, then the
    // search path's (environment, user folder, beside the binary).
    let settings = PluginSettings {
        paths: crate::plugins::discovery::search_path(&settings.paths, None),
        ..settings
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
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
