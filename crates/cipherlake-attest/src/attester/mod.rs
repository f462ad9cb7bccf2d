//! Attesters: collect evidence binding 64 bytes of report data on the platform we run on.

mod gramine;
mod ioctl;
mod sev_guest;
mod tdx_guest;
mod tsm;
mod vtpm;

use std::path::PathBuf;

pub use gramine::GramineAttester;
pub use sev_guest::{
    DEFAULT_SEV_GUEST_DEVICE, DerivedKeyBinding, SevGuestAttester, SevGuestEvidence, derive_key,
    parse_report_response, vek_from_cert_table,
};
pub use tdx_guest::{DEFAULT_TDX_GUEST_DEVICE, TDREPORT_LEN, TdxGuestAttester};
pub use tsm::TsmAttester;
pub use vtpm::{AK_HANDLE, HCL_REPORT_INDEX, HclSource, REPORT_DATA_INDEX, VtpmAttester};

use crate::Evidence;
use crate::las::LasError;
use crate::tpm::device::{DEFAULT_TPM, Tpm, TpmPath};

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
    /// The SEV-SNP guest device.
    pub sev_guest: PathBuf,
    /// The TDX guest device.
    pub tdx_guest: PathBuf,
    /// The TPM, when chosen explicitly (`None`: look at [`DEFAULT_TPM`] for an Azure vTPM).
    /// An explicit TPM beside a LAS socket means sim-vtpm.
    pub tpm: Option<TpmPath>,
    /// Where the VCEK or TD quote of an Azure confidential VM comes from (none by default:
    /// evidence then carries no VCEK, and TDX cannot attest).
    pub platform_endpoint: Option<String>,
    /// Gramine's attestation directory.
    pub gramine_root: PathBuf,
    /// LAS socket for simulation mode.
    pub las_socket: PathBuf,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            tsm_root: DEFAULT_TSM_ROOT.into(),
            sev_guest: DEFAULT_SEV_GUEST_DEVICE.into(),
            tdx_guest: DEFAULT_TDX_GUEST_DEVICE.into(),
            tpm: None,
            platform_endpoint: None,
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
    /// `/dev/sev-guest` (SEV-SNP guests without configfs-tsm, AKS confidential containers).
    SevGuest(SevGuestAttester),
    /// A vTPM: an Azure confidential VM's, or sim-vtpm's (the LAS makes the HCL report).
    Vtpm(VtpmAttester),
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
            Attester::SevGuest(a) => {
                let a = a.clone();
                let data = *report_data;
                blocking(move || a.attest(&data)).await
            }
            Attester::Vtpm(v) => v.attest(report_data).await,
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

/// Finds the first available interface, in this order, naming every place it looked:
///
/// 1. configfs-tsm (SEV-SNP and TDX guests, Linux 6.7+);
/// 2. `/dev/sev-guest` (SEV-SNP guests without configfs-tsm);
/// 3. `/dev/tdx_guest` is noted, not used: a TDREPORT becomes a quote only through
///    configfs-tsm, which step 1 prefers;
/// 4. an Azure vTPM: the TPM (`/dev/tpmrm0` unless chosen) holding the HCL report index;
/// 5. Gramine's `/dev/attestation` (SGX);
/// 6. the LAS socket: sim-vtpm when a TPM was chosen explicitly, else sim.
pub fn detect(config: &DetectConfig) -> Result<Attester, AttestError> {
    let mut looked_for = Vec::new();
    if config.tsm_root.is_dir() {
        return Ok(Attester::ConfigfsTsm(TsmAttester::new(&config.tsm_root)));
    }
    looked_for.push(format!(
        "configfs-tsm at {} (not a directory)",
        config.tsm_root.display()
    ));
    if config.sev_guest.exists() {
        return Ok(Attester::SevGuest(SevGuestAttester::new(&config.sev_guest)));
    }
    looked_for.push(format!(
        "SEV-SNP guest device {} (absent)",
        config.sev_guest.display()
    ));
    looked_for.push(if config.tdx_guest.exists() {
        format!(
            "TDX guest device {} (present, but without configfs-tsm its TDREPORT cannot become a quote)",
            config.tdx_guest.display()
        )
    } else {
        format!("TDX guest device {} (absent)", config.tdx_guest.display())
    });
    let tpm = config
        .tpm
        .clone()
        .unwrap_or_else(|| TpmPath::Device(DEFAULT_TPM.into()));
    match azure_vtpm(&tpm) {
        Ok(()) => {
            let mut attester = VtpmAttester::new(tpm, HclSource::Nv);
            if let Some(endpoint) = &config.platform_endpoint {
                attester = attester.with_platform_endpoint(endpoint.clone());
            }
            return Ok(Attester::Vtpm(attester));
        }
        Err(reason) => looked_for.push(format!("Azure vTPM at {tpm} ({reason})")),
    }
    match GramineAttester::probe(&config.gramine_root) {
        Ok(g) => return Ok(Attester::Gramine(g)),
        Err(reason) => looked_for.push(format!(
            "Gramine at {} ({reason})",
            config.gramine_root.display()
        )),
    }
    if is_socket(&config.las_socket) {
        return Ok(match &config.tpm {
            Some(tpm) => Attester::Vtpm(VtpmAttester::new(
                tpm.clone(),
                HclSource::Las(config.las_socket.clone()),
            )),
            None => Attester::Sim {
                socket: config.las_socket.clone(),
            },
        });
    }
    looked_for.push(format!(
        "LAS socket at {} (no socket)",
        config.las_socket.display()
    ));
    Err(AttestError::NoneAvailable { looked_for })
}

/// Whether `tpm` is an Azure vTPM: reachable, with an HCL report at its NV index.
fn azure_vtpm(tpm: &TpmPath) -> Result<(), String> {
    if let TpmPath::Device(path) = tpm
        && !path.exists()
    {
        return Err("absent".into());
    }
    let mut tpm = Tpm::open(tpm).map_err(|e| e.to_string())?;
    tpm.nv_size(HCL_REPORT_INDEX)
        .map(|_| ())
        .map_err(|_| format!("no HCL report at NV index {HCL_REPORT_INDEX:#x}"))
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

/// Test support: `err` is the I/O error of opening the missing `path`, naming it.
#[cfg(test)]
fn assert_not_found(err: &AttestError, path: &std::path::Path) {
    match err {
        AttestError::Io { path: p, source } => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected AttestError::Io, got {other:?}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
}
