//! Intel SGX and TDX DCAP quotes (v3, v4, v5), verified with `dcap-qvl` against Intel's root
//! using collateral supplied offline and an explicit verification time.
//!
//! Before handing the quote to `dcap-qvl`, the collateral is checked against the quote
//! (TEE type, FMSPC) and the verification time against the TCB info and QE identity validity
//! so that the most common refusals carry precise reasons; `dcap-qvl`'s own refusals are then
//! classified into [`VerifyError`] variants.

use dcap_qvl::quote::{Quote, Report};
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{QuoteCollateralV3, Tcb, TcbComponents, TcbInfo, TcbLevel};
use serde::Deserialize;

use crate::time::format_unix;
use crate::{Claims, SgxClaims, TcbStatus, TdxClaims, Tee, VerifyError};

const HEADER_LEN: usize = 48;
const SGX_REPORT_LEN: usize = 384;
const TD10_REPORT_LEN: usize = 584;
const V5_BODY_HEADER_LEN: usize = 6;
const TEE_TYPE_SGX: u32 = 0;
const TEE_TYPE_TDX: u32 = 0x81;

/// DCAP collateral for one platform (FMSPC), parsed once and reusable across quotes.
#[derive(Debug, Clone)]
pub struct DcapCollateral {
    raw: QuoteCollateralV3,
    tcb_info: DatedId,
    qe_identity: DatedId,
}

/// The fixture / PCCS JSON layout: PEM chains, JSON documents, and CRLs and signatures in hex.
#[derive(Deserialize)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default)]
    pck_certificate_chain: Option<String>,
}

/// The identifying and dating fields of a TCB info or QE identity document.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatedId {
    id: String,
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
    #[serde(default)]
    tcb_evaluation_data_number: Option<u32>,
}

impl DcapCollateral {
    /// Parses collateral in the JSON layout of the fixtures (and of `dcap-qvl`'s PCCS client):
    /// `pck_crl_issuer_chain`, `root_ca_crl` (hex DER), `pck_crl` (hex DER),
    /// `tcb_info_issuer_chain`, `tcb_info`, `tcb_info_signature` (hex), `qe_identity_issuer_chain`,
    /// `qe_identity`, `qe_identity_signature` (hex), optionally `pck_certificate_chain`.
    pub fn from_json(json: &[u8]) -> Result<Self, VerifyError> {
        let c: CollateralJson = serde_json::from_slice(json)
            .map_err(|e| VerifyError::collateral("DCAP collateral JSON", e))?;
        let hex_field = |name: &str, value: &str| {
            hex::decode(value.trim())
                .map_err(|e| VerifyError::collateral(format!("DCAP collateral field {name}"), e))
        };
        let tcb_info: DatedId = serde_json::from_str(&c.tcb_info)
            .map_err(|e| VerifyError::collateral("DCAP TCB info", e))?;
        let qe_identity: DatedId = serde_json::from_str(&c.qe_identity)
            .map_err(|e| VerifyError::collateral("DCAP QE identity", e))?;
        let raw = QuoteCollateralV3 {
            root_ca_crl: hex_field("root_ca_crl", &c.root_ca_crl)?,
            pck_crl: hex_field("pck_crl", &c.pck_crl)?,
            tcb_info_signature: hex_field("tcb_info_signature", &c.tcb_info_signature)?,
            qe_identity_signature: hex_field("qe_identity_signature", &c.qe_identity_signature)?,
            pck_crl_issuer_chain: c.pck_crl_issuer_chain,
            tcb_info_issuer_chain: c.tcb_info_issuer_chain,
            tcb_info: c.tcb_info,
            qe_identity_issuer_chain: c.qe_identity_issuer_chain,
            qe_identity: c.qe_identity,
            pck_certificate_chain: c.pck_certificate_chain,
        };
        Ok(DcapCollateral {
            raw,
            tcb_info,
            qe_identity,
        })
    }
}

impl DcapCollateral {
    /// The FMSPC the TCB info is for (hex, upper case as Intel writes it).
    pub fn fmspc(&self) -> Option<&str> {
        self.tcb_info.fmspc.as_deref()
    }

    /// The TEE the TCB info is for (`SGX` or `TDX`, as Intel names it).
    pub fn tcb_id(&self) -> &str {
        &self.tcb_info.id
    }

    /// When the TCB info must be replaced (unix seconds).
    pub fn next_update(&self) -> Option<u64> {
        crate::time::parse_rfc3339(&self.tcb_info.next_update).ok()
    }

    /// The TCB info's evaluation data number and issue date.
    pub fn claims(&self) -> Option<crate::CollateralClaims> {
        Some(crate::CollateralClaims {
            tcb_evaluation_data_number: self.tcb_info.tcb_evaluation_data_number?,
            issued: crate::time::parse_rfc3339(&self.tcb_info.issue_date).ok()?,
        })
    }
}

/// Verifies a DCAP quote (SGX v3/v4, TDX v4/v5) with its collateral as of `at` (unix secs).
pub fn verify_quote(
    raw_quote: &[u8],
    collateral: &DcapCollateral,
    at: u64,
) -> Result<Claims, VerifyError> {
    let quote = parse_quote(raw_quote)?;
    let tee = tee_of(&quote)?;
    check_platform(&quote, tee, collateral)?;
    check_dates("TCB info", &collateral.tcb_info, at)?;
    check_dates("QE identity", &collateral.qe_identity, at)?;

    // Every check of dcap-qvl runs (signatures, chains, CRLs, QE identity, TDX module); the
    // only change to the signed TCB info is the floor level below, which makes a platform
    // older than every listed level come out as OutOfDate instead of unappraisable.
    let verified = QuoteVerifier::new_prod()
        .allow_debug(true)
        .dangerous_verify_claims_with_tcb_override(raw_quote, &collateral.raw, at, with_floor_level)
        .map_err(|e| classify(&e, at))?;
    let mut claims = claims_from(tee, &verified)?;
    claims.collateral = collateral.claims();
    Ok(claims)
}

/// The FMSPC of the platform a quote comes from (hex, upper case), read from the PCK
/// certificate it carries (not verified here: verification checks it against the TCB info).
pub fn quote_fmspc(raw_quote: &[u8]) -> Result<String, VerifyError> {
    let quote = parse_quote(raw_quote)?;
    dcap_qvl::intel::quote_fmspc(&quote)
        .map(hex::encode_upper)
        .map_err(|e| VerifyError::malformed("DCAP quote", 0, format!("no FMSPC: {e}")))
}

/// Parses a quote's structure (no signature checks) and says which TEE it comes from.
pub fn quote_tee(raw_quote: &[u8]) -> Result<Tee, VerifyError> {
    tee_of(&parse_quote(raw_quote)?)
}

fn tee_of(quote: &Quote) -> Result<Tee, VerifyError> {
    match quote.header.tee_type {
        TEE_TYPE_SGX => Ok(Tee::Sgx),
        TEE_TYPE_TDX => Ok(Tee::Tdx),
        other => Err(VerifyError::malformed(
            "DCAP quote",
            4,
            format!("unknown TEE type {other:#x}"),
        )),
    }
}

/// Parses the quote, reporting structural problems with their byte offset.
fn parse_quote(raw: &[u8]) -> Result<Quote, VerifyError> {
    const WHAT: &str = "DCAP quote";
    let header = raw
        .get(..HEADER_LEN)
        .ok_or_else(|| VerifyError::malformed(WHAT, raw.len(), "truncated header (48 bytes)"))?;
    let version = u16::from_le_bytes([header[0], header[1]]);
    let body_end = match version {
        3 | 4 => {
            let tee_type = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            HEADER_LEN
                + if tee_type == TEE_TYPE_TDX {
                    TD10_REPORT_LEN
                } else {
                    SGX_REPORT_LEN
                }
        }
        5 => {
            let body = raw
                .get(HEADER_LEN..HEADER_LEN + V5_BODY_HEADER_LEN)
                .ok_or_else(|| VerifyError::malformed(WHAT, raw.len(), "truncated body header"))?;
            let size = u32::from_le_bytes([body[2], body[3], body[4], body[5]]) as usize;
            HEADER_LEN + V5_BODY_HEADER_LEN + size
        }
        other => {
            return Err(VerifyError::UnsupportedVersion {
                what: "DCAP quote",
                version: u32::from(other),
            });
        }
    };
    let len_field = raw
        .get(body_end..body_end + 4)
        .ok_or_else(|| VerifyError::malformed(WHAT, raw.len(), "truncated report body"))?;
    let auth_len = u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]);
    let available = raw.len() - body_end - 4;
    if auth_len as usize > available {
        return Err(VerifyError::malformed(
            WHAT,
            body_end,
            format!("signature data length {auth_len} exceeds the {available} bytes left"),
        ));
    }
    Quote::parse(raw).map_err(|e| VerifyError::malformed(WHAT, body_end + 4, format!("{e:#}")))
}

/// Refuses collateral issued for another TEE type or another platform (FMSPC).
fn check_platform(quote: &Quote, tee: Tee, c: &DcapCollateral) -> Result<(), VerifyError> {
    let (tcb_id, qe_id) = match tee {
        Tee::Tdx => ("TDX", "TD_QE"),
        _ => ("SGX", "QE"),
    };
    if c.tcb_info.id != tcb_id {
        return Err(VerifyError::PlatformMismatch {
            reason: format!(
                "{tee} quote with TCB info for {:?} (expected {tcb_id:?})",
                c.tcb_info.id
            ),
        });
    }
    if c.qe_identity.id != qe_id {
        return Err(VerifyError::PlatformMismatch {
            reason: format!(
                "{tee} quote with QE identity {:?} (expected {qe_id:?})",
                c.qe_identity.id
            ),
        });
    }
    // The FMSPC is read from the PCK certificate in the quote; if that fails, dcap-qvl
    // reports the certificate problem below.
    if let (Ok(fmspc), Some(expected)) = (dcap_qvl::intel::quote_fmspc(quote), &c.tcb_info.fmspc) {
        let fmspc = hex::encode(fmspc);
        if !fmspc.eq_ignore_ascii_case(expected) {
            return Err(VerifyError::PlatformMismatch {
                reason: format!(
                    "quote's PCK certificate has FMSPC {fmspc}, TCB info is for FMSPC {}",
                    expected.to_ascii_lowercase()
                ),
            });
        }
    }
    Ok(())
}

/// Appends to the TCB info a level every platform meets, `OutOfDate`, dated like the oldest
/// listed level and carrying the advisories of all listed levels. Levels are matched highest
/// first, so this floor applies only to a platform below every level Intel lists: such a
/// platform is older than the oldest out-of-date level, and is reported as out of date (Intel's
/// QVL calls it "TCB not supported" and fails). It never changes the status of a platform that
/// meets a listed level.
fn with_floor_level(mut info: TcbInfo) -> TcbInfo {
    let Some(template) = info.tcb_levels.first() else {
        return info;
    };
    let zeros = |n: usize| vec![TcbComponents { svn: 0 }; n];
    let tcb = Tcb {
        sgx_components: zeros(template.tcb.sgx_components.len()),
        tdx_components: zeros(template.tcb.tdx_components.len()),
        pce_svn: 0,
    };
    let mut advisory_ids: Vec<String> = Vec::new();
    for id in info.tcb_levels.iter().flat_map(|l| &l.advisory_ids) {
        if !advisory_ids.contains(id) {
            advisory_ids.push(id.clone());
        }
    }
    // RFC 3339 dates in UTC ("...Z") order lexicographically.
    let oldest = info
        .tcb_levels
        .iter()
        .map(|l| l.tcb_date.clone())
        .min()
        .unwrap_or_default();
    info.tcb_levels.push(TcbLevel {
        tcb,
        tcb_date: oldest,
        tcb_status: dcap_qvl::TcbStatus::OutOfDate,
        advisory_ids,
    });
    info
}

/// Refuses a verification time outside `[issueDate, nextUpdate]` of a collateral document.
fn check_dates(what: &str, doc: &DatedId, at: u64) -> Result<(), VerifyError> {
    let parse = |value: &str, field: &str| {
        crate::time::parse_rfc3339(value)
            .map_err(|e| VerifyError::collateral(format!("DCAP {what} {field}"), e))
    };
    let issued = parse(&doc.issue_date, "issueDate")?;
    let next_update = parse(&doc.next_update, "nextUpdate")?;
    if at < issued {
        return Err(VerifyError::CollateralNotYetValid {
            what: format!("{what} issued {}", doc.issue_date),
            at: format_unix(at),
        });
    }
    if at > next_update {
        return Err(VerifyError::CollateralExpired {
            what: format!("{what} next update was due {}", doc.next_update),
            at: format_unix(at),
        });
    }
    Ok(())
}

/// Maps a `dcap-qvl` refusal to a [`VerifyError`] by the failure it describes.
fn classify(err: &anyhow::Error, at: u64) -> VerifyError {
    let msg = format!("{err:#}");
    let has = |needle: &str| msg.contains(needle);
    let chain = chain_name(&msg);
    let at = format_unix(at);
    if has("CertRevoked") {
        VerifyError::Revoked {
            what: format!("a certificate in the {chain} chain"),
        }
    } else if has("TCB status is invalid: Revoked") {
        VerifyError::Revoked {
            what: "the platform TCB".into(),
        }
    } else if has("CertExpired") || has("CrlExpired") || has("expired") {
        VerifyError::CollateralExpired { what: msg, at }
    } else if has("CertNotValidYet") || has("in the future") {
        VerifyError::CollateralNotYetValid { what: msg, at }
    } else if has("UnknownIssuer") || has("Failed to parse root CA CRL") {
        VerifyError::UntrustedRoot {
            what: chain,
            reason: msg,
        }
    } else if has("InvalidSignatureForPublicKey")
        || has("InvalidCrlSignatureForPublicKey")
        || has("BadDer")
        || has("Failed to parse certs")
        || has("certificate")
    {
        VerifyError::BadCertificate {
            what: chain,
            reason: msg,
        }
    } else if has("Failed to decode TcbInfo") || has("Failed to decode QeIdentity") {
        VerifyError::collateral("DCAP collateral", msg)
    } else if has("Fmspc mismatch") || has("TCB info in the collateral") || has("QE Identity id") {
        VerifyError::PlatformMismatch { reason: msg }
    } else if has("Signature is invalid for tcb_info") {
        bad_signature("the TCB info")
    } else if has("Signature is invalid for qe_identity") {
        bad_signature("the QE identity")
    } else if has("Signature is invalid for qe_report") {
        bad_signature("the quoting enclave report (by the PCK)")
    } else if has("QE report hash mismatch") {
        bad_signature("the attestation key (QE report data does not bind it)")
    } else if has("ISV enclave report signature is invalid") {
        bad_signature("the quote body (by the attestation key)")
    } else if has("Failed to decode quote") {
        VerifyError::malformed("DCAP quote", 0, msg)
    } else {
        VerifyError::QuoteRejected { reason: msg }
    }
}

fn bad_signature(what: &str) -> VerifyError {
    VerifyError::BadSignature { what: what.into() }
}

/// Names the certificate chain a `dcap-qvl` message is about.
fn chain_name(msg: &str) -> String {
    if msg.contains("TCB Info") {
        "TCB info signing".into()
    } else if msg.contains("QE Identity") {
        "QE identity signing".into()
    } else if msg.contains("PCK") || msg.contains("certificate chain") {
        "PCK".into()
    } else {
        "Intel DCAP".into()
    }
}

fn claims_from(tee: Tee, verified: &dcap_qvl::QuoteClaims) -> Result<Claims, VerifyError> {
    let tcb_status = match verified.tcb.status {
        dcap_qvl::TcbStatus::UpToDate => TcbStatus::UpToDate,
        dcap_qvl::TcbStatus::SWHardeningNeeded => TcbStatus::SwHardeningNeeded,
        dcap_qvl::TcbStatus::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
        dcap_qvl::TcbStatus::ConfigurationAndSWHardeningNeeded => {
            TcbStatus::ConfigurationAndSwHardeningNeeded
        }
        dcap_qvl::TcbStatus::OutOfDate => TcbStatus::OutOfDate,
        dcap_qvl::TcbStatus::OutOfDateConfigurationNeeded => {
            TcbStatus::OutOfDateConfigurationNeeded
        }
        dcap_qvl::TcbStatus::TDRelaunchAdvised => TcbStatus::TdRelaunchAdvised,
        dcap_qvl::TcbStatus::TDRelaunchAdvisedConfigurationNeeded => {
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded
        }
        dcap_qvl::TcbStatus::Revoked => {
            return Err(VerifyError::Revoked {
                what: "the platform TCB".into(),
            });
        }
    };
    let mut claims = Claims {
        tee,
        attested_tee: None,
        evidence_version: u32::from(verified.header.version),
        measurement: Vec::new(),
        rtmrs: Vec::new(),
        signer: None,
        product_id: None,
        svn: None,
        debug: false,
        tcb_status,
        advisory_ids: verified.tcb.advisory_ids.clone(),
        report_data: [0; 64],
        host_data: None,
        platform_id: None,
        timestamp: None,
        collateral: None,
        sgx: None,
        tdx: None,
        snp: None,
        vtpm: None,
    };
    match &verified.report {
        Report::SgxEnclave(r) => {
            claims.measurement = r.mr_enclave.to_vec();
            claims.signer = Some(r.mr_signer.to_vec());
            claims.product_id = Some(r.isv_prod_id);
            claims.svn = Some(u32::from(r.isv_svn));
            // SGX ATTRIBUTES.FLAGS bit 1: DEBUG.
            claims.debug = r.attributes[0] & 0x02 != 0;
            claims.report_data = r.report_data;
            // dcap-qvl folds the KSS fields into its reserved arrays (SGX report body:
            // ISVEXTPRODID at 32, CONFIGID at 192, CONFIGSVN at 260, ISVFAMILYID at 304).
            claims.sgx = Some(SgxClaims {
                attributes: r.attributes.to_vec(),
                config_id: r.reserved3[32..96].to_vec(),
                config_svn: u16::from_le_bytes([r.reserved4[0], r.reserved4[1]]),
                isv_ext_prod_id: r.reserved1[12..28].to_vec(),
                isv_family_id: r.reserved4[44..60].to_vec(),
            });
        }
        report => {
            let td = report.as_td10().ok_or_else(|| {
                VerifyError::malformed("DCAP quote", HEADER_LEN, "TD report body expected")
            })?;
            claims.measurement = td.mr_td.to_vec();
            claims.rtmrs = [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3]
                .iter()
                .map(|r| r.to_vec())
                .collect();
            // TD_ATTRIBUTES bit 0 (TUD.DEBUG).
            claims.debug = td.td_attributes[0] & 0x01 != 0;
            claims.report_data = td.report_data;
            claims.host_data = Some(td.mr_config_id.to_vec());
            claims.tdx = Some(TdxClaims {
                mr_seam: td.mr_seam.to_vec(),
                mr_owner: td.mr_owner.to_vec(),
                mr_owner_config: td.mr_owner_config.to_vec(),
                td_attributes: td.td_attributes.to_vec(),
                xfam: td.xfam.to_vec(),
                tee_tcb_svn: td.tee_tcb_svn.to_vec(),
            });
        }
    }
    Ok(claims)
}
