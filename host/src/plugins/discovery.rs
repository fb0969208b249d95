//! Where plugins are looked for, so that a recipe that names a function
//! validates and runs wherever `composer` is started.
//!
//! The search path, first match of a function name wins (a name offered
//! again later is shadowed, with a warning unless the two files are the
//! same component):
//!
//! 1. `$COMPOSER_PLUGIN_PATH`: folders separated like `PATH` (`:`), the
//!    caller's explicit choice for this invocation;
//! 2. `[plugins] paths` of the config (relative to the config file;
//!    default `plugins/dist` in the working directory);
//! 3. the recipe's folder and each folder above it: `plugins/` and
//!    `plugins/dist/` in each, nearest first (a project's own plugins
//!    beside its recipes, or the repository's built ones);
//! 4. the user's plugin folder, `$XDG_DATA_HOME/composer/plugins` (default
//!    `~/.local/share/composer/plugins`), where
//!    `scripts/build-plugins.sh --install` puts the standard plugins and
//!    `composer plugin install` a user's own;
//! 5. `share/composer/plugins` beside the installed executable
//!    (`<prefix>/bin/composer` → `<prefix>/share/composer/plugins`).
//!
//! Folders are read non-recursively (`.wasm` files directly inside), so
//! `plugins/dist/test/` (test plugins) is never on the path by accident.
//! Missing folders are skipped silently except configured ones.

use std::path::{Path, PathBuf};

/// The variable holding extra plugin folders.
pub const PLUGIN_PATH_VAR: &str = "COMPOSER_PLUGIN_PATH";

/// The user's plugin folder: `$XDG_DATA_HOME/composer/plugins`, else
/// `$HOME/.local/share/composer/plugins`.
pub fn user_plugin_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(data.join("composer").join("plugins"))
}

/// `share/composer/plugins` beside the running executable's `bin/`.
fn bundled_plugin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let prefix = exe.parent()?.parent()?;
    Some(prefix.join("share").join("composer").join("plugins"))
}

/// The full search path for a run of the recipe in `recipe_dir` (None: no
/// recipe, e.g. `composer plugin list`), given the configured folders.
pub fn search_path(configured: &[PathBuf], recipe_dir: Option<&Path>) -> Vec<PathBuf> {
    let env = std::env::var_os(PLUGIN_PATH_VAR);
    let env_paths: Vec<PathBuf> = env
        .as_deref()
        .map(|v| {
            std::env::split_paths(v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    search_path_from(
        &env_paths,
        configured,
        recipe_dir,
        user_plugin_dir(),
        bundled_plugin_dir(),
    )
}

/// `search_path` with every input given (tests).
pub fn search_path_from(
    env_paths: &[PathBuf],
    configured: &[PathBuf],
    recipe_dir: Option<&Path>,
    user_dir: Option<PathBuf>,
    bundled_dir: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut push = |path: PathBuf, keep_missing: bool| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.contains(&key) {
            return;
        }
        if keep_missing || path.exists() {
            seen.push(key);
            out.push(path);
        }
    };
    for p in env_paths {
        push(p.clone(), true);
    }
    for p in configured {
        push(p.clone(), true);
    }
    if let Some(dir) = recipe_dir {
        let start = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        for folder in start.ancestors() {
            push(folder.join("plugins"), false);
            push(folder.join("plugins").join("dist"), false);
        }
    }
    for p in [user_dir, bundled_dir].into_iter().flatten() {
        push(p, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_env_config_recipe_folders_user_and_duplicates_go() {
        let root = tempfile_root();
        let project = root.join("project");
        let recipes = project.join("recipes").join("deep");
        let dist = project.join("plugins").join("dist");
        let beside = recipes.join("plugins");
        let user = root.join("user");
        for d in [&recipes, &dist, &beside, &user] {
            std::fs::create_dir_all(d).unwrap();
        }
        let env = root.join("env");
        let path = search_path_from(
            std::slice::from_ref(&env),
            &[PathBuf::from("configured"), dist.clone()],
            Some(&recipes),
            Some(user.clone()),
            Some(root.join("missing-bundled")),
        );
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        assert_eq!(path[0], env, "env entries are kept even when missing");
        assert_eq!(path[1], PathBuf::from("configured"));
        assert_eq!(path[2], dist, "configured before the recipe's folders");
        assert_eq!(path[3], canon(&beside), "the recipe's own plugins/ next");
        assert_eq!(path.last(), Some(&user));
        assert_eq!(
            path.iter().filter(|p| canon(p) == canon(&dist)).count(),
            1,
            "a folder reached twice is searched once: {path:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    fn tempfile_root() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "composer-discovery-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::canonicalize(dir).unwrap()
    }
}
