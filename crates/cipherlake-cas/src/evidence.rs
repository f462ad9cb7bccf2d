//! Decoding evidence as sent over the API ([`EvidenceBody`]) into what the verifiers take.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_attest::{Collateral, Evidence, Tee};

use crate::CasError;
use crate::api::{CollateralBody, EvidenceBody};

/// Decodes an evidence body: its TEE, bytes and collateral. Errors name the field.
pub fn decode(body: &EvidenceBody) -> Result<Evidence, CasError> {
    let bad = |m: String| CasError::BadRequest(m);
    let tee: Tee = body
        .tee
        .parse()
        .map_err(|e: String| bad(format!("evidence.tee: {e}")))?;
    let bytes = BASE64
        .decode(body.bytes.trim())
        .map_err(|_| bad("evidence.bytes: not base64".into()))?;
    let mut evidence = Evidence::new(tee, bytes);
    if let Some(collateral) = &body.collateral {
        evidence = evidence.with_collateral(collateral_of(collateral)?);
    }
    Ok(evidence)
}

fn collateral_of(body: &CollateralBody) -> Result<Collateral, CasError> {
    let bad = |m: String| CasError::BadRequest(m);
    match body {
        CollateralBody::Dcap { json } => {
            let json = BASE64
                .decode(json.trim())
                .map_err(|_| bad("collateral.dcap.json: not base64".into()))?;
            cipherlake_attest::dcap::DcapCollateral::from_json(&json)
                .map(|c| Collateral::Dcap(Arc::new(c)))
                .map_err(|e| bad(format!("collateral.dcap: {e}")))
        }
        CollateralBody::Snp { vek, chain_pem } => {
            let vek = BASE64
                .decode(vek.trim())
                .map_err(|_| bad("collateral.snp.vek: not base64".into()))?;
            cipherlake_attest::snp::SnpCollateral::new(
                &vek,
                chain_pem.as_deref().map(str::as_bytes),
            )
            .map(|c| Collateral::Snp(Arc::new(c)))
            .map_err(|e| bad(format!("collateral.snp: {e}")))
        }
    }
}
