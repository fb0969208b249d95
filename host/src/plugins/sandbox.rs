//! The WASI context of one call: no ambient authority. No environment but
//! the variables granted to the plugin (its `secrets` and `env`), no
//! arguments, no sockets or name lookups, stdin empty,
//! stdout and stderr captured with a size cap, and no filesystem except the
//! granted folders. A folder is granted at the same path inside as outside,
//! so a path in a JSON value means the same thing on both sides; the grants
//! are enforced by cap-std (no `..`, absolute path or symlink escapes).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// A folder a call may use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub path: PathBuf,
    #[serde(default)]
    pub writable: bool,
}

/// Output captured from a guest stream, keeping at most `cap` bytes and
/// counting the rest (the guest never sees a write fail, so a chatty plugin
/// is not turned into a crashing one).
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Mutex<CaptureBuf>>,
}

#[derive(Default)]
struct CaptureBuf {
    kept: Vec<u8>,
    dropped: u64,
    cap: usize,
}

impl Capture {
    pub fn new(cap: usize) -> Self {
        Capture {
            inner: Arc::new(Mutex::new(CaptureBuf {
                cap,
                ..CaptureBuf::default()
            })),
        }
    }

    /// The captured text, and how many bytes were dropped past the cap.
    pub fn take(&self) -> (String, u64) {
        match self.inner.lock() {
            Ok(mut b) => (
                String::from_utf8_lossy(&std::mem::take(&mut b.kept)).into_owned(),
                b.dropped,
            ),
            Err(_) => (String::new(), 0),
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Ok(mut b) = self.inner.lock() {
            let room = b.cap.saturating_sub(b.kept.len());
            let keep = room.min(buf.len());
            b.kept.extend_from_slice(&buf[..keep]);
            b.dropped += (buf.len() - keep) as u64;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A run's granted folders, opened once and shared by the run's calls: a
/// map of 10,000 plugin calls would otherwise walk and open the same paths
/// 10,000 times (a sixth of a trivial call's cost). Sharing the handles
/// gives calls nothing of each other's: wasmtime-wasi only uses a
/// preopened folder as the base of `openat`-style calls, a guest cannot
/// close or replace the host's handle (dropping its descriptor drops a
/// reference), and listing a folder opens a descriptor of its own (so no
/// read position is shared). The handles live as long as the run.
#[derive(Default)]
pub struct OpenGrants {
    opened: Mutex<Vec<(Vec<Grant>, WasiFilesystemCtx)>>,
}

/// Grant sets kept per run: a run's calls use one or two (its plugins may
/// differ in configured folders); more are opened per call.
const OPEN_GRANT_SETS: usize = 4;

impl OpenGrants {
    /// The preopens for `grants`, opened now or earlier in this run.
    fn preopens(&self, grants: &[Grant]) -> Result<WasiFilesystemCtx, String> {
        if let Ok(opened) = self.opened.lock() {
            if let Some((_, fs)) = opened.iter().find(|(g, _)| g.as_slice() == grants) {
                return Ok(fs.clone());
            }
        }
        let fs = open_grants(grants)?;
        if let Ok(mut opened) = self.opened.lock() {
            if opened.len() < OPEN_GRANT_SETS {
                opened.push((grants.to_vec(), fs.clone()));
            }
        }
        Ok(fs)
    }
}

/// Opens `grants` (cap-std enforces them from here on).
fn open_grants(grants: &[Grant]) -> Result<WasiFilesystemCtx, String> {
    let mut b = WasiCtxBuilder::new();
    for grant in grants {
        let guest = grant.path.to_string_lossy().into_owned();
        let perms = if grant.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&grant.path, guest, perms)
            .map_err(|e| format!("cannot grant `{}`: {e}", grant.path.display()))?;
    }
    Ok(std::mem::take(b.build().filesystem()))
}

/// Builds the WASI context for one call; `opened` (the run's) saves opening
/// its folders again. (Sockets stay closed: outbound HTTP goes through
/// `wasi:http` and its policy, `outbound`.)
pub fn wasi_context(
    grants: &[Grant],
    opened: Option<&OpenGrants>,
    env: &[(String, String)],
    stdout: &Capture,
    stderr: &Capture,
) -> Result<WasiCtx, String> {
    let preopens = match opened {
        Some(opened) => opened.preopens(grants)?,
        None => open_grants(grants)?,
    };
    let mut b = WasiCtxBuilder::new();
    for (key, value) in env {
        b.env(key, value);
    }
    b.stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let mut ctx = b.build();
    *ctx.filesystem() = preopens;
    Ok(ctx)
}
