//! Simulation-mode evidence: a report signed by a LAS platform key (ed25519).
//!
//! # Report format, version 1 (228 bytes, integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0   | 4  | magic `CLSR` (cipherlake sim report) |
//! | 4   | 2  | version = 1 |
//! | 6   | 2  | flags: bit 0 = debug (the LAS always writes 0); other bits must be 0 |
//! | 8   | 4  | svn |
//! | 12  | 8  | timestamp, unix seconds |
//! | 20  | 32 | platform id = the LAS platform's ed25519 public key |
//! | 52  | 48 | measurement = SHA-384 of the requesting process's executable |
//! | 100 | 64 | report data |
//! | 164 | 64 | ed25519 signature over bytes 0..164 |
//!
//! # Version 2: emulated TEE claims
//!
//! A LAS started with `--emulate FILE` writes version 2: the same 164-byte body (version = 2),
//! then a 4-byte length and that many bytes of JSON ([`Emulated`]: SGX, TDX or SEV-SNP claims,
//! HOST_DATA, RTMRs), then the ed25519 signature over everything before it. The verifier puts
//! the emulated claims beside the sim claims, so policies' TEE identity fields can be tested end
//! to end without the hardware. The evidence stays `sim`: a policy that does not list sim
//! refuses it, whatever it emulates.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::{Claims, TcbStatus, Tee, VerifyError};

/// Magic bytes at the start of a sim report.
pub const MAGIC: [u8; 4] = *b"CLSR";
/// The report format version this crate writes without emulated claims.
pub const VERSION: u16 = 1;
/// The version with emulated TEE claims.
pub const VERSION_EMULATING: u16 = 2;
/// The largest emulated-claims extension accepted.
const MAX_EMULATED: usize = 8192;
/// Length of the signed part of a report.
pub const BODY_LEN: usize = 164;
/// Length of a report.
pub const REPORT_LEN: usize = BODY_LEN + 64;
const WHAT: &str = "sim report";

/// The fields of a sim report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Format version.
    pub version: u16,
    /// The workload runs in debug mode (never set by the LAS).
    pub debug: bool,
    /// Security version of the platform software.
    pub svn: u32,
    /// When the LAS signed the report (unix seconds).
    pub timestamp: u64,
    /// The signing platform's public key.
    pub platform_id: [u8; 32],
    /// SHA-384 of the caller's executable.
    pub measurement: [u8; 48],
    /// Report data supplied by the caller.
    pub report_data: [u8; 64],
    /// Version 2: the TEE claims the LAS emulates.
    pub emulated: Option<Emulated>,
}

/// TEE claims a LAS emulates in version 2 sim reports (for testing policies' identity fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emulated {
    /// SGX claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgx: Option<crate::SgxClaims>,
    /// TDX claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<crate::TdxClaims>,
    /// SEV-SNP claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<crate::SnpClaims>,
    /// HOST_DATA (SEV-SNP) or MRCONFIGID (TDX).
    #[serde(
        default,
        with = "crate::encoding::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_data: Option<Vec<u8>>,
    /// TDX RTMR0..3.
    #[serde(
        default,
        with = "crate::encoding::hex_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rtmrs: Vec<Vec<u8>>,
    /// A TEE in debug mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
    /// A TCB verdict (a real TEE's collateral would give one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<crate::TcbStatus>,
}

impl SimReport {
    /// Encodes the signed body.
    fn body(&self) -> [u8; BODY_LEN] {
        let mut out = [0u8; BODY_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&u16::from(self.debug).to_le_bytes());
        out[8..12].copy_from_slice(&self.svn.to_le_bytes());
        out[12..20].copy_from_slice(&self.timestamp.to_le_bytes());
        out[20..52].copy_from_slice(&self.platform_id);
        out[52..100].copy_from_slice(&self.measurement);
        out[100..164].copy_from_slice(&self.report_data);
        out
    }

    /// Parses a report without checking its signature; returns the report and the signature.
    pub fn parse(raw: &[u8]) -> Result<(Self, [u8; 64]), VerifyError> {
        if raw.len() < REPORT_LEN {
            return Err(VerifyError::malformed(
                WHAT,
                raw.len(),
                format!("length {} (at least {REPORT_LEN})", raw.len()),
            ));
        }
        if take::<4>(raw, 0) != MAGIC {
            return Err(VerifyError::malformed(
                WHAT,
                0,
                "bad magic (expected \"CLSR\")",
            ));
        }
        let version = u16::from_le_bytes(take(raw, 4));
        let emulated = match version {
            VERSION if raw.len() == REPORT_LEN => None,
            VERSION => {
                return Err(VerifyError::malformed(
                    WHAT,
                    REPORT_LEN,
                    format!("version 1 is {REPORT_LEN} bytes, found {}", raw.len()),
                ));
            }
            VERSION_EMULATING => Some(parse_emulated(raw)?),
            _ => {
                return Err(VerifyError::UnsupportedVersion {
                    what: WHAT,
                    version: u32::from(version),
                });
            }
        };
        let flags = u16::from_le_bytes(take(raw, 6));
        if flags & !1 != 0 {
            return Err(VerifyError::malformed(WHAT, 6, "reserved flag bits set"));
        }
        let report = SimReport {
            version,
            debug: flags & 1 != 0,
            svn: u32::from_le_bytes(take(raw, 8)),
            timestamp: u64::from_le_bytes(take(raw, 12)),
            platform_id: take(raw, 20),
            measurement: take(raw, 52),
            report_data: take(raw, 100),
            emulated,
        };
        Ok((report, take(raw, raw.len() - 64)))
    }

    /// The signed bytes: the body, then for version 2 the extension.
    fn signed(&self) -> Vec<u8> {
        let mut out = self.body().to_vec();
        if let Some(emulated) = &self.emulated {
            let json = serde_json::to_vec(emulated).unwrap_or_default();
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
            out.extend_from_slice(&json);
        }
        out
    }
}

/// The emulated claims of a version 2 report: length, JSON, then exactly the signature.
fn parse_emulated(raw: &[u8]) -> Result<Emulated, VerifyError> {
    let len = u32::from_le_bytes(take(raw, BODY_LEN)) as usize;
    let start = BODY_LEN + 4;
    if len > MAX_EMULATED || raw.len() != start + len + 64 {
        return Err(VerifyError::malformed(
            WHAT,
            BODY_LEN,
            format!(
                "emulated claims of {len} bytes do not fit a {}-byte report (at most {MAX_EMULATED})",
                raw.len()
            ),
        ));
    }
    serde_json::from_slice(&raw[start..start + len])
        .map_err(|e| VerifyError::malformed(WHAT, start, format!("emulated claims: {e}")))
}

/// Copies `N` bytes at `offset` (zeros past the end; callers check the length first).
fn take<const N: usize>(raw: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = raw.get(offset..offset + N) {
        out.copy_from_slice(src);
    }
    out
}

/// A LAS platform's signing key. Zeroized on drop; never printed.
pub struct PlatformKey(SigningKey);

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey(public {})", self.public_key())
    }
}

impl PlatformKey {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::from_seed(&seed))
    }

    /// The key with this 32-byte ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        PlatformKey(SigningKey::from_bytes(seed))
    }

    /// The secret seed, for writing the key file.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key, which is also the platform id.
    pub fn public_key(&self) -> PlatformPublicKey {
        PlatformPublicKey(self.0.verifying_key())
    }

    /// Signs a report for `measurement` and `report_data` at `timestamp`.
    pub fn sign_report(
        &self,
        measurement: [u8; 48],
        report_data: [u8; 64],
        svn: u32,
        timestamp: u64,
    ) -> Vec<u8> {
        self.sign_emulating(measurement, report_data, svn, timestamp, None)
    }

    /// Signs a report that, with `emulated`, also carries emulated TEE claims (version 2).
    pub fn sign_emulating(
        &self,
        measurement: [u8; 48],
        report_data: [u8; 64],
        svn: u32,
        timestamp: u64,
        emulated: Option<&Emulated>,
    ) -> Vec<u8> {
        let report = SimReport {
            version: if emulated.is_some() {
                VERSION_EMULATING
            } else {
                VERSION
            },
            debug: false,
            svn,
            timestamp,
            platform_id: self.0.verifying_key().to_bytes(),
            measurement,
            report_data,
            emulated: emulated.cloned(),
        };
        let mut out = report.signed();
        let signature = self.0.sign(&out);
        out.extend_from_slice(&signature.to_bytes());
        out
    }
}

/// A LAS platform's public key (ed25519), registered with the verifier.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PlatformPublicKey(VerifyingKey);

impl PlatformPublicKey {
    /// Parses 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, VerifyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PlatformPublicKey)
            .map_err(|e| VerifyError::collateral("sim platform public key", e))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(hex_key: &str) -> Result<Self, VerifyError> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                VerifyError::collateral("sim platform public key", "expected 64 hex digits")
            })?;
        Self::from_bytes(&bytes)
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl std::fmt::Display for PlatformPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

impl std::fmt::Debug for PlatformPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformPublicKey({self})")
    }
}

/// The set of registered platform keys, indexed by platform id.
#[derive(Debug, Clone, Default)]
pub struct PlatformKeys(HashMap<[u8; 32], PlatformPublicKey>);

impl PlatformKeys {
    /// Registers a key.
    pub fn insert(&mut self, key: PlatformPublicKey) {
        self.0.insert(key.to_bytes(), key);
    }
}

/// Verifies a sim report against the registered platform keys.
pub fn verify_report(raw: &[u8], keys: &PlatformKeys) -> Result<Claims, VerifyError> {
    let (report, signature) = SimReport::parse(raw)?;
    let key = keys
        .0
        .get(&report.platform_id)
        .ok_or_else(|| VerifyError::UnknownPlatformKey {
            platform_id: hex::encode(report.platform_id),
        })?;
    key.0
        .verify_strict(&raw[..raw.len() - 64], &Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::BadSignature {
            what: "the sim report (by the platform key)".into(),
        })?;
    let emulated = report.emulated.unwrap_or_default();
    Ok(Claims {
        tee: Tee::Sim,
        attested_tee: None,
        evidence_version: u32::from(report.version),
        measurement: report.measurement.to_vec(),
        rtmrs: emulated.rtmrs,
        signer: None,
        product_id: None,
        svn: Some(report.svn),
        debug: report.debug || emulated.debug,
        tcb_status: emulated.tcb_status.unwrap_or(TcbStatus::NotEvaluated),
        advisory_ids: Vec::new(),
        report_data: report.report_data,
        host_data: emulated.host_data,
        platform_id: Some(report.platform_id.to_vec()),
        timestamp: Some(report.timestamp),
        collateral: None,
        sgx: emulated.sgx,
        tdx: emulated.tdx,
        snp: emulated.snp,
        vtpm: None,
    })
}
