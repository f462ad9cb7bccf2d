//! Where the CAS master key lives, and how a restored copy of the data directory is caught.
//!
//! * [`Sealing::File`]: `DATA_DIR/master.key` (mode 0600). Simulation and development only:
//!   whoever administers the host reads it.
//! * [`Sealing::Tpm`]: the master key sealed by the TPM to chosen SHA-256 PCRs
//!   (`DATA_DIR/master.tpm` holds the sealed blob and the PCR values it is sealed to, so a
//!   refusal can name the PCR that differs). Only that TPM in that platform state unseals it:
//!   not a copy of the directory on another host, not this host booted into something else.
//!   A TPM NV counter detects a restore of an older copy of the whole directory: it goes up
//!   once per epoch (each start and each policy change), after the database commit; a start
//!   accepts a counter equal to the stored epoch or one below it (a crash between the commit
//!   and the increment), and refuses anything else.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_attest::tpm::device::{Tpm, TpmPath};
use cipherlake_attest::tpm::seal::SealedBlob;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CasError;
use crate::at_rest::{MasterKeyProvider, random, write_new};

/// How the master key is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sealing {
    /// In `DATA_DIR/master.key`: simulation and development only.
    #[default]
    File,
    /// Sealed by a TPM.
    Tpm(TpmSealing),
    /// Wrapped (`DATA_DIR/master.snp`) under a key the SEV-SNP firmware derives for this
    /// guest's launch measurement and policy (and optionally family id) on this chip.
    SevSnp {
        /// The `sev-guest` device.
        device: PathBuf,
        /// Also bind the key to the family id.
        family_id: bool,
    },
    /// Wrapped (`DATA_DIR/master.gramine`) under Gramine's MRENCLAVE sealing key: only this
    /// enclave build on this CPU unwraps it.
    Gramine {
        /// Gramine's attestation directory (`/dev/attestation`).
        root: PathBuf,
    },
}

/// The TPM, the PCRs the master key is sealed to, and the NV index of the epoch counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmSealing {
    /// The TPM (`/dev/tpmrm0`, or swtpm's `tcp:HOST:PORT`).
    pub tpm: TpmPath,
    /// SHA-256 PCRs the key is sealed to (default 0, 2, 4 and 7: firmware, option ROMs, boot
    /// manager, Secure Boot state).
    pub pcrs: Vec<u8>,
    /// NV index of the epoch counter.
    pub counter_index: u32,
    /// The owners' recovery public key (X25519, 32 bytes): at first start the master key is
    /// also sealed to it (`DATA_DIR/master.recovery`), so `cas recover` can re-seal it after a
    /// legitimate platform change. Without one, a changed PCR loses every secret.
    pub recovery_key: Option<Vec<u8>>,
}

impl TpmSealing {
    /// The PCRs in the order the TPM hashes them (ascending), each once.
    pub fn normalized(&self) -> TpmSealing {
        TpmSealing {
            pcrs: cipherlake_attest::tpm::seal::pcr_order(&self.pcrs),
            ..self.clone()
        }
    }
}

/// The PCRs sealed to by default.
pub const DEFAULT_PCRS: [u8; 4] = [0, 2, 4, 7];
/// The NV index of the epoch counter by default (owner range 0x01500000–0x01bfffff).
pub const DEFAULT_COUNTER_INDEX: u32 = 0x0150_0c1a;

/// The HPKE `info` of the recovery box.
const RECOVERY_INFO: &[u8] = b"cipherlake-master-key-recovery-v1";

impl Sealing {
    /// The word `cas serve` and `/healthz` report: `none` for the file, `tpm`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Sealing::File => "none",
            Sealing::Tpm(_) => "tpm",
            Sealing::SevSnp { .. } => "sev-snp",
            Sealing::Gramine { .. } => "gramine",
        }
    }
}

/// A master key wrapped under a key the TEE gives this code only (SEV-SNP derived key,
/// Gramine sealing key), in a file of the data directory.
pub struct WrappedMasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl MasterKeyProvider for WrappedMasterKey {
    fn master_key(&self) -> Result<Zeroizing<[u8; 32]>, CasError> {
        Ok(self.key.clone())
    }
}

/// The wrapping key as a provider, so the CAS's own sealer wraps the master key.
struct WrappingKey(Zeroizing<[u8; 32]>);

impl MasterKeyProvider for WrappingKey {
    fn master_key(&self) -> Result<Zeroizing<[u8; 32]>, CasError> {
        Ok(self.0.clone())
    }
}

const WRAP_AAD: &[u8] = b"cipherlake-master-key-wrap-v1";

impl WrappedMasterKey {
    /// For `sealing` (sev-snp or gramine): unwraps `DATA_DIR/master.<kind>`, or at first start
    /// creates a master key and wraps it.
    pub fn open_or_create(dir: &Path, sealing: &Sealing) -> Result<Self, CasError> {
        let (wrapping, file, what) = match sealing {
            Sealing::SevSnp { device, family_id } => {
                let binding = cipherlake_attest::attester::DerivedKeyBinding {
                    policy: true,
                    family_id: *family_id,
                };
                let key = cipherlake_attest::attester::derive_key(device, binding)
                    .map_err(|e| CasError::Unavailable(format!("deriving the sealing key: {e}")))?;
                (
                    key,
                    "master.snp",
                    "the SEV-SNP firmware derives for this guest",
                )
            }
            Sealing::Gramine { root } => (
                gramine_key(root)?,
                "master.gramine",
                "Gramine gives this enclave (MRENCLAVE)",
            ),
            other => {
                return Err(CasError::Unavailable(format!(
                    "{} sealing does not wrap a key file",
                    other.as_str()
                )));
            }
        };
        let sealer = crate::at_rest::Sealer::new(&WrappingKey(wrapping))?;
        let path = dir.join(file);
        if path.exists() {
            let wrapped = std::fs::read(&path)
                .map_err(CasError::io(format!("reading {}", path.display())))?;
            let bytes = sealer.open(WRAP_AAD, &wrapped).map_err(|_| {
                CasError::Unavailable(format!(
                    "{} does not open with the key {what}: other code, another chip or CPU, or a \
                     copied data directory",
                    path.display()
                ))
            })?;
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                CasError::Unavailable(format!("{}: not a 32-byte key", path.display()))
            })?;
            return Ok(WrappedMasterKey {
                key: Zeroizing::new(key),
            });
        }
        let key = Zeroizing::new(random::<32>()?);
        write_new(&path, &sealer.seal(WRAP_AAD, key.as_ref())?)?;
        Ok(WrappedMasterKey { key })
    }
}

/// Gramine's MRENCLAVE sealing key (`ROOT/keys/_sgx_mrenclave`, 16 bytes), stretched to 32.
fn gramine_key(root: &Path) -> Result<Zeroizing<[u8; 32]>, CasError> {
    use hmac::{KeyInit, Mac};
    let path = root.join("keys/_sgx_mrenclave");
    let key = Zeroizing::new(
        std::fs::read(&path).map_err(CasError::io(format!("reading {}", path.display())))?,
    );
    if key.len() != 16 {
        return Err(CasError::Unavailable(format!(
            "{}: {} bytes, not a 16-byte sealing key",
            path.display(),
            key.len()
        )));
    }
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|_| CasError::Crypto("sealing key length".into()))?;
    mac.update(WRAP_AAD);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// What `master.tpm` holds.
#[derive(Serialize, Deserialize)]
struct SealedFile {
    public: String,
    private: String,
    pcrs: Vec<u8>,
    values: Vec<String>,
}

/// The master key, unsealed by the TPM at start.
pub struct TpmMasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl MasterKeyProvider for TpmMasterKey {
    fn master_key(&self) -> Result<Zeroizing<[u8; 32]>, CasError> {
        Ok(self.key.clone())
    }
}

fn tpm_error(what: &str) -> impl FnOnce(cipherlake_attest::tpm::device::TpmError) -> CasError + '_ {
    move |e| CasError::Unavailable(format!("{what}: {e}"))
}

impl TpmMasterKey {
    /// Unseals the master key from `DATA_DIR/master.tpm`, or at first start creates one and
    /// seals it. A refusal names the PCR whose value changed, or says the blob is not this
    /// TPM's.
    pub fn open_or_create(dir: &Path, sealing: &TpmSealing) -> Result<Self, CasError> {
        let sealing = &sealing.normalized();
        let file_key = dir.join("master.key");
        if file_key.exists() {
            return Err(CasError::Unavailable(format!(
                "{} exists: this data directory keeps its master key in a file (--sealing file); \
                 it cannot be sealed by moving it",
                file_key.display()
            )));
        }
        let path = dir.join("master.tpm");
        let mut tpm = Tpm::open(&sealing.tpm).map_err(tpm_error("opening the TPM"))?;
        if !path.exists() {
            return Self::create(&mut tpm, &path, sealing);
        }
        let text =
            std::fs::read(&path).map_err(CasError::io(format!("reading {}", path.display())))?;
        let sealed: SealedFile = serde_json::from_slice(&text)
            .map_err(|e| CasError::Unavailable(format!("{}: {e}", path.display())))?;
        let blob = SealedBlob {
            public: decode(&sealed.public, &path)?,
            private: decode(&sealed.private, &path)?,
        };
        match tpm.unseal(&blob, &sealed.pcrs) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    CasError::Unavailable(format!("{}: not a 32-byte key", path.display()))
                })?;
                Ok(TpmMasterKey {
                    key: Zeroizing::new(key),
                })
            }
            Err(e) => Err(Self::why_not(&mut tpm, &sealed, &path, e)),
        }
    }

    fn create(tpm: &mut Tpm, path: &Path, sealing: &TpmSealing) -> Result<Self, CasError> {
        let key = Zeroizing::new(random::<32>()?);
        if let Some(recovery) = &sealing.recovery_key {
            let sealed = crate::seal::seal_with_info(recovery, RECOVERY_INFO, key.as_ref())?;
            let json = serde_json::to_vec_pretty(&sealed)
                .map_err(|e| CasError::Crypto(format!("encoding master.recovery: {e}")))?;
            write_new(&path.with_extension("recovery"), &json)?;
        }
        write_sealed(tpm, path, sealing, &key, write_new)?;
        Ok(TpmMasterKey { key })
    }

    /// After a legitimate platform change: opens `DATA_DIR/master.recovery` with the owners'
    /// recovery private key, checks the key against the database (its integrity MACs must
    /// verify), and seals it again to the PCRs' current values.
    pub fn recover(
        dir: &Path,
        sealing: &TpmSealing,
        recovery: &crate::seal::HpkeKeyPair,
    ) -> Result<(), CasError> {
        let sealing = &sealing.normalized();
        let recovery_path = dir.join("master.recovery");
        let text = std::fs::read(&recovery_path)
            .map_err(CasError::io(format!("reading {}", recovery_path.display())))?;
        let sealed: crate::seal::Sealed = serde_json::from_slice(&text)
            .map_err(|e| CasError::Unavailable(format!("{}: {e}", recovery_path.display())))?;
        let bytes = recovery
            .open_with_info(&sealed, RECOVERY_INFO)
            .map_err(|_| {
                CasError::Unauthorized(format!(
                    "{} does not open with this recovery key",
                    recovery_path.display()
                ))
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CasError::Unavailable(format!("{}: not a 32-byte key", recovery_path.display()))
        })?;
        let key = Zeroizing::new(key);
        let provider = TpmMasterKey { key: key.clone() };
        // The right key opens the database: every integrity MAC verifies under it.
        crate::store::Store::open(
            &dir.join("cas.db"),
            crate::at_rest::Sealer::new(&provider)?,
            crate::integrity::Integrity::new(&provider)?,
        )?;
        let mut tpm = Tpm::open(&sealing.tpm).map_err(tpm_error("opening the TPM"))?;
        write_sealed(&mut tpm, &dir.join("master.tpm"), sealing, &key, replace)
    }

    /// Names why the TPM would not unseal: a PCR that changed, or a blob of another TPM.
    fn why_not(
        tpm: &mut Tpm,
        sealed: &SealedFile,
        path: &Path,
        error: cipherlake_attest::tpm::device::TpmError,
    ) -> CasError {
        let now = match tpm.pcrs() {
            Ok(values) => values,
            Err(e) => {
                return CasError::Unavailable(format!(
                    "unsealing the master key: {error}; reading PCRs: {e}"
                ));
            }
        };
        for (pcr, sealed_value) in sealed.pcrs.iter().zip(&sealed.values) {
            let current = now
                .get(usize::from(*pcr))
                .map(hex::encode)
                .unwrap_or_default();
            if &current != sealed_value {
                return CasError::Unavailable(format!(
                    "the master key in {} is sealed to PCR {pcr} = {sealed_value}, but the TPM \
                     reports {current}: the platform changed (firmware, boot chain) since the \
                     key was sealed",
                    path.display()
                ));
            }
        }
        match error {
            cipherlake_attest::tpm::device::TpmError::Response {
                command: "Load", ..
            } => CasError::Unavailable(format!(
                "the TPM does not load {} although the PCRs match ({error}): the blob was \
                 sealed by another TPM (a copied data directory), or this TPM was cleared",
                path.display()
            )),
            other => CasError::Unavailable(format!(
                "unsealing the master key in {}: {other}",
                path.display()
            )),
        }
    }
}

/// Seals `key` to the PCRs' current values and writes `master.tpm` with `write`.
fn write_sealed(
    tpm: &mut Tpm,
    path: &Path,
    sealing: &TpmSealing,
    key: &[u8; 32],
    write: fn(&Path, &[u8]) -> Result<(), CasError>,
) -> Result<(), CasError> {
    let (blob, values) = tpm
        .seal(key, &sealing.pcrs)
        .map_err(tpm_error("sealing the master key"))?;
    let file = SealedFile {
        public: BASE64.encode(&blob.public),
        private: BASE64.encode(&blob.private),
        pcrs: sealing.pcrs.clone(),
        values: values.iter().map(hex::encode).collect(),
    };
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| CasError::Crypto(format!("encoding master.tpm: {e}")))?;
    write(path, &json)
}

/// Replaces `path` atomically (a new file renamed over it).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), CasError> {
    let temporary = path.with_extension("tpm.new");
    let _ = std::fs::remove_file(&temporary);
    write_new(&temporary, bytes)?;
    std::fs::rename(&temporary, path).map_err(CasError::io(format!("replacing {}", path.display())))
}

fn decode(text: &str, path: &Path) -> Result<Vec<u8>, CasError> {
    BASE64
        .decode(text)
        .map_err(|e| CasError::Unavailable(format!("{}: {e}", path.display())))
}

/// The epoch counter of a TPM-sealed CAS.
#[derive(Debug, Clone)]
pub struct EpochCounter {
    tpm: TpmPath,
    index: u32,
    data_dir: PathBuf,
}

impl EpochCounter {
    /// The counter at `sealing.counter_index`.
    pub fn new(sealing: &TpmSealing, data_dir: &Path) -> Self {
        EpochCounter {
            tpm: sealing.tpm.clone(),
            index: sealing.counter_index,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The counter's value, defining it (at 1) when it does not exist yet.
    pub fn value(&self) -> Result<u64, CasError> {
        let mut tpm = Tpm::open(&self.tpm).map_err(tpm_error("opening the TPM"))?;
        // The index is checked before it is read: an ordinary index put in the counter's
        // place could be written back to any value.
        let exists = match tpm.nv_public(self.index) {
            Ok(_) => true,
            Err(cipherlake_attest::tpm::device::TpmError::Response { code, .. })
                if code & 0xfff == 0x18b =>
            {
                false
            }
            Err(e) => return Err(tpm_error("reading the epoch counter's attributes")(e)),
        };
        if !exists {
            return tpm
                .define_counter(self.index)
                .map_err(tpm_error("defining the epoch counter"));
        }
        if !tpm
            .is_our_counter(self.index)
            .map_err(tpm_error("reading the epoch counter's attributes"))?
        {
            return Err(CasError::Tampered(format!(
                "NV index {:#x} is not the CAS's monotonic epoch counter (replaced by an index \
                 that can be written back)",
                self.index
            )));
        }
        tpm.counter(self.index)
            .map_err(tpm_error("reading the epoch counter"))?
            .ok_or_else(|| {
                CasError::Unavailable(format!("epoch counter {:#x} vanished", self.index))
            })
    }

    /// Checks the database's epoch against the counter: equal, or the database one ahead (a
    /// crash between the commit and the increment). `None` (a new database) is accepted.
    pub fn check(&self, stored: Option<u64>, counter: u64) -> Result<(), CasError> {
        match stored {
            None => Ok(()),
            // The database commits an epoch before the counter reaches it: after a crash in
            // between, the database is one ahead. A counter ahead of the database means the
            // database is an older copy.
            Some(epoch) if counter == epoch || counter + 1 == epoch => Ok(()),
            Some(epoch) => Err(CasError::Tampered(format!(
                "{} is at epoch {epoch}, but the TPM's epoch counter (NV index {:#x}) is at \
                 {counter}: an older copy of the data directory was restored",
                self.data_dir.display(),
                self.index
            ))),
        }
    }

    /// Moves the counter up to `epoch` (after the database committed it).
    pub fn advance_to(&self, epoch: u64) -> Result<(), CasError> {
        let mut tpm = Tpm::open(&self.tpm).map_err(tpm_error("opening the TPM"))?;
        loop {
            let value = tpm
                .counter(self.index)
                .map_err(tpm_error("reading the epoch counter"))?
                .unwrap_or(0);
            if value >= epoch {
                return Ok(());
            }
            tpm.increment(self.index)
                .map_err(tpm_error("incrementing the epoch counter"))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_check_accepts_a_crash_window_and_refuses_an_older_copy() {
        let counter = EpochCounter::new(
            &TpmSealing {
                tpm: "tcp:127.0.0.1:1".parse().unwrap(),
                pcrs: vec![0],
                counter_index: DEFAULT_COUNTER_INDEX,
                recovery_key: None,
            },
            Path::new("/data"),
        );
        counter.check(Some(5), 5).expect("in step");
        counter
            .check(Some(5), 4)
            .expect("crashed after the commit, before the increment");
        for older in [6, 7, 100] {
            let err = counter.check(Some(5), older).expect_err("an older copy");
            assert!(err.to_string().contains("older copy"), "{err}");
        }
        counter
            .check(Some(5), 3)
            .expect_err("two behind: not a crash");
        counter.check(None, 9).expect("a new database");
    }
}
