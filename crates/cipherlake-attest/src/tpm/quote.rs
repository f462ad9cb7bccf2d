//! TPM 2.0 quotes: the `TPMS_ATTEST` structure a `TPM2_Quote` signs (TPM 2.0 Part 2, 10.12),
//! its RSASSA-PKCS1-v1_5 SHA-256 signature, and the PCR values it commits to.
//!
//! The PCR selection is parsed, not assumed: a quote is accepted only over the SHA-256 bank
//! with all 24 PCRs selected, so a value supplied for PCR *n* is the value the TPM hashed in
//! slot *n*.

use rsa::signature::Verifier as _;
use sha2::{Digest, Sha256};

use super::wire::Reader;
use crate::VerifyError;

/// `TPM_GENERATED_VALUE`: every structure a TPM signs starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;
/// Number of PCRs in a bank.
pub const PCR_COUNT: usize = 24;
const WHAT: &str = "TPM quote";

/// The parts of a `TPMS_ATTEST` quote this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `extraData`: the qualifying data (nonce) the quote was asked for.
    pub extra_data: Vec<u8>,
    /// The PCR selection: (hash algorithm, selection bitmap) per bank.
    pub pcr_select: Vec<(u16, Vec<u8>)>,
    /// Digest of the selected PCR values.
    pub pcr_digest: Vec<u8>,
    /// Clock, reset and restart counts (`TPMS_CLOCK_INFO`).
    pub clock: u64,
}

/// Why a TPM quote is refused. Each check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The structure does not start with `TPM_GENERATED_VALUE`: the TPM did not produce it.
    #[error("TPM quote magic is {found:#010x}, not TPM_GENERATED_VALUE (0xff544347)")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// The attestation is not a quote (for example a certify or a session audit).
    #[error("TPM attestation type is {found:#06x}, not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote {
        /// The type found.
        found: u16,
    },
    /// The signature does not verify under the attestation key.
    #[error("the TPM quote is not signed by the attestation key (RSASSA-PKCS1-v1_5 SHA-256)")]
    BadSignature,
    /// `extraData` is not the expected nonce.
    #[error("the TPM quote's extraData {found} is not the nonce {expected}")]
    NonceMismatch {
        /// The expected nonce, hex.
        expected: String,
        /// The quote's extraData, hex.
        found: String,
    },
    /// The selection is not exactly the SHA-256 bank with PCRs 0 to 23.
    #[error("the TPM quote selects {found}; required is the SHA-256 bank with all 24 PCRs")]
    PcrSelection {
        /// The selection, as banks and bitmaps.
        found: String,
    },
    /// The number of PCR values supplied is not 24, or one is not 32 bytes.
    #[error("{found} PCR values were supplied; required are 24 SHA-256 values in PCR order")]
    PcrValues {
        /// What was supplied.
        found: String,
    },
    /// The supplied PCR values do not hash to the quote's digest.
    #[error("the PCR values do not hash to the quote's pcrDigest")]
    PcrDigestMismatch,
}

impl QuoteInfo {
    /// Parses a marshalled `TPMS_ATTEST` that must be a quote. Trailing bytes are refused.
    pub fn parse(message: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(message, WHAT);
        let magic = r.u32()?;
        if magic != TPM_GENERATED {
            return Err(QuoteError::BadMagic { found: magic }.into());
        }
        let kind = r.u16()?;
        if kind != ST_ATTEST_QUOTE {
            return Err(QuoteError::NotAQuote { found: kind }.into());
        }
        let _qualified_signer = r.sized()?;
        let extra_data = r.sized()?.to_vec();
        let clock = r.u64()?;
        let _reset_count = r.u32()?;
        let _restart_count = r.u32()?;
        let _safe = r.u8()?;
        let _firmware_version = r.u64()?;
        let banks = r.u32()?;
        if banks > 16 {
            return Err(r.error(format!("{banks} PCR banks selected")));
        }
        let mut pcr_select = Vec::new();
        for _ in 0..banks {
            let hash = r.u16()?;
            let size = r.u8()?;
            pcr_select.push((hash, r.bytes(usize::from(size))?.to_vec()));
        }
        let pcr_digest = r.sized()?.to_vec();
        r.finish()?;
        Ok(QuoteInfo {
            extra_data,
            pcr_select,
            pcr_digest,
            clock,
        })
    }

    /// Requires the SHA-256 bank, and only it, with exactly PCRs 0 to 23 selected.
    pub fn require_all_sha256_pcrs(&self) -> Result<(), QuoteError> {
        match self.pcr_select.as_slice() {
            [(ALG_SHA256, bitmap)] if bitmap.as_slice() == [0xff, 0xff, 0xff] => Ok(()),
            other => Err(QuoteError::PcrSelection {
                found: describe_selection(other),
            }),
        }
    }

    /// Requires that `pcrs`, in PCR order, hash to the quote's digest.
    pub fn check_pcr_values(&self, pcrs: &[Vec<u8>]) -> Result<[[u8; 32]; PCR_COUNT], QuoteError> {
        self.require_all_sha256_pcrs()?;
        let values: Vec<[u8; 32]> = pcrs
            .iter()
            .filter_map(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .collect();
        let values: [[u8; 32]; PCR_COUNT] = match values.try_into() {
            Ok(values) if pcrs.len() == PCR_COUNT => values,
            _ => {
                return Err(QuoteError::PcrValues {
                    found: format!(
                        "{} ({} of them 32 bytes)",
                        pcrs.len(),
                        pcrs.iter().filter(|v| v.len() == 32).count()
                    ),
                });
            }
        };
        let mut hasher = Sha256::new();
        for value in &values {
            hasher.update(value);
        }
        if hasher.finalize().as_slice() != self.pcr_digest.as_slice() {
            return Err(QuoteError::PcrDigestMismatch);
        }
        Ok(values)
    }
}

/// Verifies the RSASSA-PKCS1-v1_5 SHA-256 `signature` over `message` by `key`.
pub fn verify_signature(
    key: &rsa::PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), QuoteError> {
    let signature =
        rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| QuoteError::BadSignature)?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
        .verify(message, &signature)
        .map_err(|_| QuoteError::BadSignature)
}

/// Requires `extra_data == nonce` (constant time).
pub fn check_nonce(info: &QuoteInfo, nonce: &[u8]) -> Result<(), QuoteError> {
    use subtle::ConstantTimeEq;
    if info.extra_data.len() == nonce.len() && bool::from(info.extra_data.ct_eq(nonce)) {
        Ok(())
    } else {
        Err(QuoteError::NonceMismatch {
            expected: hex::encode(nonce),
            found: hex::encode(&info.extra_data),
        })
    }
}

fn describe_selection(banks: &[(u16, Vec<u8>)]) -> String {
    if banks.is_empty() {
        return "no PCR bank".into();
    }
    banks
        .iter()
        .map(|(alg, bitmap)| {
            let name = match *alg {
                ALG_SHA256 => "SHA-256".to_string(),
                0x0004 => "SHA-1".to_string(),
                0x000c => "SHA-384".to_string(),
                other => format!("algorithm {other:#06x}"),
            };
            let pcrs: Vec<String> = (0..bitmap.len() * 8)
                .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
                .map(|i| i.to_string())
                .collect();
            format!("{name} bank PCRs [{}]", pcrs.join(","))
        })
        .collect::<Vec<_>>()
        .join(" and ")
}
