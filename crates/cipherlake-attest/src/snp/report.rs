//! The SEV-SNP attestation report (AMD SEV-SNP ABI specification, "ATTESTATION_REPORT"),
//! versions 2 to 5. All versions share the layout of the fields used here; later versions only
//! fill bytes that were reserved before.

use crate::VerifyError;

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
const WHAT: &str = "SEV-SNP report";
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// A parsed attestation report. Integers are little-endian in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport {
    /// Report format version (2..=5).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: u64,
    /// Family id.
    pub family_id: [u8; 16],
    /// Image id.
    pub image_id: [u8; 16],
    /// VMPL of the request.
    pub vmpl: u32,
    /// Current TCB.
    pub current_tcb: u64,
    /// Bit 0: author key enabled; bit 1: chip id masked; bits 4:2: signing key (0 VCEK, 1 VLEK).
    pub key_info: u32,
    /// Report data supplied by the guest.
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host data supplied at launch.
    pub host_data: [u8; 32],
    /// ID key digest.
    pub id_key_digest: [u8; 48],
    /// Author key digest.
    pub author_key_digest: [u8; 48],
    /// TCB the signing key was derived from.
    pub reported_tcb: u64,
    /// CPUID family (v3+, zero before).
    pub cpuid_family: u8,
    /// CPUID model (v3+, zero before).
    pub cpuid_model: u8,
    /// Chip id.
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: u64,
    /// TCB at launch.
    pub launch_tcb: u64,
    /// Signature R, big-endian (converted from the report's little-endian).
    pub sig_r: [u8; 48],
    /// Signature S, big-endian.
    pub sig_s: [u8; 48],
}

/// Which key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
}

impl SnpReport {
    /// The processor generation the report names (v3 and later carry the CPUID family and
    /// model): `Ok(None)` when it names none, an error for a part with no AMD root here.
    pub fn product(&self) -> Result<Option<&'static str>, VerifyError> {
        match (self.version, self.cpuid_family, self.cpuid_model) {
            (..3, _, _) | (_, 0, _) => Ok(None),
            (_, 0x19, 0x00..=0x0f) => Ok(Some("Milan")),
            (_, 0x19, 0x10..=0x1f | 0xa0..=0xaf) => Ok(Some("Genoa")),
            (_, 0x1a, 0x00..=0x11) => Ok(Some("Turin")),
            (_, family, model) => Err(VerifyError::UntrustedRoot {
                what: "SEV-SNP".into(),
                reason: format!(
                    "the report is from CPU family {family:#x} model {model:#x}, which has no AMD root here"
                ),
            }),
        }
    }

    /// Parses a report. Exactly [`REPORT_LEN`] bytes are expected.
    pub fn parse(raw: &[u8]) -> Result<Self, VerifyError> {
        if raw.len() != REPORT_LEN {
            return Err(VerifyError::malformed(
                WHAT,
                raw.len().min(REPORT_LEN),
                format!("length {} (expected {REPORT_LEN})", raw.len()),
            ));
        }
        let r = Reader(raw);
        let version = r.u32(0x00);
        if !(2..=5).contains(&version) {
            return Err(VerifyError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let sig_algo = r.u32(0x34);
        if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(VerifyError::malformed(
                WHAT,
                0x34,
                format!("signature algorithm {sig_algo} (expected 1, ECDSA P-384 SHA-384)"),
            ));
        }
        // Signature: R and S as 72-byte little-endian fields; P-384 scalars use the low 48.
        let r_le = r.array::<72>(0x2A0);
        let s_le = r.array::<72>(0x2E8);
        if r_le[48..].iter().chain(&s_le[48..]).any(|b| *b != 0) {
            return Err(VerifyError::malformed(
                WHAT,
                0x2A0,
                "signature component wider than 384 bits",
            ));
        }
        let be = |le: &[u8; 72]| {
            let mut out = [0u8; 48];
            for (o, i) in out.iter_mut().zip(le[..48].iter().rev()) {
                *o = *i;
            }
            out
        };
        Ok(SnpReport {
            version,
            guest_svn: r.u32(0x04),
            policy: r.u64(0x08),
            family_id: r.array(0x10),
            image_id: r.array(0x20),
            vmpl: r.u32(0x30),
            current_tcb: r.u64(0x38),
            key_info: r.u32(0x48),
            report_data: r.array(0x50),
            measurement: r.array(0x90),
            host_data: r.array(0xC0),
            id_key_digest: r.array(0xE0),
            author_key_digest: r.array(0x110),
            reported_tcb: r.u64(0x180),
            cpuid_family: r.array::<1>(0x188)[0],
            cpuid_model: r.array::<1>(0x189)[0],
            chip_id: r.array(0x1A0),
            committed_tcb: r.u64(0x1E0),
            launch_tcb: r.u64(0x1F0),
            sig_r: be(&r_le),
            sig_s: be(&s_le),
        })
    }

    /// The author key digest is in use (else the ID key digest identifies the signer).
    pub fn author_key_enabled(&self) -> bool {
        self.key_info & 1 != 0
    }

    /// The host masked the chip id (zeroes in the report).
    pub fn chip_id_masked(&self) -> bool {
        self.key_info & 0b10 != 0
    }

    /// The key that signed the report, if the report says it is signed.
    pub fn signing_key(&self) -> Result<SigningKey, VerifyError> {
        match (self.key_info >> 2) & 0b111 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(VerifyError::malformed(
                WHAT,
                0x48,
                format!("signing key selector {other} (report is not signed by a VCEK or VLEK)"),
            )),
        }
    }
}

/// Reads fixed-offset fields from a buffer whose length was checked to be [`REPORT_LEN`].
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(offset..offset + N) {
            out.copy_from_slice(src);
        }
        out
    }

    fn u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.array(offset))
    }

    fn u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.array(offset))
    }
}
