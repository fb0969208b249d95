//! `composer plugin build`: one command for every language.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2` (the target is
//!   added with rustup when missing).
//! - Python: `componentize-py` in a virtual environment of its own.
//! - JavaScript: `componentize-js` in an npm prefix of its own.
//!
//! The Python and JavaScript tools are installed on first use into
//! `$COMPOSER_TOOLS_DIR` (the repository's scripts point it at the
//! project-local `.composer/tools`), else `$XDG_CACHE_HOME/composer/tools`
//! (`~/.cache/composer/tools`). Each build runs in a staging folder holding
//! the plugin's files, the SDK module (embedded in this binary, so a plugin
//! folder needs nothing but its own code) and the WIT contract.
//!
//! A Python or JavaScript component is rebuilt only when its sources
//! change: the build stores a hash of the sources, the SDK, the WIT and the
//! tool's version next to the component (`.<name>.source-hash`).
//! `scripts/build-plugins.sh` computes the same hash, so the two agree on
//! what is up to date.

use super::project::{Lang, PluginCliError, Project, TESTS_FILE};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The contract every guest binds to.
pub const WIT: &str = include_str!("../../../plugin-sdk/wit/plugin.wit");
/// The Python helper module (`composer_plugin`).
pub const PYTHON_SDK: &str = include_str!("../../../plugin-sdk/python/composer_plugin.py");
/// The JavaScript helper module (`./composer-plugin.js`).
pub const JS_SDK: &str = include_str!("../../../plugin-sdk/js/composer-plugin.js");

pub const COMPONENTIZE_PY: &str = "0.25.1";
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// Folders and files that are not a plugin's sources.
const SKIPPED_DIRS: &[&str] = &["dist", "target", "node_modules", "__pycache__"];

/// What a build made.
#[derive(Debug)]
pub struct Built {
    pub component: PathBuf,
    pub size: u64,
    /// False when the component was already up to date.
    pub rebuilt: bool,
}

/// Where the Python and JavaScript build tools live.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("COMPOSER_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("composer").join("tools")
}

/// The tool (and version) that builds `lang`, as it goes into the hash.
fn tool_label(lang: Lang) -> String {
    match lang {
        Lang::Rust => "cargo".into(),
        Lang::Python => format!("componentize-py {COMPONENTIZE_PY}"),
        Lang::Js => format!("componentize-js {COMPONENTIZE_JS}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plugin's source files, as `./relative/path` (sorted bytewise),
/// leaving out build output, dependencies, hidden entries and the tests.
pub fn source_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PluginCliError> {
    fn walk(
        dir: &Path,
        prefix: &str,
        out: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), PluginCliError> {
        let entries = std::fs::read_dir(dir).map_err(|e| PluginCliError::io("read", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PluginCliError::io("read", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| PluginCliError::io("read", &path, e))?;
            if name.starts_with('.') || SKIPPED_DIRS.contains(&name.as_str()) {
                continue;
            }
            let relative = format!("{prefix}/{name}");
            if kind.is_dir() {
                walk(&path, &relative, out)?;
            } else if kind.is_file()
                && !name.ends_with(".pyc")
                && relative != format!("./{TESTS_FILE}")
            {
                out.push((relative, path));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, ".", &mut files)?;
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(files)
}

/// The source hash of a Python or JavaScript plugin: SHA-256 of the
/// `sha256sum`-style lines of its source files, then of the SDK and the
/// WIT, then the tool's name and version (the same text
/// `scripts/build-plugins.sh` hashes).
pub fn source_hash(project: &Project) -> Result<String, PluginCliError> {
    let mut text = String::new();
    for (relative, path) in source_files(&project.dir)? {
        let bytes = std::fs::read(&path).map_err(|e| PluginCliError::io("read", &path, e))?;
        text.push_str(&format!("{}  {relative}\n", hex(&bytes)));
    }
    let sdk = match project.lang {
        Lang::Python => PYTHON_SDK,
        Lang::Js => JS_SDK,
        Lang::Rust => "",
    };
    text.push_str(&format!("{}  sdk\n", hex(sdk.as_bytes())));
    text.push_str(&format!("{}  wit\n", hex(WIT.as_bytes())));
    text.push_str(&tool_label(project.lang));
    text.push('\n');
    Ok(hex(text.as_bytes()))
}

/// The stamp file holding the source hash of `out/<name>.wasm`.
pub fn stamp_file(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.source-hash"))
}

/// Builds `project`; Python and JavaScript components go to `out`
/// (default `<dir>/dist`), Rust ones stay in cargo's target folder unless
/// `out` is given. `force` rebuilds even when the sources are unchanged.
pub fn build(project: &Project, out: Option<&Path>, force: bool) -> Result<Built, PluginCliError> {
    match project.lang {
        Lang::Rust => build_rust(project, out),
        Lang::Python | Lang::Js => {
            let out = out
                .map(Path::to_path_buf)
                .unwrap_or_else(|| project.dir.join("dist"));
            build_interpreted(project, &out, force)
        }
    }
}

fn build_interpreted(project: &Project, out: &Path, force: bool) -> Result<Built, PluginCliError> {
    let component = out.join(format!("{}.wasm", project.name));
    let stamp = stamp_file(out, &project.name);
    let hash = source_hash(project)?;
    if !force && component.is_file() {
        if let Ok(stored) = std::fs::read_to_string(&stamp) {
            if stored.trim() == hash {
                let size = file_size(&component);
                return Ok(Built {
                    component,
                    size,
                    rebuilt: false,
                });
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| PluginCliError::io("create", out, e))?;
    let stage = Stage::new(out)?;
    let made = match project.lang {
        Lang::Python => componentize_python(project, &stage)?,
        _ => componentize_js(project, &stage)?,
    };
    if !made.is_file() {
        return Err(PluginCliError::NoComponent(stage.dir.clone()));
    }
    // Moved into place whole, then stamped: a reader never sees half a
    // component, and a stamp always describes the component beside it.
    let tmp = out.join(format!(".{}.{}.tmp", project.name, std::process::id()));
    std::fs::copy(&made, &tmp).map_err(|e| PluginCliError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &component).map_err(|e| PluginCliError::io("write", &component, e))?;
    std::fs::write(&stamp, format!("{hash}\n"))
        .map_err(|e| PluginCliError::io("write", &stamp, e))?;
    let size = file_size(&component);
    Ok(Built {
        component,
        size,
        rebuilt: true,
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A scratch folder for one build, removed when dropped.
struct Stage {
    dir: PathBuf,
}

impl Stage {
    fn new(near: &Path) -> Result<Stage, PluginCliError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = near.join(format!(
            ".build-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| PluginCliError::io("create", &dir, e))?;
        Ok(Stage { dir })
    }

    fn write(&self, relative: &str, text: &str) -> Result<PathBuf, PluginCliError> {
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PluginCliError::io("create", parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| PluginCliError::io("write", &path, e))?;
        Ok(path)
    }

    /// Copies the plugin's source files under `relative`.
    fn copy_sources(&self, project: &Project, relative: &str) -> Result<(), PluginCliError> {
        for (file, from) in source_files(&project.dir)? {
            let to = self.dir.join(relative).join(file.trim_start_matches("./"));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| PluginCliError::io("create", parent, e))?;
            }
            std::fs::copy(&from, &to).map_err(|e| PluginCliError::io("copy", &from, e))?;
        }
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command`; a failure carries the tail of what it printed.
fn run(what: &str, command: &mut Command) -> Result<(), PluginCliError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|source| PluginCliError::Spawn {
        hint: install_hint(&program),
        program,
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut printed = String::from_utf8_lossy(&output.stderr).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stdout));
    let lines: Vec<&str> = printed.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n  ");
    Err(PluginCliError::ToolFailed {
        what: what.to_string(),
        status: output.status.to_string(),
        details: if tail.is_empty() {
            String::new()
        } else {
            format!(":\n  {tail}")
        },
    })
}

fn install_hint(program: &str) -> String {
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "python3" | "python" => {
            " (Python plugins need Python 3.10 or newer with pip and venv)".into()
        }
        "npm" | "node" => " (JavaScript plugins need Node.js 18 or newer with npm)".into(),
        "cargo" | "rustup" => " (Rust plugins need a Rust toolchain: https://rustup.rs)".into(),
        _ => String::new(),
    }
}

/// Installs a tool into `tools_dir()/<folder>` unless it is there: into a
/// temporary folder first, renamed into place when complete, so two builds
/// installing at once never see half an installation.
fn ensure_tool(
    folder: &str,
    ready: impl Fn(&Path) -> bool,
    install: impl FnOnce(&Path) -> Result<(), PluginCliError>,
    announce: &str,
) -> Result<PathBuf, PluginCliError> {
    let tools = tools_dir();
    let dir = tools.join(folder);
    if ready(&dir) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&tools).map_err(|e| PluginCliError::io("create", &tools, e))?;
    eprintln!("{announce} into {} (first use only) ...", dir.display());
    let tmp = tools.join(format!(".{folder}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let installed = install(&tmp);
    if let Err(e) = installed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another build finished first; its copy is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if ready(&dir) {
        eprintln!("installed {folder}");
        Ok(dir)
    } else {
        Err(PluginCliError::Tool(format!(
            "{folder} was installed into `{}` but is not usable there; remove the folder and try again",
            dir.display()
        )))
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// How to run componentize-py: an interpreter, and the folder its package
/// was installed into when there is no virtual environment.
pub struct PythonTool {
    pub python: PathBuf,
    pub site: Option<PathBuf>,
}

fn system_python() -> &'static str {
    ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .unwrap_or("python3")
}

/// componentize-py, installed on first use: into a virtual environment,
/// or, where `venv` is missing (Debian without python3-venv), into a
/// plain folder with `pip install --target`.
pub fn componentize_py_tool() -> Result<PythonTool, PluginCliError> {
    let folder = format!("componentize-py-{COMPONENTIZE_PY}");
    let package = format!("componentize-py=={COMPONENTIZE_PY}");
    let ready = |dir: &Path| {
        dir.join(".installed").is_file()
            && (venv_python(dir).is_file() || dir.join("site").is_dir())
    };
    let dir = ensure_tool(
        &folder,
        ready,
        |tmp| {
            let python = system_python();
            let venv = run(
                "creating a virtual environment for componentize-py",
                Command::new(python).args(["-m", "venv"]).arg(tmp),
            );
            let pip_args = [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ];
            match venv {
                Ok(()) => run(
                    &format!("pip install {package}"),
                    Command::new(venv_python(tmp)).args(pip_args).arg(&package),
                )?,
                Err(_) => {
                    let _ = std::fs::remove_dir_all(tmp);
                    run(
                        &format!(
                            "pip install --target {} {package}",
                            tmp.join("site").display()
                        ),
                        Command::new(python)
                            .args(pip_args)
                            .arg("--target")
                            .arg(tmp.join("site"))
                            .arg(&package),
                    )?
                }
            }
            std::fs::write(tmp.join(".installed"), COMPONENTIZE_PY)
                .map_err(|e| PluginCliError::io("write", tmp, e))
        },
        &format!(
            "installing componentize-py {COMPONENTIZE_PY} (Python plugin builder, ~70 MB) with pip"
        ),
    )?;
    if venv_python(&dir).is_file() {
        return Ok(PythonTool {
            python: venv_python(&dir),
            site: None,
        });
    }
    Ok(PythonTool {
        python: PathBuf::from(system_python()),
        site: Some(dir.join("site")),
    })
}

fn componentize_js_cli(prefix: &Path) -> PathBuf {
    prefix
        .join("node_modules")
        .join("@bytecodealliance")
        .join("componentize-js")
        .join("src")
        .join("cli.js")
}

/// The script that runs componentize-js with node (installed on first use).
pub fn componentize_js_tool() -> Result<PathBuf, PluginCliError> {
    let folder = format!("componentize-js-{COMPONENTIZE_JS}");
    let ready = |dir: &Path| dir.join(".installed").is_file() && componentize_js_cli(dir).is_file();
    let prefix = ensure_tool(
        &folder,
        ready,
        |tmp| {
            std::fs::create_dir_all(tmp).map_err(|e| PluginCliError::io("create", tmp, e))?;
            run(
                &format!("npm install @bytecodealliance/componentize-js@{COMPONENTIZE_JS}"),
                Command::new("npm")
                    .args(["install", "--prefix"])
                    .arg(tmp)
                    .args(["--no-audit", "--no-fund", "--no-save", "--loglevel=error"])
                    .arg(format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS}")),
            )?;
            std::fs::write(tmp.join(".installed"), COMPONENTIZE_JS)
                .map_err(|e| PluginCliError::io("write", tmp, e))
        },
        &format!("installing componentize-js {COMPONENTIZE_JS} (JavaScript plugin builder, ~390 MB) with npm"),
    )?;
    Ok(componentize_js_cli(&prefix))
}

/// The module componentize-py wraps: imports the plugin's module (which
/// registers its functions at build time, so a call starts with them
/// ready) and exposes the SDK's export class.
fn python_main(module: &str) -> String {
    format!(
        "import composer_plugin\n\
         import {module}  # noqa: F401  (registers the plugin's functions)\n\
         \n\
         if not composer_plugin.functions():\n    \
             raise SystemExit(\"module `{module}` registers no functions: decorate them with @composer_plugin.function\")\n\
         WitWorld = composer_plugin.WitWorld\n"
    )
}

fn componentize_python(project: &Project, stage: &Stage) -> Result<PathBuf, PluginCliError> {
    let tool = componentize_py_tool()?;
    stage.copy_sources(project, "src")?;
    stage.write("sdk/composer_plugin.py", PYTHON_SDK)?;
    stage.write("main/composer_plugin_main.py", &python_main(&project.entry))?;
    stage.write("wit/plugin.wit", WIT)?;
    // An empty virtual environment: componentize-py bundles the
    // site-packages of $VIRTUAL_ENV, and must not bundle its own.
    let no_venv = stage.dir.join("no-venv");
    std::fs::create_dir_all(no_venv.join("lib").join("python").join("site-packages"))
        .map_err(|e| PluginCliError::io("create", &stage.dir, e))?;
    let out = stage.dir.join("out.wasm");
    run(
        "componentize-py",
        Command::new(&tool.python)
            .current_dir(&stage.dir)
            .env("VIRTUAL_ENV", &no_venv)
            .env("PYTHONPATH", tool.site.as_deref().unwrap_or(Path::new("")))
            // A Rust backtrace (componentize-py is Rust inside) would push
            // the Python error naming the file out of the message.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .args([
                "-c",
                "import sys\nfrom componentize_py import script\nsys.argv[0] = 'componentize-py'\nsys.exit(script())",
                "--quiet",
                "-d",
                "wit",
                "-w",
                "plugin",
                "componentize",
                "-p",
                "main",
                "-p",
                "src",
                "-p",
                "sdk",
                "composer_plugin_main",
                "-o",
            ])
            .arg(&out),
    )?;
    Ok(out)
}

/// The module componentize-js wraps: runs the plugin's module (which
/// registers its functions) and exports the SDK's `describe` and `call`.
fn js_main(entry: &str) -> String {
    format!("import \"./{entry}\";\nexport {{ describe, call }} from \"./composer-plugin.js\";\n")
}

fn componentize_js(project: &Project, stage: &Stage) -> Result<PathBuf, PluginCliError> {
    let cli = componentize_js_tool()?;
    stage.copy_sources(project, "src")?;
    stage.write("src/composer-plugin.js", JS_SDK)?;
    stage.write("src/__composer_main.js", &js_main(&project.entry))?;
    stage.write("wit/plugin.wit", WIT)?;
    let out = stage.dir.join("out.wasm");
    // Run from the sources folder: componentize-js maps the working folder
    // as the module root, so relative imports resolve. `http` and
    // `fetch-event` are off: a plugin has no network, and with them the
    // component would import wasi:http.
    run(
        "componentize-js",
        Command::new("node")
            .current_dir(stage.dir.join("src"))
            .arg(&cli)
            .arg("__composer_main.js")
            .arg("--wit")
            .arg(stage.dir.join("wit").join("plugin.wit"))
            .args(["--world-name", "plugin", "-d", "http", "fetch-event", "-o"])
            .arg(&out),
    )?;
    Ok(out)
}

fn ensure_wasm_target() -> Result<(), PluginCliError> {
    let spawn = |source| PluginCliError::Spawn {
        program: "rustup".into(),
        hint: install_hint("rustup"),
        source,
    };
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(spawn)?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("adding the wasm32-wasip2 target with rustup (first use only) ...");
    run(
        "rustup target add wasm32-wasip2",
        Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
    )
}

fn build_rust(project: &Project, out: Option<&Path>) -> Result<Built, PluginCliError> {
    let manifest = project.dir.join("Cargo.toml");
    ensure_wasm_target()?;
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .map_err(|source| PluginCliError::Spawn {
            program: "cargo".into(),
            hint: install_hint("cargo"),
            source,
        })?;
    if !status.success() {
        return Err(PluginCliError::ToolFailed {
            what: "cargo build".into(),
            status: status.to_string(),
            details: String::new(),
        });
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
        .unwrap_or_else(|| project.dir.join("target"));
    let release = target_dir.join("wasm32-wasip2").join("release");
    let made = release.join(format!("{}.wasm", project.name));
    if !made.is_file() {
        return Err(PluginCliError::NoComponent(release));
    }
    let component = match out {
        None => made,
        Some(out) => {
            std::fs::create_dir_all(out).map_err(|e| PluginCliError::io("create", out, e))?;
            let dest = out.join(format!("{}.wasm", project.name));
            std::fs::copy(&made, &dest).map_err(|e| PluginCliError::io("copy", &made, e))?;
            dest
        }
    };
    let size = file_size(&component);
    Ok(Built {
        component,
        size,
        rebuilt: true,
    })
}
