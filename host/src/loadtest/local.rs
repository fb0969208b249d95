//! Runs in this process: every user shares one `Composer` (provider
//! clients, plugin engine, cache) and one recipe, loaded once. Each run
//! writes into a folder of its own under a temporary root that is removed
//! run by run (unless the caller gave an output folder to keep).

use super::tally::RunTally;
use super::target::{Outcome, Sample, Target};
use super::LoadError;
use crate::app::{Composer, RunOptions};
use crate::cache::CacheMode;
use crate::engine::error::{ErrorKind, RunError};
use crate::engine::runner::RunScope;
use crate::recipe::model::{ModelSpec, Recipe};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where runs write their files.
pub enum OutRoot {
    /// A folder the caller keeps (`--out`): run folders stay.
    Keep(PathBuf),
    /// A temporary folder: each run's folder is removed when it ends, the
    /// folder itself when the target is dropped.
    Temporary(PathBuf),
}

impl OutRoot {
    /// A fresh folder in memory (`/dev/shm`) where there is one and
    /// `TMPDIR` does not say otherwise, else in the system's temporary
    /// folder: making and removing a folder per run on a disk costs more
    /// than a zero-latency run itself.
    pub fn temporary() -> Result<OutRoot, LoadError> {
        let shm = Path::new("/dev/shm");
        let base = if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "composer-load-test-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).map_err(|source| LoadError::OutDir {
            path: path.clone(),
            source,
        })?;
        Ok(OutRoot::Temporary(path))
    }

    pub fn path(&self) -> &Path {
        match self {
            OutRoot::Keep(p) | OutRoot::Temporary(p) => p,
        }
    }
}

impl Drop for OutRoot {
    fn drop(&mut self) {
        if let OutRoot::Temporary(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// What every run of a local load test shares.
pub struct LocalTarget {
    pub app: Arc<Composer>,
    pub recipe: Arc<Recipe>,
    pub model_override: Option<ModelSpec>,
    pub out: OutRoot,
    pub cache_mode: CacheMode,
    pub allow_extra_inputs: bool,
    /// Where the recipe comes from (stored with runs when the app records
    /// them).
    pub source: serde_json::Value,
}

/// Most runs write no file: one `rmdir` removes their empty folder; a
/// folder with files in it is removed whole.
fn remove_run_folder(dir: &Path) {
    if std::fs::remove_dir(dir).is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A failed run's kind, as the report names it.
fn kind_of(e: &RunError) -> String {
    e.kind().as_str().to_string()
}

#[async_trait]
impl Target for LocalTarget {
    async fn run_once(
        &self,
        inputs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Sample, LoadError> {
        let tally = RunTally::new(self.recipe.clone());
        let options = RunOptions {
            model_override: self.model_override.clone(),
            out_root: self.out.path().to_path_buf(),
            replies: Default::default(),
            events: tally.clone(),
            allow_extra_inputs: self.allow_extra_inputs,
            cache_mode: self.cache_mode,
            human: None,
            local_functions: None,
            plugin_policy: None,
        };
        let scope = RunScope {
            source: self.source.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let result = self
            .app
            .run(self.recipe.clone(), inputs, options, scope)
            .await;
        let latency = started.elapsed();
        match result {
            Ok(outcome) => {
                if matches!(self.out, OutRoot::Temporary(_)) {
                    remove_run_folder(&outcome.out_dir);
                }
                let status = match &outcome.error {
                    None => Outcome::Succeeded,
                    Some(e) => Outcome::Failed(kind_of(e)),
                };
                let mut sample = Sample::new(status, latency);
                tally.fill(&mut sample);
                Ok(sample)
            }
            // Inputs may be bad for one line of an inputs file only: that
            // run fails. Anything else (unknown function or provider, a
            // missing key) would fail every run: the test stops.
            Err(not_started) if not_started.0.kind() == ErrorKind::InvalidInput => Ok(Sample::new(
                Outcome::Failed(kind_of(&not_started.0)),
                latency,
            )),
            Err(not_started) => Err(LoadError::NotStarted(not_started.0.to_string())),
        }
    }

    fn mode(&self) -> &'static str {
        "local"
    }

    fn recipe(&self) -> String {
        self.recipe.name.clone()
    }
}
