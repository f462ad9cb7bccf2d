//! Azure Attestation tokens against a JWKS built in the test; real claim names.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cipherlake_attest::maa::MaaTrust;
use cipherlake_attest::{Evidence, Tee, Verifier, VerifyError, VerifyOptions};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};

use super::common::*;

pub(super) const ISSUER: &str = "https://sharedeus.eus.attest.azure.net";
const KID: &str = "test-signing-key";
pub(super) const NOW: u64 = 1_751_328_000;

fn private_key(file: &str) -> rsa::PrivateKey {
    let pem = String::from_utf8(read(data(file))).expect("PEM");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).expect("base64");
    rsa::PrivateKey::from_pkcs8_der(&der).expect("PKCS#8 RSA key")
}

/// A JWKS with one key: a self-signed x5c certificate for the test key.
pub(super) fn jwks() -> Vec<u8> {
    let pem = String::from_utf8(read(data("maa_key.pem"))).expect("PEM");
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .expect("rcgen key");
    let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ISSUER);
    let cert = params.self_signed(&key).expect("self-signed");
    serde_json::to_vec(&json!({
        "keys": [{ "kid": KID, "kty": "RSA", "x5c": [STANDARD.encode(cert.der())] }]
    }))
    .expect("JWKS")
}

fn verifier() -> Verifier {
    Verifier::new().with_maa(MaaTrust::new(&jwks(), ISSUER).expect("trust"))
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

pub(super) fn sign(header: &Value, payload: &Value, key_file: &str) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private_key(key_file));
    let signature = key.sign(signing_input.as_bytes()).to_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub(super) fn header() -> Value {
    json!({ "alg": "RS256", "kid": KID, "typ": "JWT", "jku": format!("{ISSUER}/certs") })
}

pub(super) fn sgx_payload() -> Value {
    json!({
        "iss": ISSUER,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 3600,
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "sgx",
        "x-ms-policy-hash": "wm9mHlvTU82e8UqoOy1Yj1FBRSNkfe99-69IYDq9eWs",
        "x-ms-sgx-is-debuggable": false,
        "x-ms-sgx-mrenclave": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        "x-ms-sgx-mrsigner": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
        "x-ms-sgx-product-id": 1,
        "x-ms-sgx-svn": 2,
        "x-ms-sgx-report-data": hex::encode([0xab; 64]),
        "x-ms-sgx-ehd": "AAAA",
        "maa-ehd": "AAAA"
    })
}

fn snp_payload() -> Value {
    json!({
        "iss": ISSUER,
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "x-ms-attestation-type": "azurevm",
        "x-ms-isolation-tee": {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-sevsnpvm-launchmeasurement": hex::encode([0x11; 48]),
            "x-ms-sevsnpvm-is-debuggable": false,
            "x-ms-sevsnpvm-reportdata": hex::encode([0x22; 64]),
            "x-ms-sevsnpvm-hostdata": hex::encode([0x33; 32]),
            "x-ms-sevsnpvm-guestsvn": 4,
            "x-ms-sevsnpvm-authorkeydigest": hex::encode([0; 48]),
            "x-ms-sevsnpvm-idkeydigest": hex::encode([0x44; 48]),
            "x-ms-sevsnpvm-migration-allowed": false,
            "x-ms-sevsnpvm-smt-allowed": true
        }
    })
}

fn verify(token: &str) -> Result<cipherlake_attest::Claims, VerifyError> {
    verifier().verify(
        &Evidence::new(Tee::Azure, token.as_bytes().to_vec()),
        &VerifyOptions::at(NOW),
    )
}

#[test]
fn sgx_token_maps_to_claims() {
    let claims = verify(&sign(&header(), &sgx_payload(), "maa_key.pem")).expect("verifies");
    assert_eq!(claims.tee, Tee::Azure);
    assert_eq!(claims.attested_tee, Some(Tee::Sgx));
    assert_eq!(
        hex::encode(&claims.measurement),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(claims.product_id, Some(1));
    assert_eq!(claims.svn, Some(2));
    assert!(!claims.debug);
    assert_eq!(claims.report_data, [0xab; 64]);
    assert_eq!(claims.timestamp, Some(NOW - 60));
}

#[test]
fn snp_token_maps_to_claims() {
    let claims = verify(&sign(&header(), &snp_payload(), "maa_key.pem")).expect("verifies");
    assert_eq!(claims.attested_tee, Some(Tee::SevSnp));
    assert_eq!(claims.measurement, [0x11; 48]);
    assert_eq!(claims.report_data, [0x22; 64]);
    assert_eq!(claims.host_data.as_deref(), Some(&[0x33; 32][..]));
    assert_eq!(claims.svn, Some(4));
    // No author key: the ID key digest identifies the signer.
    assert_eq!(claims.signer.as_deref(), Some(&[0x44; 48][..]));
}

#[test]
fn token_signed_by_an_unknown_key_is_refused() {
    let mut h = header();
    h["kid"] = "someone-else".into();
    let err = verify(&sign(&h, &sgx_payload(), "maa_other_key.pem")).expect_err("unknown kid");
    assert!(matches!(err, VerifyError::UnknownKeyId { .. }), "{err}");
    // Another key claiming the pinned key id.
    let err = verify(&sign(&header(), &sgx_payload(), "maa_other_key.pem")).expect_err("wrong key");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn expired_and_early_tokens_are_refused() {
    let mut payload = sgx_payload();
    payload["exp"] = (NOW - 1).into();
    let err = verify(&sign(&header(), &payload, "maa_key.pem")).expect_err("expired");
    assert!(matches!(err, VerifyError::TokenExpired { .. }), "{err}");
    let mut payload = sgx_payload();
    payload["nbf"] = (NOW + 600).into();
    let err = verify(&sign(&header(), &payload, "maa_key.pem")).expect_err("not yet valid");
    assert!(matches!(err, VerifyError::TokenNotYetValid { .. }), "{err}");
    let mut payload = sgx_payload();
    payload.as_object_mut().expect("object").remove("exp");
    let err = verify(&sign(&header(), &payload, "maa_key.pem")).expect_err("no exp");
    assert!(matches!(err, VerifyError::MissingClaim { .. }), "{err}");
}

#[test]
fn wrong_issuer_is_refused() {
    let mut payload = sgx_payload();
    payload["iss"] = "https://evil.attest.example".into();
    let err = verify(&sign(&header(), &payload, "maa_key.pem")).expect_err("issuer");
    assert!(matches!(err, VerifyError::WrongIssuer { .. }), "{err}");
}

#[test]
fn tampered_payload_is_refused() {
    let token = sign(&header(), &sgx_payload(), "maa_key.pem");
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = sgx_payload();
    payload["x-ms-sgx-is-debuggable"] = true.into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    let err = verify(&tampered).expect_err("tampered");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&sgx_payload()));
    let err = verify(&unsigned).expect_err("alg none");
    assert!(
        matches!(&err, VerifyError::UnsupportedAlgorithm { alg } if alg == "none"),
        "{err}"
    );
    let mut h = header();
    h["alg"] = "HS256".into();
    let err = verify(&sign(&h, &sgx_payload(), "maa_key.pem")).expect_err("HS256");
    assert!(
        matches!(err, VerifyError::UnsupportedAlgorithm { .. }),
        "{err}"
    );
}

#[test]
fn missing_claims_and_malformed_tokens_are_refused() {
    let mut payload = sgx_payload();
    payload
        .as_object_mut()
        .expect("object")
        .remove("x-ms-sgx-mrenclave");
    let err = verify(&sign(&header(), &payload, "maa_key.pem")).expect_err("missing claim");
    assert!(
        matches!(&err, VerifyError::MissingClaim { name } if name == "x-ms-sgx-mrenclave"),
        "{err}"
    );
    for token in ["", "a.b", "a.b.c.d", "!!!.e30.e30"] {
        let err = verify(token).expect_err("malformed");
        assert!(
            matches!(err, VerifyError::Malformed { .. }),
            "{token}: {err}"
        );
    }
}
