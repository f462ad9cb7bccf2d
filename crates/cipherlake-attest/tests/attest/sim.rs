//! Sim reports: signed by a registered LAS platform key, refused otherwise.

use cipherlake_attest::sim::{self, PlatformKey};
use cipherlake_attest::{Evidence, Tee, Verifier, VerifyError, VerifyOptions, verify_binding};

const MEASUREMENT: [u8; 48] = [7; 48];
const REPORT_DATA: [u8; 64] = [9; 64];

fn platform() -> PlatformKey {
    PlatformKey::from_seed(&[1; 32])
}

fn verifier() -> Verifier {
    Verifier::new().with_sim_platform_key(platform().public_key())
}

fn verify(report: Vec<u8>) -> Result<cipherlake_attest::Claims, VerifyError> {
    verifier().verify(&Evidence::new(Tee::Sim, report), &VerifyOptions::now())
}

#[test]
fn signed_report_verifies() {
    let report = platform().sign_report(MEASUREMENT, REPORT_DATA, 3, 1_751_328_000);
    assert_eq!(report.len(), sim::REPORT_LEN);
    let claims = verify(report).expect("verifies");
    assert_eq!(claims.tee, Tee::Sim);
    assert_eq!(claims.measurement, MEASUREMENT);
    assert_eq!(claims.report_data, REPORT_DATA);
    assert_eq!(claims.svn, Some(3));
    assert_eq!(claims.timestamp, Some(1_751_328_000));
    assert!(!claims.debug);
    assert_eq!(
        claims.platform_id.as_deref(),
        Some(&platform().public_key().to_bytes()[..])
    );
    verify_binding(&claims, &REPORT_DATA).expect("binding matches");
}

#[test]
fn forged_signature_is_refused() {
    let report = platform().sign_report(MEASUREMENT, REPORT_DATA, 0, 0);
    // Body tampered: another measurement under the original signature.
    let mut tampered = report.clone();
    tampered[52] ^= 1;
    assert!(matches!(
        verify(tampered),
        Err(VerifyError::BadSignature { .. })
    ));
    // Signature tampered.
    let mut tampered = report.clone();
    tampered[sim::BODY_LEN + 5] ^= 1;
    assert!(matches!(
        verify(tampered),
        Err(VerifyError::BadSignature { .. })
    ));
    // Signed by an attacker's key but naming the registered platform.
    let attacker = PlatformKey::from_seed(&[2; 32]);
    let mut forged = attacker.sign_report(MEASUREMENT, REPORT_DATA, 0, 0);
    forged[20..52].copy_from_slice(&platform().public_key().to_bytes());
    assert!(matches!(
        verify(forged),
        Err(VerifyError::BadSignature { .. })
    ));
}

#[test]
fn unknown_platform_key_is_refused() {
    let other = PlatformKey::from_seed(&[3; 32]);
    let report = other.sign_report(MEASUREMENT, REPORT_DATA, 0, 0);
    let err = verify(report).expect_err("unregistered platform");
    assert!(
        matches!(&err, VerifyError::UnknownPlatformKey { platform_id } if *platform_id == other.public_key().to_string()),
        "{err}"
    );
}

#[test]
fn report_data_mismatch_is_refused() {
    let claims = verify(platform().sign_report(MEASUREMENT, REPORT_DATA, 0, 0)).expect("verifies");
    let mut expected = REPORT_DATA;
    expected[63] ^= 1;
    assert_eq!(
        verify_binding(&claims, &expected),
        Err(VerifyError::ReportDataMismatch)
    );
}

#[test]
fn malformed_reports_are_refused() {
    let report = platform().sign_report(MEASUREMENT, REPORT_DATA, 0, 0);
    assert!(matches!(
        verify(report[..100].to_vec()),
        Err(VerifyError::Malformed { offset: 100, .. })
    ));
    let mut bad_magic = report.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        verify(bad_magic),
        Err(VerifyError::Malformed { offset: 0, .. })
    ));
    let mut v2 = report.clone();
    v2[4] = 2;
    assert!(matches!(
        verify(v2),
        Err(VerifyError::Malformed { offset: 164, .. })
    ));
    let mut v3 = report.clone();
    v3[4] = 3;
    assert!(matches!(
        verify(v3),
        Err(VerifyError::UnsupportedVersion { version: 3, .. })
    ));
    let mut longer = report.clone();
    longer.push(0);
    assert!(matches!(verify(longer), Err(VerifyError::Malformed { .. })));
    let mut flags = report;
    flags[6] = 0x80;
    assert!(matches!(
        verify(flags),
        Err(VerifyError::Malformed { offset: 6, .. })
    ));
}

#[test]
fn platform_key_hex_round_trip_and_debug_hides_the_secret() {
    let key = platform();
    let public = key.public_key();
    let parsed = sim::PlatformPublicKey::from_hex(&public.to_string()).expect("hex");
    assert_eq!(parsed, public);
    assert!(matches!(
        sim::PlatformPublicKey::from_hex("abcd"),
        Err(VerifyError::MalformedCollateral { .. })
    ));
    let debug = format!("{key:?}");
    assert!(debug.contains(&public.to_string()));
    assert!(!debug.contains(&hex::encode([1u8; 32])));
}

#[test]
fn emulated_claims_are_signed_and_reported_beside_the_sim_claims() {
    use cipherlake_attest::sim::Emulated;
    let emulated = Emulated {
        host_data: Some(vec![0xab; 32]),
        rtmrs: vec![vec![1; 48], vec![2; 48], vec![3; 48], vec![4; 48]],
        ..Emulated::default()
    };
    let report = platform().sign_emulating(MEASUREMENT, REPORT_DATA, 0, 0, Some(&emulated));
    let claims = verify(report.clone()).expect("verifies");
    assert_eq!(claims.tee, cipherlake_attest::Tee::Sim);
    assert_eq!(claims.evidence_version, 2);
    assert_eq!(claims.host_data, Some(vec![0xab; 32]));
    assert_eq!(claims.rtmrs[3], vec![4; 48]);
    // The extension is signed: one changed byte of it is refused.
    let at = report.len() - 64 - 10;
    let mut tampered = report.clone();
    tampered[at] ^= 0x01;
    assert!(verify(tampered).is_err());
    // A length that does not match the report is malformed.
    let mut bad_len = report;
    bad_len[164] ^= 0x01;
    assert!(matches!(
        verify(bad_len),
        Err(VerifyError::Malformed { offset: 164, .. })
    ));
}
