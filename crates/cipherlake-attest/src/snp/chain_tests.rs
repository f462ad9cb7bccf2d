//! VLEK chains and AMD CRLs against a test-only PKI (`tests/data/snp-test-pki`, made by its
//! `generate.sh`): AMD's real ASVKs exist but no real VLEK-signed report is available here, so
//! the chain logic is exercised under a test root that stands in for AMD's Milan ARK.

use std::path::PathBuf;

use p384::ecdsa::signature::Signer as _;
use p384::pkcs8::DecodePrivateKey as _;

use super::chain::{AmdCrl, Root, SnpCollateral, SnpTrust, builtin_roots};
use super::{REPORT_LEN, SIGNED_LEN, verify_report};
use crate::VerifyError;

fn pki(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/snp-test-pki")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn milan_report() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/evidence/snp/report_milan.hex");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::decode(text.trim()).expect("hex")
}

fn test_trust() -> SnpTrust {
    SnpTrust::with_test_roots(vec![
        Root::from_pem("Milan", &pki("ark.pem"), &pki("ask.pem"), &pki("asvk.pem")).expect("root"),
    ])
}

/// The Milan fixture report, re-signed by the test VLEK key with `key_info` set.
fn signed_report(key_info: u32) -> Vec<u8> {
    let mut report = milan_report();
    assert_eq!(report.len(), REPORT_LEN);
    report[0x48..0x4c].copy_from_slice(&key_info.to_le_bytes());
    let pem = String::from_utf8(pki("vlek.key")).expect("pem");
    let key = p384::ecdsa::SigningKey::from_pkcs8_pem(&pem).expect("VLEK key");
    let signature: p384::ecdsa::Signature = key.sign(&report[..SIGNED_LEN]);
    let (r, s) = signature.split_bytes();
    let le = |be: &[u8]| {
        let mut out = [0u8; 72];
        for (i, b) in be.iter().rev().enumerate() {
            out[i] = *b;
        }
        out
    };
    report[0x2A0..0x2A0 + 72].copy_from_slice(&le(&r));
    report[0x2E8..0x2E8 + 72].copy_from_slice(&le(&s));
    report
}

const VLEK: u32 = 1 << 2;
const VCEK_CHIP_MASKED: u32 = 0b10;
const AT: u64 = 1_800_000_000; // 2027-01-15

fn verify(
    report: &[u8],
    cert: &str,
    trust: &SnpTrust,
    at: u64,
) -> Result<crate::Claims, VerifyError> {
    let collateral = SnpCollateral::new(&pki(cert), None).expect("certificate");
    verify_report(report, &collateral, trust, at)
}

#[test]
fn builtin_arks_issue_their_asks_and_asvks() {
    let roots = builtin_roots();
    assert_eq!(
        roots.iter().map(|r| r.product).collect::<Vec<_>>(),
        ["Milan", "Genoa", "Turin"]
    );
    for root in roots.iter() {
        root.check_self_consistent().expect(root.product);
    }
}

#[test]
fn a_vlek_signed_report_verifies_through_the_asvk() {
    let claims = verify(&signed_report(VLEK), "vlek.der", &test_trust(), AT).expect("verifies");
    let snp = claims.snp.expect("snp claims");
    assert_eq!(
        (snp.product.as_str(), snp.signing_key.as_str()),
        ("Milan", "vlek")
    );
    // The same under AMD's real roots: AMD's Milan ASVK did not issue this VLEK.
    let err = verify(&signed_report(VLEK), "vlek.der", &SnpTrust::default(), AT)
        .expect_err("test VLEK under AMD roots");
    assert!(matches!(err, VerifyError::BadCertificate { .. }), "{err}");
}

#[test]
fn a_vlek_chained_to_an_ask_is_refused() {
    let err = verify(&signed_report(VLEK), "vlek-by-ask.der", &test_trust(), AT)
        .expect_err("VLEK issued by the ASK");
    assert!(matches!(err, VerifyError::VekIssuer { .. }), "{err}");
    assert!(err.to_string().contains("ASK"), "{err}");
    // And a VCEK-signed report whose certificate the ASVK issued.
    let err = verify(
        &signed_report(VCEK_CHIP_MASKED),
        "vlek.der",
        &test_trust(),
        AT,
    )
    .expect_err("VCEK issued by the ASVK");
    assert!(matches!(err, VerifyError::VekIssuer { .. }), "{err}");
}

#[test]
fn a_revoked_ask_or_asvk_is_refused_with_its_own_reason() {
    let vcek = signed_report(VCEK_CHIP_MASKED);
    let vlek = signed_report(VLEK);
    let crl = |name: &str| AmdCrl::parse(&pki(name)).expect("CRL");
    verify(&vcek, "vlek-by-ask.der", &test_trust(), AT).expect("VCEK path without CRL");
    let revoking_ask = test_trust().with_crl(crl("crl-revoking-ask.der"));
    let err = verify(&vcek, "vlek-by-ask.der", &revoking_ask, AT).expect_err("ASK revoked");
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
    assert!(err.to_string().contains("ASK"), "{err}");
    // The ASK's revocation does not touch the VLEK path; the ASVK's does.
    verify(&vlek, "vlek.der", &revoking_ask, AT).expect("VLEK path, ASK revoked");
    let revoking_asvk = test_trust().with_crl(crl("crl-revoking-asvk.der"));
    let err = verify(&vlek, "vlek.der", &revoking_asvk, AT).expect_err("ASVK revoked");
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
    let empty = test_trust().with_crl(crl("crl-empty.der"));
    verify(&vlek, "vlek.der", &empty, AT).expect("nothing revoked");
}

#[test]
fn a_forged_or_superseded_crl_is_refused() {
    let vlek = signed_report(VLEK);
    let mut der = pki("crl-empty.der");
    let last = der.len() - 1;
    der[last] ^= 1;
    let forged = test_trust().with_crl(AmdCrl::parse(&der).expect("parses"));
    let err = verify(&vlek, "vlek.der", &forged, AT).expect_err("forged CRL");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    // The test ARK's CRL offered for AMD's real Milan ARK (same name): not AMD's signature.
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/evidence/snp");
    let read = |name: &str| std::fs::read(fixture.join(name)).expect("fixture");
    let collateral =
        SnpCollateral::new(&read("vcek_milan.der"), Some(&read("cert_chain_milan"))).expect("VCEK");
    let real = SnpTrust::default();
    verify_report(&milan_report(), &collateral, &real, AT).expect("the real Milan report");
    let with_test_crl = real.with_crl(AmdCrl::parse(&pki("crl-empty.der")).expect("crl"));
    let err = verify_report(&milan_report(), &collateral, &with_test_crl, AT)
        .expect_err("test CRL under AMD roots");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    // Past its next update (October 2048), the CRL no longer vouches for anything.
    let superseded = test_trust().with_crl(AmdCrl::parse(&pki("crl-empty.der")).expect("crl"));
    let err = verify(&vlek, "vlek.der", &superseded, 2_490_000_000).expect_err("superseded CRL");
    assert!(
        matches!(err, VerifyError::CollateralExpired { .. }),
        "{err}"
    );
    assert!(matches!(
        AmdCrl::parse(b"not a crl"),
        Err(VerifyError::MalformedCollateral { .. })
    ));
}
