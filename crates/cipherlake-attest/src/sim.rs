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

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::{Claims, TcbStatus, Tee, VerifyError};

/// Magic bytes at the start of a sim report.
pub const MAGIC: [u8; 4] = *b"CLSR";
/// The report format version this crate writes.
pub const VERSION: u16 = 1;
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
        if raw.len() != REPORT_LEN {
            return Err(VerifyError::malformed(
                WHAT,
                raw.len().min(REPORT_LEN),
                format!("length {} (expected {REPORT_LEN})", raw.len()),
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
        if version != VERSION {
            return Err(VerifyError::UnsupportedVersion {
                what: WHAT,
                version: u32::from(version),
            });
        }
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
        };
        Ok((report, take(raw, BODY_LEN)))
    }
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
        let report = SimReport {
            version: VERSION,
            debug: false,
            svn,
            timestamp,
            platform_id: self.0.verifying_key().to_bytes(),
            measurement,
            report_data,
        };
        let body = report.body();
        let signature = self.0.sign(&body);
        let mut out = Vec::with_capacity(REPORT_LEN);
        out.extend_from_slice(&body);
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
        .verify_strict(&report.body(), &Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::BadSignature {
            what: "the sim report (by the platform key)".into(),
        })?;
    Ok(Claims {
        tee: Tee::Sim,
        attested_tee: None,
        evidence_version: u32::from(report.version),
        measurement: report.measurement.to_vec(),
        rtmrs: Vec::new(),
        signer: None,
        product_id: None,
        svn: Some(report.svn),
        debug: report.debug,
        tcb_status: TcbStatus::NotEvaluated,
        advisory_ids: Vec::new(),
        report_data: report.report_data,
        host_data: None,
        platform_id: Some(report.platform_id.to_vec()),
        timestamp: Some(report.timestamp),
        tdx: None,
        snp: None,
        vtpm: None,
    })
}
