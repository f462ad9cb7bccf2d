//! The LAS (local attestation service), the node agent of simulation mode.
//!
//! A workload connects to the LAS's Unix socket and sends 64 bytes of report data. The LAS
//! takes the peer's pid from the socket (SO_PEERCRED), hashes `/proc/PID/exe` with SHA-384 and
//! signs a [`crate::sim`] report with its platform key, so the workload cannot choose its own
//! measurement.
//!
//! The LAS measures the caller twice: when it accepts the connection and again right before it
//! signs, and refuses if the executable behind the pid changed in between (device, inode or
//! hash), which catches a caller that execs another program after connecting. The socket is
//! created with mode 0660, optionally owned by a chosen group, before it starts listening.
//!
//! Simulation mode has no memory protection: a local attacker who can ptrace or replace the
//! workload (same user, or root) can use its reports, and a process that execs a trusted
//! program before the LAS accepts, keeping the socket in a forked child, is not caught. The LAS
//! defends against workloads claiming another program's measurement, not against the host; see
//! the threat model in `docs/policy.md`.

mod client;
mod key;
mod measure;
pub mod protocol;
#[cfg(test)]
mod tests;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

pub use client::{request_hcl_report, request_report};
pub use key::{init_key, load_key};
pub use measure::hash_file;

use crate::sim::PlatformKey;
use measure::{Executable, Measurer};
use protocol::{Reply, ReportKind, Request};

use crate::tpm::device::{Tpm, TpmPath};
use crate::vtpm::{HclReport, ReportType, runtime_claims};

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Mode of the LAS socket: its owner and its group may connect, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// Connections the socket queues before the LAS accepts them.
const BACKLOG: i32 = 1024;

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
    /// sim-vtpm: the TPM whose attestation key and user data the HCL reports carry.
    tpm: Option<TpmPath>,
    /// TEE claims sim reports emulate (version 2), for testing policies' identity fields.
    emulated: Option<crate::sim::Emulated>,
    /// Test seam: called with the peer's pid after the measurement at accept, before the
    /// request is read.
    #[cfg(test)]
    after_accept: Option<Box<dyn Fn(i32) + Send + Sync>>,
}

impl Las {
    /// Binds the LAS to `socket_path` and serves forever.
    pub async fn serve(platform_key: PlatformKey, socket_path: &Path) -> Result<(), LasError> {
        Self::bind(platform_key, socket_path)?.run().await
    }

    /// Binds the socket with mode 0660 in the LAS's own group; see
    /// [`bind_with_group`](Las::bind_with_group).
    pub fn bind(platform_key: PlatformKey, socket_path: &Path) -> Result<Self, LasError> {
        Self::bind_with_group(platform_key, socket_path, None)
    }

    /// Binds the socket, sets its mode to [`SOCKET_MODE`] (0660, whatever the umask) and, with
    /// `group`, gives it to that group, all before it listens, so no one else can connect in
    /// between. A stale socket file left by a stopped LAS is replaced; a live one is an error.
    /// Must be called within a tokio runtime.
    pub fn bind_with_group(
        platform_key: PlatformKey,
        socket_path: &Path,
        group: Option<u32>,
    ) -> Result<Self, LasError> {
        remove_stale_socket(socket_path)?;
        let listener = bind_socket(socket_path, group)?;
        Ok(Las {
            listener,
            state: Arc::new(State {
                key: platform_key,
                svn: 0,
                measurer: Measurer::default(),
                tpm: None,
                emulated: None,
                #[cfg(test)]
                after_accept: None,
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

    /// Also makes sim-vtpm HCL reports over this TPM's attestation key (persistent handle
    /// 0x81000003) and the user data written to its NV index 0x01400002.
    pub fn with_tpm(mut self, tpm: TpmPath) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.tpm = Some(tpm);
        }
        self
    }

    /// Makes sim reports emulate these TEE claims (version 2 reports; sim-vtpm reports never
    /// do). The evidence stays `sim`.
    pub fn with_emulated(mut self, emulated: crate::sim::Emulated) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.emulated = Some(emulated);
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
        let at_accept = self
            .measurer
            .measure(pid)
            .await
            .map_err(|e| format!("cannot measure process {pid}: {e}"))?;
        #[cfg(test)]
        if let Some(hook) = &self.after_accept {
            hook(pid);
        }
        let frame = tokio::time::timeout(REQUEST_TIMEOUT, protocol::read_frame(stream))
            .await
            .map_err(|_| "timed out waiting for the request".to_string())?
            .map_err(|e| format!("bad request frame: {e}"))?;
        let request: Request =
            serde_json::from_slice(&frame).map_err(|e| format!("bad request: {e}"))?;
        let vtpm = match request.kind {
            ReportKind::Sim => None,
            ReportKind::SimVtpm => Some(self.tpm_state().await?),
        };
        let report_data: [u8; 64] = match &vtpm {
            Some(state) => state.report_data(),
            None => request
                .report_data
                .as_deref()
                .and_then(|text| hex::decode(text.trim()).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or("report_data must be 128 hex digits (64 bytes)")?,
        };
        let before_signing = self
            .measurer
            .measure(pid)
            .await
            .map_err(|e| format!("cannot measure process {pid} before signing: {e}"))?;
        same_executable(&at_accept, &before_signing)
            .map_err(|reason| format!("process {pid}: {reason}"))?;
        let emulated = match vtpm {
            None => self.emulated.as_ref(),
            Some(_) => None,
        };
        let report = self.key.sign_emulating(
            before_signing.hash,
            report_data,
            self.svn,
            crate::time::now_unix(),
            emulated,
        );
        match vtpm {
            None => Ok(report),
            Some(state) => HclReport::build(ReportType::Sim, &report, &state.runtime_claims),
        }
    }

    /// Reads what a sim-vtpm report carries from the TPM.
    async fn tpm_state(&self) -> Result<SimVtpmClaims, String> {
        let tpm = self
            .tpm
            .clone()
            .ok_or("this LAS makes no sim-vtpm reports: it was started without a TPM")?;
        tokio::task::spawn_blocking(move || {
            let fail = |e: crate::tpm::device::TpmError| format!("sim-vtpm: {e}");
            let mut device = Tpm::open(&tpm).map_err(fail)?;
            let user_data = device
                .nv_read(crate::attester::REPORT_DATA_INDEX)
                .map_err(fail)?;
            let (modulus, exponent) = device
                .rsa_public(crate::attester::AK_HANDLE)
                .map_err(fail)?;
            let vm_configuration = serde_json::json!({
                "sim-vtpm": true,
                "tpm": tpm.to_string(),
            });
            Ok(SimVtpmClaims {
                runtime_claims: runtime_claims::document(
                    &modulus,
                    &exponent,
                    &vm_configuration,
                    &user_data,
                ),
            })
        })
        .await
        .map_err(|e| format!("sim-vtpm task failed: {e}"))?
    }
}

/// The runtime claims of a sim-vtpm report, as the paravisor would write them.
struct SimVtpmClaims {
    runtime_claims: Vec<u8>,
}

impl SimVtpmClaims {
    /// The hardware report binds SHA-256 of the runtime claims, then zeros (as on Azure).
    fn report_data(&self) -> [u8; 64] {
        use sha2::Digest as _;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&sha2::Sha256::digest(&self.runtime_claims));
        out
    }
}

/// Checks that the caller's executable measured at accept is the one measured before signing:
/// the same file (device and inode) with the same content (hash).
fn same_executable(at_accept: &Executable, before_signing: &Executable) -> Result<(), String> {
    if (at_accept.dev, at_accept.ino) != (before_signing.dev, before_signing.ino) {
        return Err(format!(
            "the caller's executable changed between accept and signing (exec after connect?): \
             device {} inode {} at accept, device {} inode {} before signing",
            at_accept.dev, at_accept.ino, before_signing.dev, before_signing.ino
        ));
    }
    if at_accept.hash != before_signing.hash {
        return Err(
            "the caller's executable changed between accept and signing (its content was \
             rewritten)"
                .to_string(),
        );
    }
    Ok(())
}

/// Creates the listening socket: bind, chown to `group`, chmod [`SOCKET_MODE`], then listen.
/// Until `listen`, connecting fails, so the socket is never reachable with other permissions.
fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, LasError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let context = || format!("binding {}", path.display());
    let address = SockAddr::unix(path).map_err(LasError::io(context()))?;
    // socket2 creates the socket close-on-exec.
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(LasError::io(context()))?;
    socket.bind(&address).map_err(LasError::io(context()))?;
    let prepared = (|| {
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| LasError::Io {
                context: format!(
                    "giving {} to group {gid} (the LAS must run as root or as a member of \
                     the group)",
                    path.display()
                ),
                source,
            })?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
            LasError::io(format!(
                "setting mode {SOCKET_MODE:o} on {}",
                path.display()
            )),
        )?;
        socket
            .listen(BACKLOG)
            .and_then(|()| socket.set_nonblocking(true))
            .map_err(LasError::io(format!("listening on {}", path.display())))?;
        UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
            .map_err(LasError::io(format!("listening on {}", path.display())))
    })();
    if prepared.is_err() {
        // Leave no half-configured socket file behind.
        let _ = std::fs::remove_file(path);
    }
    prepared
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
