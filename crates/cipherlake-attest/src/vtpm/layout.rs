//! The JSON layouts of vTPM evidence, as CoCo trustee's `az-snp-vtpm` and `az-tdx-vtpm`
//! verifiers take them and CoCo's guest-components attester writes them.
//!
//! | version | how it is told | TPM quote | HCL report | VCEK (SNP) / TD quote (TDX) |
//! |---|---|---|---|---|
//! | 0 | no `version` field | SNP `quote`, TDX `tpm_quote`: byte arrays as JSON integer lists | SNP `report`, TDX `hcl_report`: integer list | SNP `vcek`: PEM string; TDX `td_quote`: integer list |
//! | 1, 2 | `"version": 1` or `2` | `tpm_quote`: `signature`, `message` and each of `pcrs` in hex | `hcl_report`: URL-safe base64 | `vcek` (DER) / `td_quote`: URL-safe base64 |
//!
//! Version 2 evidence promises that the runtime claims' `user-data` starts with the nonce.
//! cipherlake's attesters write version 2; sim-vtpm evidence has the same layout without a
//! VCEK or TD quote.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::VerifyError;

const WHAT: &str = "vTPM evidence JSON";

/// The version cipherlake's attesters write.
pub const CURRENT_VERSION: u32 = 2;

/// vTPM evidence of any layout version, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmEvidence {
    /// The layout version (0, 1 or 2).
    pub version: u32,
    /// The marshalled `TPMS_ATTEST` the attestation key signed.
    pub quote_message: Vec<u8>,
    /// The raw RSA signature over it.
    pub quote_signature: Vec<u8>,
    /// The SHA-256 PCR values, in PCR order.
    pub pcrs: Vec<Vec<u8>>,
    /// The HCL report.
    pub hcl_report: Vec<u8>,
    /// SEV-SNP: the VCEK or VLEK, DER or PEM.
    pub vcek: Option<Vec<u8>>,
    /// TDX: the TD quote.
    pub td_quote: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct HexQuote {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Current {
    version: u32,
    tpm_quote: HexQuote,
    hcl_report: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vcek: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    td_quote: Option<String>,
}

#[derive(Deserialize)]
struct ListQuote {
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct SnpV0 {
    quote: ListQuote,
    report: Vec<u8>,
    vcek: String,
}

#[derive(Deserialize)]
struct TdxV0 {
    tpm_quote: ListQuote,
    hcl_report: Vec<u8>,
    td_quote: Vec<u8>,
}

impl VtpmEvidence {
    /// Decodes evidence of layout version 0, 1 or 2.
    pub fn parse(json: &[u8]) -> Result<Self, VerifyError> {
        let value: Value = serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
        let Some(version) = value.get("version") else {
            return Self::parse_v0(value);
        };
        let version = version
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| malformed(format!("version {version} is not a number")))?;
        if !(1..=CURRENT_VERSION).contains(&version) {
            return Err(VerifyError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let doc: Current = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        let hex_field = |name: &str, text: &str| {
            hex::decode(text).map_err(|e| malformed(format!("tpm_quote.{name}: {e}")))
        };
        Ok(VtpmEvidence {
            version,
            quote_message: hex_field("message", &doc.tpm_quote.message)?,
            quote_signature: hex_field("signature", &doc.tpm_quote.signature)?,
            pcrs: doc
                .tpm_quote
                .pcrs
                .iter()
                .map(|p| hex_field("pcrs", p))
                .collect::<Result<_, _>>()?,
            hcl_report: base64url("hcl_report", &doc.hcl_report)?,
            vcek: doc.vcek.map(|v| base64url("vcek", &v)).transpose()?,
            td_quote: doc
                .td_quote
                .map(|v| base64url("td_quote", &v))
                .transpose()?,
        })
    }

    fn parse_v0(value: Value) -> Result<Self, VerifyError> {
        if value.get("quote").is_some() {
            let doc: SnpV0 = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
            return Ok(VtpmEvidence {
                version: 0,
                quote_message: doc.quote.message,
                quote_signature: doc.quote.signature,
                pcrs: doc.quote.pcrs,
                hcl_report: doc.report,
                vcek: Some(doc.vcek.into_bytes()),
                td_quote: None,
            });
        }
        let doc: TdxV0 = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        Ok(VtpmEvidence {
            version: 0,
            quote_message: doc.tpm_quote.message,
            quote_signature: doc.tpm_quote.signature,
            pcrs: doc.tpm_quote.pcrs,
            hcl_report: doc.hcl_report,
            vcek: None,
            td_quote: Some(doc.td_quote),
        })
    }

    /// Encodes the evidence in the current layout (version 2).
    pub fn to_json(&self) -> Vec<u8> {
        let doc = Current {
            version: CURRENT_VERSION,
            tpm_quote: HexQuote {
                signature: hex::encode(&self.quote_signature),
                message: hex::encode(&self.quote_message),
                pcrs: self.pcrs.iter().map(hex::encode).collect(),
            },
            hcl_report: URL_SAFE_NO_PAD.encode(&self.hcl_report),
            vcek: self.vcek.as_ref().map(|v| URL_SAFE_NO_PAD.encode(v)),
            td_quote: self.td_quote.as_ref().map(|v| URL_SAFE_NO_PAD.encode(v)),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

fn malformed(reason: String) -> VerifyError {
    VerifyError::collateral(WHAT, reason)
}

/// URL-safe base64, padded or not (trustee writes padding; both are read).
fn base64url(field: &str, text: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| malformed(format!("{field}: {e}")))
}
