//! A custodian checks the CAS before trusting it: the CAS's evidence must verify, name the
//! expected measurement and bind the verifier's nonce and the TLS key of this connection.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use cipherlake_attest::Verifier;
use cipherlake_attest::attester::Attester;
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_cas::CasError;
use cipherlake_cas::api::{CasEvidenceRequest, CasEvidenceResponse};
use cipherlake_cas::cas_evidence::{Expectation, check, verify};
use cipherlake_cas::client::{CasClient, fingerprint};
use cipherlake_cas::server::{self, ServerHandle, tls};
use cipherlake_cas::service::Config;
use reqwest::Method;
use tokio::sync::watch;

use crate::common::{Env, assert_denied, own_measurement, shared_las};

/// A CAS whose evidence comes from the shared LAS (which measures this test executable).
async fn attested_cas(dir: &Path) -> (ServerHandle, String) {
    let (socket, _) = shared_las();
    let mut config = Config::new(dir);
    config.attester = Some(Attester::Sim {
        socket: socket.clone(),
    });
    let server = server::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    (server, url)
}

fn expectation(measurement_hex: &str) -> Expectation {
    let (_, platform) = shared_las();
    Expectation {
        measurement: hex::decode(measurement_hex).unwrap(),
        verifier: Verifier::new()
            .with_sim_platform_key(PlatformPublicKey::from_hex(platform).unwrap()),
        ..Expectation::default()
    }
}

/// A CAS whose evidence comes from a LAS emulating `emulated` claims.
async fn emulating_cas(
    dir: &Path,
    emulated: cipherlake_attest::sim::Emulated,
) -> (ServerHandle, String, Expectation) {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("emulating.sock");
    let key = cipherlake_attest::sim::PlatformKey::generate().unwrap();
    let public = key.public_key();
    tokio::spawn(
        cipherlake_attest::las::Las::bind(key, &socket)
            .unwrap()
            .with_emulated(emulated)
            .run(),
    );
    let mut config = Config::new(dir.join("data"));
    config.attester = Some(Attester::Sim { socket });
    let server = server::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let expectation = Expectation {
        measurement: hex::decode(own_measurement()).unwrap(),
        verifier: Verifier::new().with_sim_platform_key(public),
        ..Expectation::default()
    };
    (server, url, expectation)
}

#[tokio::test]
async fn verify_refuses_a_debug_tee_or_an_outdated_tcb_unless_tolerated() {
    use cipherlake_attest::TcbStatus;
    use cipherlake_attest::sim::Emulated;
    use cipherlake_policy::Tolerance;
    let dir = tempfile::tempdir().unwrap();
    let (_debug_cas, url, expectation) = emulating_cas(
        &dir.path().join("debug"),
        Emulated {
            debug: true,
            ..Emulated::default()
        },
    )
    .await;
    assert_denied(verify(&url, &expectation).await, "debug:");
    let tolerant = Expectation {
        tolerate: vec![Tolerance::Debug],
        ..expectation.clone()
    };
    verify(&url, &tolerant).await.expect("debug tolerated");

    let (_old_cas, url, expectation) = emulating_cas(
        &dir.path().join("outdated"),
        Emulated {
            tcb_status: Some(TcbStatus::OutOfDate),
            ..Emulated::default()
        },
    )
    .await;
    let reasons = assert_denied(verify(&url, &expectation).await, "tcb:");
    assert!(
        reasons.iter().any(|r| r.contains("outdated-tcb")),
        "{reasons:?}"
    );
    let tolerant = Expectation {
        tolerate: vec![Tolerance::OutdatedTcb],
        ..expectation
    };
    verify(&url, &tolerant)
        .await
        .expect("outdated TCB tolerated");
}

#[tokio::test]
async fn verify_checks_the_tee_and_identity_fields_the_custodian_expects() {
    use cipherlake_attest::Tee;
    use cipherlake_attest::sim::Emulated;
    let dir = tempfile::tempdir().unwrap();
    let (_cas, url, expectation) = emulating_cas(
        dir.path(),
        Emulated {
            host_data: Some(vec![0x48; 32]),
            rtmrs: (1..=4).map(|i| vec![i; 48]).collect(),
            ..Emulated::default()
        },
    )
    .await;
    let expect = |fields: Vec<(&str, Vec<u8>)>, tee: Option<Tee>| Expectation {
        fields: fields
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect(),
        tee,
        ..expectation.clone()
    };
    verify(
        &url,
        &expect(
            vec![("host_data", vec![0x48; 32]), ("tdx.rtmr2", vec![3; 48])],
            Some(Tee::Sim),
        ),
    )
    .await
    .expect("as expected");
    assert_denied(
        verify(&url, &expect(vec![("rtmr2", vec![4; 48])], None)).await,
        "field-mismatch: rtmr2",
    );
    assert_denied(
        verify(&url, &expect(vec![("mr_owner", vec![0; 48])], None)).await,
        "field-mismatch: mr_owner is not reported",
    );
    assert_denied(
        verify(&url, &expect(Vec::new(), Some(Tee::Tdx))).await,
        "tee-mismatch",
    );
}

#[tokio::test]
async fn verify_accepts_the_cas_and_returns_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = attested_cas(dir.path()).await;
    let verified = verify(&url, &expectation(&own_measurement()))
        .await
        .unwrap();
    assert_eq!(verified.cert_der, server.tls_cert_der);
    assert_eq!(verified.fingerprint(), fingerprint(&server.tls_cert_der));
    assert_eq!(
        verified.cert_pem(),
        std::fs::read_to_string(dir.path().join("tls-cert.pem")).unwrap()
    );
}

#[tokio::test]
async fn verify_refuses_a_wrong_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = attested_cas(dir.path()).await;
    let result = verify(&url, &expectation(&"ab".repeat(48))).await;
    assert_denied(result, "measurement-mismatch");
}

#[tokio::test]
async fn verify_refuses_evidence_from_an_unknown_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = attested_cas(dir.path()).await;
    let mut expect = expectation(&own_measurement());
    expect.verifier = Verifier::new(); // the LAS platform key is not trusted
    assert_denied(verify(&url, &expect).await, "evidence-invalid");
}

/// A man in the middle with its own TLS key relays every evidence request to the real CAS.
async fn relaying_mitm(real: CasClient) -> (SocketAddr, watch::Sender<bool>) {
    let (cert, key) = cipherlake_cas::ca::new_tls_identity(&["127.0.0.1".into()]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&cert, &key).unwrap());
    let router = Router::new().route(
        "/v1/cas/evidence",
        post(move |body: Bytes| async move {
            let (_, reply) = real
                .raw(Method::POST, "/v1/cas/evidence", Some(body.to_vec()))
                .await
                .unwrap();
            reply
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(tls::serve_connection(
                acceptor.clone(),
                stream,
                peer,
                router.clone(),
                stopped.clone(),
            ));
        }
    });
    (addr, stop)
}

#[tokio::test]
async fn verify_refuses_evidence_relayed_by_a_man_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = attested_cas(dir.path()).await;
    let real = CasClient::new(&url, fingerprint(&server.tls_cert_der)).unwrap();
    let (mitm, _stop) = relaying_mitm(real).await;
    let result = verify(&format!("https://{mitm}"), &expectation(&own_measurement())).await;
    // The evidence is genuine (right measurement) but binds the real CAS's key, not the key
    // this connection presented.
    let reasons = assert_denied(result, "report-data-mismatch");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
}

#[tokio::test]
async fn verify_refuses_replayed_evidence_for_another_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = attested_cas(dir.path()).await;
    let client = CasClient::new(&url, fingerprint(&server.tls_cert_der)).unwrap();
    let old_nonce = [1u8; 32];
    let body = serde_json::to_vec(&CasEvidenceRequest {
        nonce: hex::encode(old_nonce),
    })
    .unwrap();
    let (status, reply) = client
        .raw(Method::POST, "/v1/cas/evidence", Some(body))
        .await
        .unwrap();
    assert!(status.is_success());
    let old: CasEvidenceResponse = serde_json::from_slice(&reply).unwrap();
    let expect = expectation(&own_measurement());
    check(&old.evidence, &old_nonce, &server.tls_cert_der, &expect).unwrap();
    assert_denied(
        check(&old.evidence, &[2u8; 32], &server.tls_cert_der, &expect),
        "report-data-mismatch",
    );
}

#[tokio::test]
async fn verify_of_a_cas_without_an_attester_says_so() {
    let env = Env::start().await;
    let url = format!(
        "https://127.0.0.1:{}",
        env.server.as_ref().unwrap().addr.port()
    );
    match verify(&url, &expectation(&own_measurement())).await {
        Err(CasError::Http(message)) => {
            assert!(
                message.contains("503") && message.contains("no attester"),
                "{message}"
            );
        }
        other => panic!("expected a clear refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_evidence_requests_get_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = attested_cas(dir.path()).await;
    let client = CasClient::new(&url, fingerprint(&server.tls_cert_der)).unwrap();
    for body in [
        &b"{"[..],
        br#"{"nonce": "zz"}"#,
        br#"{"nonce": "00", "x": 1}"#,
    ] {
        let (status, _) = client
            .raw(Method::POST, "/v1/cas/evidence", Some(body.to_vec()))
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 400);
    }
}
