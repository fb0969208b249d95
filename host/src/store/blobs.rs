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
    /// The files a run wrote, by name (none for an unknown run).
    fn run_files(&self, scope: &str, run_id: &str) -> Vec<BlobInfo>;
}

/// One file of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    pub bytes: u64,
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
        // Not through a link: a plugin may make one in its output folder,
        // pointing anywhere on the server's disk.
        let plain_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        plain_file.then_some(path)
    }

    fn run_files(&self, scope: &str, run_id: &str) -> Vec<BlobInfo> {
        if !is_plain_name(run_id) {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(self.root.join(scope).join(run_id)) else {
            return Vec::new();
        };
        let mut files: Vec<BlobInfo> = entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                Some(BlobInfo {
                    name: e.file_name().to_string_lossy().into_owned(),
                    bytes: meta.len(),
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_files_are_plain_files_inside_the_run_folder() {
        let root = std::env::temp_dir().join(format!("composer-blobs-{}", std::process::id()));
        let blobs = FsBlobs { root: root.clone() };
        let dir = blobs.run_dir("acme/runs", "run-1").unwrap_or_default();
        let outside = root.join("secret.txt");
        let _ = std::fs::write(&outside, "operator's file");
        let _ = std::fs::write(dir.join("speech.wav"), "RIFF");
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(&outside, dir.join("escape.txt"));

        assert_eq!(
            blobs.run_files("acme/runs", "run-1"),
            [BlobInfo {
                name: "speech.wav".into(),
                bytes: 4
            }]
        );
        assert!(blobs.run_file("acme/runs", "run-1", "speech.wav").is_some());
        for name in ["escape.txt", "../run-1/speech.wav", "missing.wav", ""] {
            assert_eq!(blobs.run_file("acme/runs", "run-1", name), None, "{name}");
        }
        assert!(blobs.run_files("acme/runs", "../acme").is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
