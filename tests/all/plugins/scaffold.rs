//! `composer plugin new NAME --lang python|js` → `plugin test` (which
//! builds) → `plugin build` (up to date) → `plugin inspect` → `plugin
//! install` (into the user's plugin folder) → `composer run` of a recipe
//! calling the new function, from an empty folder with no config. The build
//! tools come from the folder `scripts/build-plugins.sh` installed them in
//! (`COMPOSER_TOOLS_DIR`, default `.composer/tools`), so nothing is
//! downloaded here. (Rust: `cli::plugin_new_and_build_make_a_callable_component`.)

use super::{bin_with_env, dist, repo, Env};
use serde_json::Value;
use std::path::PathBuf;

/// Where the Python and JavaScript build tools are.
fn tools() -> PathBuf {
    // Installed (with the example components) by the build script.
    let _ = dist();
    std::env::var_os("COMPOSER_TOOLS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".composer").join("tools"))
}

fn scaffold_build_and_run(lang: &str) {
    let env = Env::new();
    let name = format!("count_{lang}");
    let dir = env.root.join(&name);
    let tools = tools().to_string_lossy().into_owned();
    let data = env.root.join("data").to_string_lossy().into_owned();
    let composer = |args: &[&str]| {
        let out = bin_with_env(
            &env.root,
            args,
            &[("COMPOSER_TOOLS_DIR", &tools), ("XDG_DATA_HOME", &data)],
        );
        assert_eq!(out.code, Some(0), "{args:?}\n{}", out.describe());
        out
    };
    let dir_arg = dir.to_string_lossy().into_owned();
    composer(&["plugin", "new", &name, "--lang", lang, "--dir", &dir_arg]);

    let tested = composer(&["plugin", "test", &dir_arg]);
    assert!(
        tested
            .stdout
            .contains(&format!("{name}: 2 passed, 0 failed")),
        "{}",
        tested.describe()
    );
    let component = dir.join("dist").join(format!("{name}.wasm"));
    assert!(component.is_file(), "{}", component.display());
    let again = composer(&["plugin", "build", &dir_arg]);
    assert!(again.stdout.contains("up to date"), "{}", again.describe());

    let inspected = composer(&["plugin", "inspect", &component.to_string_lossy()]);
    assert!(
        inspected
            .stdout
            .contains(&format!("{name} (pure) [text]: Counts the words of `text`")),
        "{}",
        inspected.describe()
    );
    let exports: Vec<&str> = inspected
        .stdout
        .lines()
        .skip_while(|l| l.trim() != "exports:")
        .skip(1)
        .map(str::trim)
        .collect();
    // (componentize-py also exports an empty `exports` instance.)
    assert!(
        exports.ends_with(&["describe", "call"]),
        "{}",
        inspected.describe()
    );

    let installed = composer(&["plugin", "install", &dir_arg]);
    assert!(
        std::path::Path::new(&data)
            .join(format!("composer/plugins/{name}.wasm"))
            .is_file(),
        "{}",
        installed.describe()
    );

    let listed = composer(&["plugin", "list"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("project") && l.contains(&name)),
        "{}",
        listed.describe()
    );

    let recipe = env.root.join("count.yaml");
    std::fs::write(
        &recipe,
        format!(
            "name: count\nnodes:\n  - id: counted\n    type: function_task\n    function_identifier: {name}\n    input:\n      text: \"one two three four\"\n"
        ),
    )
    .unwrap();
    let ran = composer(&[
        "run",
        &recipe.to_string_lossy(),
        "--model",
        "mock/echo",
        "--json",
        "--out",
        &env.out.to_string_lossy(),
    ]);
    let outputs: Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", ran.describe()));
    assert_eq!(outputs["counted"]["words"], 4, "{outputs}");

    // An edit is seen: the next test rebuilds, and a broken module is a
    // build error that says where.
    let module = if lang == "python" {
        "functions.py"
    } else {
        "functions.js"
    };
    let source = std::fs::read_to_string(dir.join(module)).unwrap();
    std::fs::write(dir.join(module), format!("{source}\nthis is not code (\n")).unwrap();
    let broken = bin_with_env(
        &env.root,
        &["plugin", "build", &dir_arg],
        &[("COMPOSER_TOOLS_DIR", &tools)],
    );
    assert_eq!(broken.code, Some(1), "{}", broken.describe());
    assert!(
        broken.stderr.contains("componentize") && broken.stderr.contains(module),
        "{}",
        broken.describe()
    );
}

#[test]
fn a_python_plugin_from_scratch_builds_tests_and_runs() {
    scaffold_build_and_run("python");
}

#[test]
fn a_javascript_plugin_from_scratch_builds_tests_and_runs() {
    scaffold_build_and_run("js");
}
