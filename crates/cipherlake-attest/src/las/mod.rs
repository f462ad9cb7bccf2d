//! The LAS (local attestation service), the node agent of simulation mode.
//!
//! A workload connects to the LAS's Unix socket and sends 64 bytes of report data. The LAS
//! takes the peer's pid from the socket (SO_PEERCRED), hashes `/proc/PID/exe` with SHA-384 and
//! signs a [`crate::sim`] report with its platform key, so the workload cannot choose its own
//! measurement.
//!
//! Simulation mode has no memory protection: a local attacker who can ptrace or replace the
//! workload (same user, or root) can use its reports. The LAS defends against workloads
//! claiming another program's measurement, not against the host.

mod client;
mod key;
mod measure;
pub mod protocol;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

pub use client::request_report;
pub use key::{init_key, load_key};
pub use measure::hash_file;

use crate::sim::PlatformKey;
use measure::Measurer;
use protocol::{Reply, Request};

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the LAS, its key files and its client.
#[derive(Debug, thiserror::Error)]
pub enum LasError {
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The platform key file is unusable.
    #[error("platform key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The LAS refused the request.
    #[error("the LAS refused the request: {0}")]
    Refused(String),
    /// The peer did not speak the protocol.
    #[error("LAS protocol error: {0}")]
    Protocol(String),
}

impl LasError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LasError {
        let context = context.into();
        move |source| LasError::Io { context, source }
    }
}

/// A bound LAS, ready to [`run`](Las::run).
pub struct Las {
    listener: UnixListener,
    state: Arc<State>,
}

struct State {
    key: PlatformKey,
    svn: u32,
    measurer: Measurer,
}

impl Las {
    /// Binds the LAS to `socket_path` and serves forever.
    pub async fn serve(platform_key: PlatformKey, socket_path: &Path) -> Result<(), LasError> {
        Self::bind(platform_key, socket_path)?.run().await
    }

    /// Binds the socket. A stale socket file left by a stopped LAS is replaced; a live one is
    /// an error. Must be called within a tokio runtime.
    pub fn bind(platform_key: PlatformKey, socket_path: &Path) -> Result<Self, LasError> {
        remove_stale_socket(socket_path)?;
        let listener = UnixListener::bind(socket_path)
            .map_err(LasError::io(format!("binding {}", socket_path.display())))?;
        Ok(Las {
            listener,
            state: Arc::new(State {
                key: platform_key,
                svn: 0,
                measurer: Measurer::default(),
            }),
        })
    }

    /// Sets the SVN written into reports (default 0).
    pub fn with_svn(mut self, svn: u32) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.svn = svn;
        }
        self
    }

    /// Accepts connections forever, each served on its own task.
    pub async fn run(self) -> Result<(), LasError> {
        tracing::info!(
            platform_key = %self.state.key.public_key(),
            "LAS serving"
        );
        loop {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .map_err(LasError::io("accepting a LAS connection"))?;
            let state = Arc::clone(&self.state);
            tokio::spawn(async move { state.handle(stream).await });
        }
    }
}

impl State {
    async fn handle(&self, mut stream: UnixStream) {
        let reply = match self.answer(&mut stream).await {
            Ok(report) => Reply::Report(hex::encode(report)),
            Err(reason) => {
                tracing::warn!(%reason, "LAS request refused");
                Reply::Error(reason)
            }
        };
        if let Ok(body) = serde_json::to_vec(&reply) {
            // The client may have gone away; nothing to do about it.
            let _ = protocol::write_frame(&mut stream, &body).await;
        }
    }

    async fn answer(&self, stream: &mut UnixStream) -> Result<Vec<u8>, String> {
        let pid = stream
            .peer_cred()
            .map_err(|e| format!("cannot identify the peer: {e}"))?
            .pid()
            .ok_or("the peer's pid is unknown")?;
        let frame = tokio::time::timeout(REQUEST_TIMEOUT, protocol::read_frame(stream))
            .await
            .map_err(|_| "timed out waiting for the request".to_string())?
            .map_err(|e| format!("bad request frame: {e}"))?;
        let request: Request =
            serde_json::from_slice(&frame).map_err(|e| format!("bad request: {e}"))?;
        let report_data: [u8; 64] = hex::decode(request.report_data.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("report_data must be 128 hex digits (64 bytes)")?;
        let measurement = self
            .measurer
            .measure(pid)
            .await
            .map_err(|e| format!("cannot measure process {pid}: {e}"))?;
        Ok(self
            .key
            .sign_report(measurement, report_data, self.svn, crate::time::now_unix()))
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), LasError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(LasError::Io {
            context: format!("binding {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(LasError::Io {
            context: format!("binding {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another LAS is serving on this socket",
            ),
        });
    }
    std::fs::remove_file(path).map_err(LasError::io(format!("removing stale {}", path.display())))
}
