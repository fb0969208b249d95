//! Files runs write (audio, documents), by run and name. The embedded
//! default is a folder per run on the local disk; a shared folder serves
//! several processes on one machine, and an object store can implement the
//! same trait.

use std::path::{Component, Path, PathBuf};

pub trait BlobStore: Send + Sync {
    /// The folder a run writes its files into (created if needed).
    fn run_dir(&self, scope: &str, run_id: &str) -> std::io::Result<PathBuf>;
    /// A file a run wrote; None when there is no such file or the name
    /// tries to leave the run's folder.
    fn run_file(&self, scope: &str, run_id: &str, name: &str) -> Option<PathBuf>;
}

/// Run folders under one root: `ROOT/<scope>/<run id>/`.
pub struct FsBlobs {
    pub root: PathBuf,
}

impl BlobStore for FsBlobs {
    fn run_dir(&self, scope: &str, run_id: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(scope).join(run_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::canonicalize(&dir)
    }

    fn run_file(&self, scope: &str, run_id: &str, name: &str) -> Option<PathBuf> {
        if !is_plain_name(name) || !is_plain_name(run_id) {
            return None;
        }
        let path = self.root.join(scope).join(run_id).join(name);
        path.is_file().then_some(path)
    }
}

/// One path component, no `..`, no separators.
pub fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) && !name.contains('\\')
}
