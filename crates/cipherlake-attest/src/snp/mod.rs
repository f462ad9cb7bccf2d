//! AMD SEV-SNP attestation reports: the VCEK (or VLEK) signature over the report, the
//! VEK ← ASK ← ARK chain to AMD's built-in roots for Milan, Genoa and Turin, the VEK's match
//! with the reporting chip and TCB, and the decoded policy and TCB values.

mod chain;
#[cfg(test)]
mod chain_tests;
mod report;
pub mod roots;

use der::asn1::ObjectIdentifier;
use p384::ecdsa::signature::Verifier as _;

pub use chain::{AmdCrl, Root, SnpCollateral, SnpTrust};
pub use report::{REPORT_LEN, SIGNED_LEN, SigningKey, SnpReport};

use crate::{Claims, SnpClaims, SnpPolicy, SnpTcb, TcbStatus, Tee, VerifyError};

const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";

/// Verifies an SEV-SNP attestation report with its VEK (and chain) as of `at` (unix secs).
pub fn verify_report(
    raw: &[u8],
    collateral: &SnpCollateral,
    trust: &SnpTrust,
    at: u64,
) -> Result<Claims, VerifyError> {
    let report = SnpReport::parse(raw)?;
    let signing_key = report.signing_key()?;
    let verified = chain::verify_chain(collateral, trust, signing_key, report.product()?, at)?;
    let turin = verified.product == "Turin";
    check_vek_matches(&report, collateral, signing_key, turin)?;

    let signature = p384::ecdsa::Signature::from_scalars(report.sig_r, report.sig_s)
        .map_err(|e| VerifyError::malformed("SEV-SNP report", 0x2A0, e.to_string()))?;
    let signed = raw
        .get(..SIGNED_LEN)
        .ok_or_else(|| VerifyError::malformed("SEV-SNP report", raw.len(), "truncated"))?;
    verified
        .vek_key
        .verify(signed, &signature)
        .map_err(|_| VerifyError::BadSignature {
            what: "the SEV-SNP report (by the VCEK/VLEK)".into(),
        })?;

    let policy = decode_policy(report.policy);
    let tcb = |raw| decode_tcb(raw, turin);
    Ok(Claims {
        tee: Tee::SevSnp,
        attested_tee: None,
        evidence_version: report.version,
        measurement: report.measurement.to_vec(),
        rtmrs: Vec::new(),
        // The ID and author key digests are SEV-SNP's own fields (`snp`), pinned by name.
        signer: None,
        product_id: None,
        svn: Some(report.guest_svn),
        debug: policy.debug_allowed,
        tcb_status: TcbStatus::NotEvaluated,
        advisory_ids: Vec::new(),
        report_data: report.report_data,
        host_data: Some(report.host_data.to_vec()),
        platform_id: None,
        timestamp: None,
        collateral: None,
        sgx: None,
        tdx: None,
        snp: Some(SnpClaims {
            product: verified.product.to_string(),
            signing_key: match signing_key {
                SigningKey::Vcek => "vcek",
                SigningKey::Vlek => "vlek",
            }
            .to_string(),
            policy,
            vmpl: report.vmpl,
            family_id: report.family_id.to_vec(),
            image_id: report.image_id.to_vec(),
            id_key_digest: report.id_key_digest.to_vec(),
            author_key_digest: report.author_key_digest.to_vec(),
            chip_id: report.chip_id.to_vec(),
            reported_tcb: tcb(report.reported_tcb),
            current_tcb: tcb(report.current_tcb),
            committed_tcb: tcb(report.committed_tcb),
            launch_tcb: tcb(report.launch_tcb),
        }),
        vtpm: None,
    })
}

/// Decodes the guest policy bits.
pub fn decode_policy(raw: u64) -> SnpPolicy {
    let bit = |n: u32| raw & (1 << n) != 0;
    SnpPolicy {
        raw,
        abi_minor: raw.to_le_bytes()[0],
        abi_major: raw.to_le_bytes()[1],
        smt_allowed: bit(16),
        migrate_ma_allowed: bit(18),
        debug_allowed: bit(19),
        single_socket: bit(20),
    }
}

/// Decodes a TCB_VERSION. Turin moved the fields and added the FMC SPL.
pub fn decode_tcb(raw: u64, turin: bool) -> SnpTcb {
    let b = raw.to_le_bytes();
    if turin {
        SnpTcb {
            raw,
            fmc: Some(b[0]),
            bootloader: b[1],
            tee: b[2],
            snp: b[3],
            microcode: b[7],
        }
    } else {
        SnpTcb {
            raw,
            fmc: None,
            bootloader: b[0],
            tee: b[1],
            snp: b[6],
            microcode: b[7],
        }
    }
}

/// Refuses a VEK issued for another chip or another TCB than the report's.
fn check_vek_matches(
    report: &SnpReport,
    collateral: &SnpCollateral,
    signing_key: SigningKey,
    turin: bool,
) -> Result<(), VerifyError> {
    let ext = |oid: &str| -> Option<Vec<u8>> {
        let oid = ObjectIdentifier::new(oid).ok()?;
        collateral
            .vek
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    if signing_key == SigningKey::Vcek && !report.chip_id_masked() {
        let hwid = ext(OID_HWID).ok_or_else(|| VerifyError::PlatformMismatch {
            reason: "the VCEK has no hardware id extension".into(),
        })?;
        // The extension holds the 64-byte chip id, bare or as a DER OCTET STRING.
        let hwid = match hwid.as_slice() {
            [0x04, 0x40, rest @ ..] if rest.len() == 64 => rest.to_vec(),
            _ => hwid,
        };
        if hwid != report.chip_id {
            return Err(VerifyError::PlatformMismatch {
                reason: format!(
                    "VCEK is for chip {}…, report is from chip {}…",
                    hex::encode(hwid.get(..8).unwrap_or_default()),
                    hex::encode(&report.chip_id[..8])
                ),
            });
        }
    }
    let reported = decode_tcb(report.reported_tcb, turin);
    let mut expected = vec![
        ("bootloader", OID_BL_SPL, reported.bootloader),
        ("TEE", OID_TEE_SPL, reported.tee),
        ("SNP", OID_SNP_SPL, reported.snp),
        ("microcode", OID_UCODE_SPL, reported.microcode),
    ];
    if let Some(fmc) = reported.fmc {
        expected.push(("FMC", OID_FMC_SPL, fmc));
    }
    for (name, oid, value) in expected {
        let cert_value = ext(oid).and_then(|v| der_small_uint(&v));
        if cert_value != Some(value) {
            return Err(VerifyError::PlatformMismatch {
                reason: format!(
                    "VCEK/VLEK {name} SPL is {}, report's reported TCB has {value}",
                    cert_value.map_or_else(|| "missing".into(), |v| v.to_string())
                ),
            });
        }
    }
    Ok(())
}

/// Decodes a DER INTEGER that fits in a byte.
fn der_small_uint(der: &[u8]) -> Option<u8> {
    match der {
        [0x02, 0x01, v] if *v < 0x80 => Some(*v),
        [0x02, 0x02, 0x00, v] if *v >= 0x80 => Some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_parse_and_asks_are_signed_by_their_arks() {
        let roots = chain::builtin_roots();
        assert_eq!(roots.len(), 3);
        for root in roots.iter() {
            root.check_self_consistent().expect(root.product);
        }
    }

    #[test]
    fn policy_and_tcb_bits() {
        let p = decode_policy(0x0003_0000 | (1 << 19));
        assert!(p.smt_allowed && p.debug_allowed && !p.migrate_ma_allowed);
        let t = decode_tcb(0x1500_0000_0000_0304, false);
        assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (4, 3, 0, 0x15));
        let t = decode_tcb(0x1500_0000_0504_0301, true);
        assert_eq!((t.fmc, t.bootloader, t.tee, t.snp), (Some(1), 3, 4, 5));
    }

    #[test]
    fn der_integers() {
        assert_eq!(der_small_uint(&[2, 1, 7]), Some(7));
        assert_eq!(der_small_uint(&[2, 2, 0, 0xd1]), Some(0xd1));
        assert_eq!(der_small_uint(&[2, 1, 0x80]), None);
        assert_eq!(der_small_uint(&[4, 1, 7]), None);
    }
}
