//! SEV-SNP reports: the Milan fixture verifies; every tampering is refused with its reason.

use cipherlake_attest::snp::{REPORT_LEN, SIGNED_LEN};
use cipherlake_attest::{Evidence, TcbStatus, Tee, Verifier, VerifyError, VerifyOptions};

use super::common::*;

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

fn verify_at(evidence: &Evidence, at: u64) -> Result<cipherlake_attest::Claims, VerifyError> {
    Verifier::new().verify(evidence, &VerifyOptions::at(at))
}

fn verify(evidence: &Evidence) -> Result<cipherlake_attest::Claims, VerifyError> {
    verify_at(evidence, july_2025())
}

fn milan(report: Vec<u8>) -> Evidence {
    Evidence::new(Tee::SevSnp, report).with_collateral(milan_collateral())
}

#[test]
fn milan_fixture_verifies() {
    let claims = verify(&milan(snp_report())).expect("Milan fixture verifies");
    assert_eq!(claims.tee, Tee::SevSnp);
    assert_eq!(claims.evidence_version, 2);
    assert_eq!(hex::encode(&claims.measurement), MILAN_MEASUREMENT);
    assert_eq!(claims.tcb_status, TcbStatus::NotEvaluated);
    assert!(!claims.debug);
    let snp = claims.snp.expect("SNP claims");
    assert_eq!(snp.product, "Milan");
    assert_eq!(snp.signing_key, "vcek");
    assert!(snp.policy.smt_allowed);
    assert!(!snp.policy.migrate_ma_allowed);
    assert!(!snp.policy.debug_allowed);
    assert_eq!(
        (
            snp.reported_tcb.bootloader,
            snp.reported_tcb.tee,
            snp.reported_tcb.snp,
            snp.reported_tcb.microcode
        ),
        (3, 0, 8, 115)
    );
    assert_eq!(hex::encode(&snp.chip_id[..4]), "d49554ec");
}

#[test]
fn builtin_chain_is_used_when_none_is_supplied() {
    let evidence = Evidence::new(Tee::SevSnp, snp_report())
        .with_collateral(snp_collateral(&read(fixture("snp/vcek_milan.der")), None));
    let claims = verify(&evidence).expect("verifies with the built-in Milan ASK");
    assert_eq!(hex::encode(&claims.measurement), MILAN_MEASUREMENT);
}

#[test]
fn flipped_body_byte_is_refused() {
    // 0x90: the launch measurement.
    let err = verify(&milan(flip(&snp_report(), 0x90))).expect_err("tampered body");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn flipped_signature_byte_is_refused() {
    let err = verify(&milan(flip(&snp_report(), SIGNED_LEN + 3))).expect_err("tampered signature");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn flipped_vcek_byte_is_refused() {
    let vcek = read(fixture("snp/vcek_milan.der"));
    let tampered = flip(&vcek, vcek.len() - 7);
    let evidence = Evidence::new(Tee::SevSnp, snp_report()).with_collateral(snp_collateral(
        &tampered,
        Some(&read(fixture("snp/cert_chain_milan"))),
    ));
    let err = verify(&evidence).expect_err("tampered VCEK");
    assert!(matches!(err, VerifyError::BadCertificate { .. }), "{err}");
}

#[test]
fn flipped_ask_byte_is_refused() {
    let chain = String::from_utf8(read(fixture("snp/cert_chain_milan"))).expect("PEM");
    let tampered = flip_in_pem_cert(&chain, 0, 7);
    let evidence = Evidence::new(Tee::SevSnp, snp_report()).with_collateral(snp_collateral(
        &read(fixture("snp/vcek_milan.der")),
        Some(tampered.as_bytes()),
    ));
    let err = verify(&evidence).expect_err("tampered ASK");
    // The ASK no longer verifies under AMD's ARK: the chain is not rooted.
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn collateral_of_another_platform_is_refused() {
    let evidence = Evidence::new(Tee::SevSnp, snp_report()).with_collateral(snp_collateral(
        &read(data("snp-turin/vcek_turin.der")),
        Some(&read(data("snp-turin/cert_chain_turin"))),
    ));
    let err = verify(&evidence).expect_err("Turin VCEK for a Milan report");
    assert!(matches!(err, VerifyError::PlatformMismatch { .. }), "{err}");
}

#[test]
fn vcek_of_another_generation_does_not_chain_to_the_milan_ask() {
    let evidence = Evidence::new(Tee::SevSnp, snp_report()).with_collateral(snp_collateral(
        &read(data("snp-turin/vcek_turin.der")),
        Some(&read(fixture("snp/cert_chain_milan"))),
    ));
    let err = verify(&evidence).expect_err("Turin VCEK with Milan chain");
    // No Milan signing key issued it; the built-in Turin ASK did, so the chain verifies and the
    // chip id does not match.
    assert!(matches!(err, VerifyError::PlatformMismatch { .. }), "{err}");
}

#[test]
fn time_outside_certificate_validity_is_refused() {
    let evidence = milan(snp_report());
    let err = verify_at(&evidence, at("2031-01-01T00:00:00Z")).expect_err("VCEK expired");
    assert!(
        matches!(err, VerifyError::CollateralExpired { .. }),
        "{err}"
    );
    let err = verify_at(&evidence, at("2022-01-01T00:00:00Z")).expect_err("VCEK not yet valid");
    assert!(
        matches!(err, VerifyError::CollateralNotYetValid { .. }),
        "{err}"
    );
}

/// An attacker's own SEV-SNP PKI: root "ARK-Milan" -> "SEV-Milan" -> "SEV-VCEK", all P-384.
/// Returns the VCEK (DER), the chain with its root, and the chain without it.
fn fake_snp_pki() -> (Vec<u8>, String, String) {
    let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
    let params = |cn: &str, ca: bool| {
        let mut p = rcgen::CertificateParams::new(Vec::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        p
    };
    let root = rcgen::CertifiedIssuer::self_signed(
        params("ARK-Milan", true),
        rcgen::KeyPair::generate_for(alg).expect("key"),
    )
    .expect("root");
    let ask = rcgen::CertifiedIssuer::signed_by(
        params("SEV-Milan", true),
        rcgen::KeyPair::generate_for(alg).expect("key"),
        &root,
    )
    .expect("ask");
    let vcek_key = rcgen::KeyPair::generate_for(alg).expect("key");
    let vcek = params("SEV-VCEK", false)
        .signed_by(&vcek_key, &ask)
        .expect("vcek");
    (
        vcek.der().to_vec(),
        format!("{}{}", ask.pem(), root.pem()),
        ask.pem(),
    )
}

#[test]
fn chain_to_a_fake_root_is_refused() {
    let (vcek, with_root, without_root) = fake_snp_pki();
    for chain in [with_root, without_root] {
        let evidence = Evidence::new(Tee::SevSnp, snp_report())
            .with_collateral(snp_collateral(&vcek, Some(chain.as_bytes())));
        let err = verify(&evidence).expect_err("fake AMD PKI");
        assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
    }
    // The attacker's root supplied beside the genuine VCEK is refused too.
    let (_, with_root, _) = fake_snp_pki();
    let evidence = Evidence::new(Tee::SevSnp, snp_report()).with_collateral(snp_collateral(
        &read(fixture("snp/vcek_milan.der")),
        Some(with_root.as_bytes()),
    ));
    let err = verify(&evidence).expect_err("fake root in chain");
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn malformed_reports_are_refused() {
    let report = snp_report();
    let err = verify(&milan(report[..REPORT_LEN - 1].to_vec())).expect_err("truncated");
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
    let mut v1 = report.clone();
    v1[0] = 1;
    assert!(matches!(
        verify(&milan(v1)),
        Err(VerifyError::UnsupportedVersion { version: 1, .. })
    ));
    let err = verify(&Evidence::new(Tee::SevSnp, report)).expect_err("no VCEK");
    assert!(
        matches!(err, VerifyError::MissingCollateral { .. }),
        "{err}"
    );
}
