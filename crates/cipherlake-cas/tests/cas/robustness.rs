//! Malformed bodies get clear 4xx replies and the CAS keeps serving.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_cas::api::ErrorBody;
use reqwest::{Method, StatusCode};

use crate::common::{Env, JOB};

async fn expect(
    env: &Env,
    method: Method,
    path: &str,
    body: &[u8],
    status: StatusCode,
    needle: &str,
) {
    let (got, reply) = env
        .client
        .raw(method, path, Some(body.to_vec()))
        .await
        .unwrap();
    let error: ErrorBody = serde_json::from_slice(&reply).unwrap_or_else(|_| {
        panic!(
            "{path}: not an error body: {}",
            String::from_utf8_lossy(&reply)
        )
    });
    assert_eq!(got, status, "{path}: {error:?}");
    assert!(
        error.message.contains(needle) || error.reasons.iter().any(|r| r.contains(needle)),
        "{path}: expected {needle:?} in {error:?}"
    );
}

#[tokio::test]
async fn malformed_json_yaml_csr_and_evidence_bodies() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let bad = StatusCode::BAD_REQUEST;
    // JSON
    expect(
        &env,
        Method::PUT,
        "/v1/policies/p",
        b"{not json",
        bad,
        "invalid JSON",
    )
    .await;
    expect(&env, Method::POST, "/v1/attest", b"[]", bad, "invalid JSON").await;
    expect(
        &env,
        Method::POST,
        "/v1/kms/wrap",
        b"{\"key_id\": 5}",
        bad,
        "invalid JSON",
    )
    .await;
    expect(
        &env,
        Method::POST,
        "/v1/platforms",
        b"\x00\xff",
        bad,
        "invalid JSON",
    )
    .await;
    // YAML inside a well-formed envelope
    let envelope = serde_json::json!({
        "format": "cipherlake-signed-policy-v1",
        "policy": "name: [unclosed",
        "signer": env.owner.public_key().to_string(),
        "signature": "00".repeat(64),
    });
    expect(
        &env,
        Method::PUT,
        "/v1/policies/p",
        envelope.to_string().as_bytes(),
        bad,
        "invalid policy",
    )
    .await;
    // CSR, evidence, keys
    let (_keys, request) = env.request("p", "driver", Some(JOB)).await;
    let mut r = request.clone();
    r.csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into();
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "invalid CSR",
    )
    .await;
    let mut r = request.clone();
    r.evidence.bytes = "%%%".into();
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "evidence.bytes",
    )
    .await;
    let mut r = request.clone();
    r.evidence.tee = "quantum".into();
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "evidence.tee",
    )
    .await;
    let mut r = request.clone();
    r.hpke_public_key = BASE64.encode([1u8; 5]);
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "hpke_public_key",
    )
    .await;
    let mut r = request.clone();
    r.nonce = "xyz".into();
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "nonce",
    )
    .await;
    let mut r = request.clone();
    r.evidence.collateral = Some(cipherlake_cas::api::CollateralBody::Dcap {
        json: BASE64.encode("{}"),
    });
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        bad,
        "collateral",
    )
    .await;
    // Well-formed base64 that is not a report: refused with the verifier's reason.
    let mut r = request.clone();
    r.evidence.bytes = BASE64.encode([0u8; 100]);
    expect(
        &env,
        Method::POST,
        "/v1/attest",
        &serde_json::to_vec(&r).unwrap(),
        StatusCode::FORBIDDEN,
        "evidence-invalid",
    )
    .await;
    // Platform registration without the operator token.
    expect(
        &env,
        Method::POST,
        "/v1/platforms",
        b"{\"public_key\": \"00\"}",
        StatusCode::UNAUTHORIZED,
        "operator token",
    )
    .await;
    // Still serving.
    env.client.healthz().await.unwrap();
    env.attest("p", "driver", Some(JOB)).await.unwrap();
}

#[tokio::test]
async fn tls_1_2_clients_are_refused() {
    use std::sync::Arc;
    let env = Env::start().await;
    let addr = env.server.as_ref().unwrap().addr;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Any server certificate is fine here: only the protocol version is under test.
    let verifier = Arc::new(cipherlake_cas::server::tls::ServerCertCheck::new(AnyCert));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect_err("TLS 1.2 must be refused");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    env.client
        .healthz()
        .await
        .expect("TLS 1.3 clients are served");
}

#[derive(Debug)]
struct AnyCert;

impl cipherlake_cas::server::tls::PeerCertPolicy for AnyCert {
    fn accept(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<(), rustls::Error> {
        Ok(())
    }
}
