//! vTPM evidence of Azure confidential VMs (SEV-SNP and TDX) and cipherlake's sim-vtpm.
//!
//! On an Azure confidential VM the guest has no SEV-SNP or TDX device: the paravisor holds the
//! hardware report and exposes it through the vTPM. The evidence is the HCL report (hardware
//! report plus runtime claims), a TPM quote by the attestation key the runtime claims carry,
//! and the PCR values. The checks, in order:
//!
//! 1. parse the HCL report for the hardware report type the caller expects (the unsigned
//!    header confirms, never chooses);
//! 2. verify the hardware report: SEV-SNP through the VCEK/VLEK to AMD's roots, TDX's TD
//!    quote through DCAP, sim-vtpm's sim report by a registered LAS platform key;
//! 3. require SHA-256(runtime claims) == the *verified* report's report data [0..32];
//! 4. take the attestation key from the runtime claims by `kid` `HCLAkPub`;
//! 5. verify the TPM quote: magic, type, RSASSA-PKCS1-v1_5 SHA-256 signature by that key;
//! 6. require extraData == the nonce;
//! 7. require the SHA-256 bank with all 24 PCRs selected and the values hashing to pcrDigest;
//! 8. version 2: require the runtime claims' `user-data` to start with the nonce.

pub mod hcl;
pub mod layout;
pub mod runtime_claims;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use hcl::{HclReport, ReportType};
pub use layout::VtpmEvidence;
pub use runtime_claims::RuntimeClaims;

use crate::tpm::quote::{self, QuoteInfo};
use crate::{Claims, Tee, VerifyError, VtpmClaims};

/// The longest nonce a TPM quote carries (`TPM2B_DATA` of a SHA-512-sized buffer).
pub const MAX_NONCE: usize = 64;

/// Verifies the hardware report of an HCL report and returns its claims: the part that
/// differs between SEV-SNP, TDX and sim-vtpm.
pub(crate) type HardwareVerifier<'a> =
    &'a dyn Fn(&HclReport<'_>, &VtpmEvidence) -> Result<Claims, VerifyError>;

/// Verifies vTPM evidence (`json`, any layout version) of kind `tee` against `nonce`.
/// `hardware` verifies the hardware report the HCL report carries.
pub(crate) fn verify(
    tee: Tee,
    json: &[u8],
    nonce: &[u8],
    report_type: ReportType,
    hardware: HardwareVerifier<'_>,
) -> Result<Claims, VerifyError> {
    if nonce.len() > MAX_NONCE {
        return Err(VerifyError::malformed(
            "nonce",
            MAX_NONCE,
            format!(
                "{} bytes; a TPM quote carries at most {MAX_NONCE}",
                nonce.len()
            ),
        ));
    }
    let evidence = VtpmEvidence::parse(json)?;
    let hcl = HclReport::parse(&evidence.hcl_report, report_type)?;
    let hw_claims = hardware(&hcl, &evidence)?;
    let digest = Sha256::digest(hcl.runtime_claims);
    if !bool::from(digest.as_slice().ct_eq(&hw_claims.report_data[..32])) {
        return Err(VerifyError::RuntimeClaimsMismatch {
            runtime_claims: hex::encode(digest),
            report_data: hex::encode(&hw_claims.report_data[..32]),
        });
    }
    let runtime = RuntimeClaims::parse(hcl.runtime_claims)?;
    let info = QuoteInfo::parse(&evidence.quote_message)?;
    quote::verify_signature(
        &runtime.attestation_key,
        &evidence.quote_message,
        &evidence.quote_signature,
    )?;
    quote::check_nonce(&info, nonce)?;
    let pcrs = info.check_pcr_values(&evidence.pcrs)?;
    if evidence.version >= 2 {
        let prefix = runtime.user_data.get(..nonce.len());
        if !prefix.is_some_and(|p| bool::from(p.ct_eq(nonce))) {
            return Err(VerifyError::UserDataMismatch {
                user_data: hex::encode(&runtime.user_data),
            });
        }
    }
    let mut report_data = [0u8; 64];
    report_data[..nonce.len()].copy_from_slice(nonce);
    Ok(Claims {
        tee,
        report_data,
        vtpm: Some(VtpmClaims {
            nonce: nonce.to_vec(),
            tpm_pcrs: pcrs.iter().map(|p| p.to_vec()).collect(),
            vm_configuration: runtime.vm_configuration,
            user_data: runtime.user_data,
            hardware_report_data: hw_claims.report_data.to_vec(),
        }),
        ..hw_claims
    })
}
