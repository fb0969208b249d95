//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/fixtures`, the root of every fixture file.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

/// A file or folder under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    fixtures().join(relative)
}

/// A recipe of the corpus (`tests/fixtures/corpus`).
pub fn corpus(relative: &str) -> PathBuf {
    fixture("corpus").join(relative)
}

/// A fresh temporary folder, removed when the value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("composer-test-")
        .tempdir()
        .expect("cannot create a temporary folder")
}

/// Writes `text` to `dir/name` (creating parent folders) and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("cannot create folder");
    }
    std::fs::write(&path, text).expect("cannot write file");
    path
}

/// What a run of the `composer` binary did.
#[derive(Debug)]
pub struct Output {
    /// The exit code (None if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Everything the run printed, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `composer` binary built for these tests with `args`, in a fresh
/// empty working folder (so no `composer.toml` is picked up and nothing is
/// written into the source tree).
pub fn composer<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let dir = temp_dir();
    composer_in(dir.path(), args)
}

/// The `composer` binary built for these tests, to run in `cwd`, seeing
/// only the plugins a test sets up: not the ones `scripts/setup.sh`
/// installed into this machine's user folder (loading every one of those
/// in each process made CI slow enough to miss deadlines), nor an
/// inherited search path or log filter.
pub fn composer_command(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_composer"));
    command
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env(
            "XDG_DATA_HOME",
            std::env::temp_dir().join("composer-tests-no-user-data"),
        )
        .env("COMPOSER_PLUGIN_PATH", "");
    command
}

/// Runs the `composer` binary with `args` in the working folder `cwd`.
pub fn composer_in<I, S>(cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = composer_command(cwd)
        .args(args)
        .output()
        .expect("cannot run the composer binary");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A recipe given inline that must load; panics with every diagnostic
/// otherwise. Relative paths in it start at `base_dir`.
pub fn load_yaml(yaml: &str, base_dir: &Path) -> std::sync::Arc<composer::recipe::Recipe> {
    match composer::recipe::load_str(yaml, composer::recipe::document::Format::Yaml, base_dir) {
        Ok(loaded) => loaded.recipe,
        Err(failure) => panic!("test recipe does not load:\n{failure}\n---\n{yaml}"),
    }
}
