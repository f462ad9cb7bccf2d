//! Attesters: collect evidence binding 64 bytes of report data on the platform we run on.

mod gramine;
mod tsm;

use std::path::PathBuf;

pub use gramine::GramineAttester;
pub use tsm::TsmAttester;

use crate::Evidence;
use crate::las::LasError;

/// Default configfs-tsm report directory.
pub const DEFAULT_TSM_ROOT: &str = "/sys/kernel/config/tsm/report";
/// Default Gramine attestation pseudo-filesystem.
pub const DEFAULT_GRAMINE_ROOT: &str = "/dev/attestation";
/// Default LAS socket.
pub const DEFAULT_LAS_SOCKET: &str = "/run/cipherlake/las.sock";

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// No attestation interface was found.
    #[error("no attestation interface available; looked for: {}", looked_for.join("; "))]
    NoneAvailable {
        /// Every place that was checked, with what was found there.
        looked_for: Vec<String>,
    },
    /// A file of the interface could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The interface answered something unexpected.
    #[error("{0}")]
    Interface(String),
    /// The LAS could not produce a report.
    #[error(transparent)]
    Las(#[from] LasError),
}

/// Where to look for attestation interfaces.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// configfs-tsm report directory.
    pub tsm_root: PathBuf,
    /// Gramine's attestation directory.
    pub gramine_root: PathBuf,
    /// LAS socket for simulation mode.
    pub las_socket: PathBuf,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            tsm_root: DEFAULT_TSM_ROOT.into(),
            gramine_root: DEFAULT_GRAMINE_ROOT.into(),
            las_socket: DEFAULT_LAS_SOCKET.into(),
        }
    }
}

/// An available attestation interface.
#[derive(Debug, Clone)]
pub enum Attester {
    /// Linux configfs-tsm (SEV-SNP and TDX guests).
    ConfigfsTsm(TsmAttester),
    /// Gramine's `/dev/attestation` (SGX DCAP).
    Gramine(GramineAttester),
    /// The LAS (simulation mode).
    Sim {
        /// The LAS socket.
        socket: PathBuf,
    },
}

impl Attester {
    /// Collects evidence binding `report_data`.
    pub async fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        match self {
            Attester::ConfigfsTsm(t) => {
                let t = t.clone();
                let data = *report_data;
                blocking(move || t.attest(&data)).await
            }
            Attester::Gramine(g) => {
                let g = g.clone();
                let data = *report_data;
                blocking(move || g.attest(&data)).await
            }
            Attester::Sim { socket } => Ok(crate::las::request_report(socket, report_data).await?),
        }
    }
}

async fn blocking(
    f: impl FnOnce() -> Result<Evidence, AttestError> + Send + 'static,
) -> Result<Evidence, AttestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AttestError::Interface(format!("attester task failed: {e}")))?
}

/// Finds the first available interface: configfs-tsm, then Gramine, then the LAS.
pub fn detect(config: &DetectConfig) -> Result<Attester, AttestError> {
    let mut looked_for = Vec::new();
    if config.tsm_root.is_dir() {
        return Ok(Attester::ConfigfsTsm(TsmAttester::new(&config.tsm_root)));
    }
    looked_for.push(format!(
        "configfs-tsm at {} (not a directory)",
        config.tsm_root.display()
    ));
    match GramineAttester::probe(&config.gramine_root) {
        Ok(g) => return Ok(Attester::Gramine(g)),
        Err(reason) => looked_for.push(format!(
            "Gramine at {} ({reason})",
            config.gramine_root.display()
        )),
    }
    if is_socket(&config.las_socket) {
        return Ok(Attester::Sim {
            socket: config.las_socket.clone(),
        });
    }
    looked_for.push(format!(
        "LAS socket at {} (no socket)",
        config.las_socket.display()
    ));
    Err(AttestError::NoneAvailable { looked_for })
}

fn is_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
    move |source| AttestError::Io {
        path: path.to_path_buf(),
        source,
    }
}
