//! SGX and TDX DCAP quotes: the real fixtures verify; every tampering is refused with its reason.

use cipherlake_attest::{Evidence, TcbStatus, Tee, Verifier, VerifyError, VerifyOptions};

use super::common::*;

const SGX_MRENCLAVE: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";
const SGX_MRSIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";
const TDX_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
const TDX_RTMR0: &str = "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0";
const TDX_OUTDATED_MRTD: &str = "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd";

/// Offset of the ECDSA signature: header (48) + body + auth data length (4).
const SGX_SIG: usize = 48 + 384 + 4;
const TDX_SIG: usize = 48 + 584 + 4;

fn sgx() -> Evidence {
    dcap_evidence(Tee::Sgx, "sgx/sgx_quote", "sgx/sgx_quote_collateral.json")
}

fn tdx() -> Evidence {
    dcap_evidence(Tee::Tdx, "tdx/tdx_quote", "tdx/tdx_quote_collateral.json")
}

fn verify_at(evidence: &Evidence, at: u64) -> Result<cipherlake_attest::Claims, VerifyError> {
    Verifier::new().verify(evidence, &VerifyOptions::at(at))
}

fn verify(evidence: &Evidence) -> Result<cipherlake_attest::Claims, VerifyError> {
    verify_at(evidence, july_2025())
}

fn with_bytes(evidence: &Evidence, bytes: Vec<u8>) -> Evidence {
    Evidence {
        bytes,
        ..evidence.clone()
    }
}

/// Changes one base64 character inside the signature of the first (PCK leaf) certificate of
/// the PEM chain embedded in a quote, keeping the quote's length.
fn flip_pck_cert(quote: &[u8]) -> Vec<u8> {
    let end = quote
        .windows(25)
        .position(|w| w == b"-----END CERTIFICATE-----")
        .expect("PEM chain in quote");
    let pos = (end - 40..end)
        .rev()
        .find(|&i| quote[i].is_ascii_alphanumeric())
        .expect("base64 character");
    let mut out = quote.to_vec();
    out[pos] = if out[pos] == b'A' { b'B' } else { b'A' };
    out
}

#[test]
fn sgx_fixture_verifies() {
    let claims = verify(&sgx()).expect("SGX fixture verifies");
    assert_eq!(claims.tee, Tee::Sgx);
    assert_eq!(claims.evidence_version, 3);
    assert_eq!(hex::encode(&claims.measurement), SGX_MRENCLAVE);
    assert_eq!(
        claims.signer.as_deref().map(hex::encode).as_deref(),
        Some(SGX_MRSIGNER)
    );
    assert_eq!(claims.product_id, Some(0));
    assert_eq!(claims.svn, Some(0));
    assert!(!claims.debug);
    assert_eq!(
        claims.tcb_status,
        TcbStatus::ConfigurationAndSwHardeningNeeded
    );
    assert_eq!(claims.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(claims.report_data.starts_with(b"Hello, world!"));
}

#[test]
fn tdx_fixture_verifies() {
    let claims = verify(&tdx()).expect("TDX fixture verifies");
    assert_eq!(claims.tee, Tee::Tdx);
    assert_eq!(claims.evidence_version, 4);
    assert_eq!(hex::encode(&claims.measurement), TDX_MRTD);
    assert_eq!(claims.rtmrs.len(), 4);
    assert_eq!(hex::encode(&claims.rtmrs[0]), TDX_RTMR0);
    assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    assert!(!claims.debug);
    let tdx = claims.tdx.expect("TDX claims");
    assert_eq!(
        hex::encode(&tdx.tee_tcb_svn),
        "06010300000000000000000000000000"
    );
}

#[test]
fn outdated_tdx_quote_reports_out_of_date() {
    let evidence = dcap_evidence(
        Tee::Tdx,
        "tdx/tdx_quote_outdated",
        "tdx/tdx_quote_outdated_collateral.json",
    );
    let claims = verify_at(&evidence, at("2026-03-01T00:00:00Z")).expect("verifies");
    assert_eq!(claims.evidence_version, 5);
    assert_eq!(hex::encode(&claims.measurement), TDX_OUTDATED_MRTD);
    assert_eq!(claims.tcb_status, TcbStatus::OutOfDate);
    assert!(claims.advisory_ids.iter().any(|a| a == "INTEL-SA-01036"));
}

#[test]
fn flipped_body_byte_is_refused() {
    // A byte of the report data in each quote's signed body.
    for (evidence, offset) in [(sgx(), 48 + 320 + 1), (tdx(), 48 + 520 + 1)] {
        let tampered = with_bytes(&evidence, flip(&evidence.bytes, offset));
        let err = verify(&tampered).expect_err("tampered body");
        assert!(
            matches!(&err, VerifyError::BadSignature { what } if what.contains("quote body")),
            "{err}"
        );
    }
}

#[test]
fn flipped_signature_byte_is_refused() {
    for (evidence, offset) in [(sgx(), SGX_SIG + 10), (tdx(), TDX_SIG + 10)] {
        let tampered = with_bytes(&evidence, flip(&evidence.bytes, offset));
        let err = verify(&tampered).expect_err("tampered signature");
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    }
}

#[test]
fn flipped_certificate_byte_is_refused() {
    for evidence in [sgx(), tdx()] {
        let tampered = with_bytes(&evidence, flip_pck_cert(&evidence.bytes));
        let err = verify(&tampered).expect_err("tampered PCK certificate");
        assert!(matches!(err, VerifyError::BadCertificate { .. }), "{err}");
    }
}

#[test]
fn flipped_collateral_certificate_is_refused() {
    let mut json = dcap_json("sgx/sgx_quote_collateral.json");
    let chain = json["tcb_info_issuer_chain"]
        .as_str()
        .expect("chain")
        .to_string();
    json["tcb_info_issuer_chain"] = flip_in_pem_cert(&chain, 0, 5).into();
    let evidence = Evidence::new(Tee::Sgx, sgx().bytes).with_collateral(dcap_collateral(&json));
    let err = verify(&evidence).expect_err("tampered TCB signing certificate");
    assert!(matches!(err, VerifyError::BadCertificate { .. }), "{err}");
}

#[test]
fn tampered_tcb_info_is_refused() {
    let mut json = dcap_json("sgx/sgx_quote_collateral.json");
    let tcb_info = json["tcb_info"].as_str().expect("tcb_info").replacen(
        "INTEL-SA-00615",
        "INTEL-SA-00616",
        1,
    );
    json["tcb_info"] = tcb_info.into();
    let evidence = Evidence::new(Tee::Sgx, sgx().bytes).with_collateral(dcap_collateral(&json));
    let err = verify(&evidence).expect_err("tampered TCB info");
    assert!(
        matches!(&err, VerifyError::BadSignature { what } if what.contains("TCB info")),
        "{err}"
    );
}

#[test]
fn collateral_of_another_quote_is_refused() {
    let sgx_json = dcap_json("sgx/sgx_quote_collateral.json");
    let tdx_json = dcap_json("tdx/tdx_quote_collateral.json");
    let outdated_json = dcap_json("tdx/tdx_quote_outdated_collateral.json");
    let cases = [
        Evidence::new(Tee::Sgx, sgx().bytes).with_collateral(dcap_collateral(&tdx_json)),
        Evidence::new(Tee::Tdx, tdx().bytes).with_collateral(dcap_collateral(&sgx_json)),
        // Same TEE, another platform (FMSPC).
        Evidence::new(Tee::Tdx, tdx().bytes).with_collateral(dcap_collateral(&outdated_json)),
    ];
    for (i, evidence) in cases.iter().enumerate() {
        let at = if i == 2 {
            at("2026-03-01T00:00:00Z")
        } else {
            july_2025()
        };
        let err = verify_at(evidence, at).expect_err("foreign collateral");
        assert!(
            matches!(err, VerifyError::PlatformMismatch { .. }),
            "{i}: {err}"
        );
    }
}

#[test]
fn time_outside_collateral_validity_is_refused() {
    for evidence in [sgx(), tdx()] {
        let err = verify_at(&evidence, at("2025-08-01T00:00:00Z")).expect_err("expired");
        assert!(
            matches!(err, VerifyError::CollateralExpired { .. }),
            "{err}"
        );
        let err = verify_at(&evidence, at("2025-06-01T00:00:00Z")).expect_err("not yet valid");
        assert!(
            matches!(err, VerifyError::CollateralNotYetValid { .. }),
            "{err}"
        );
    }
}

#[test]
fn chain_to_a_fake_root_is_refused() {
    let fake = fake_chain_pem("Intel SGX Root CA", "Intel SGX TCB Signing");
    for (quote, collateral, tee) in [
        ("sgx/sgx_quote", "sgx/sgx_quote_collateral.json", Tee::Sgx),
        ("tdx/tdx_quote", "tdx/tdx_quote_collateral.json", Tee::Tdx),
    ] {
        let mut json = dcap_json(collateral);
        json["tcb_info_issuer_chain"] = fake.clone().into();
        let evidence =
            Evidence::new(tee, read(fixture(quote))).with_collateral(dcap_collateral(&json));
        let err = verify(&evidence).expect_err("fake root");
        assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
    }
}

#[test]
fn quote_of_another_tee_than_requested_is_refused() {
    let evidence = Evidence {
        tee: Tee::Sgx,
        ..tdx()
    };
    let err = verify(&evidence).expect_err("TDX quote verified as SGX");
    assert!(
        matches!(
            err,
            VerifyError::WrongTee {
                expected: Tee::Sgx,
                found: Tee::Tdx
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_collateral_and_truncation_are_refused() {
    let err = verify(&Evidence::new(Tee::Sgx, sgx().bytes)).expect_err("no collateral");
    assert!(
        matches!(err, VerifyError::MissingCollateral { .. }),
        "{err}"
    );
    let sgx = sgx();
    for len in [0, 47, 100, SGX_SIG - 2, sgx.bytes.len() - 1] {
        let err = verify(&with_bytes(&sgx, sgx.bytes[..len].to_vec())).expect_err("truncated");
        assert!(matches!(err, VerifyError::Malformed { .. }), "{len}: {err}");
    }
    let mut v9 = sgx.bytes.clone();
    v9[0] = 9;
    assert!(matches!(
        verify(&with_bytes(&sgx, v9)),
        Err(VerifyError::UnsupportedVersion { version: 9, .. })
    ));
}

#[test]
fn quote_tee_reads_the_header() {
    assert_eq!(
        cipherlake_attest::dcap::quote_tee(&sgx().bytes),
        Ok(Tee::Sgx)
    );
    assert_eq!(
        cipherlake_attest::dcap::quote_tee(&tdx().bytes),
        Ok(Tee::Tdx)
    );
}
