//! Who may talk to a worker: only workloads of the same policy, with a certificate issued by
//! its CA, naming an admitted service, over TLS 1.3. Every refusal is checked through a real
//! connection to a real worker.

use std::sync::Arc;

use cipherlake_cluster::channel::MtlsChannelResolver;
use cipherlake_cluster::tls::{Identity, WORKER_SERVER_NAME};
use cipherlake_cluster::worker::WorkerHandle;
use datafusion_distributed::{ChannelResolver, GetWorkerInfoRequest};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{PolicyCa, start_worker, start_worker_with};

/// Asks `worker` for its info as `client`, which expects a worker of its own policy.
async fn worker_info(client: &Identity, worker: &WorkerHandle) -> Result<String, String> {
    worker_info_trusting(client, client, worker).await
}

/// Asks `worker` for its info presenting `client`, checking the worker as `trust`'s policy
/// expects (a `worker` service under its CA).
async fn worker_info_trusting(
    client: &Identity,
    trust: &Identity,
    worker: &WorkerHandle,
) -> Result<String, String> {
    let tls = client
        .client_config(trust.peer_check(&["worker".to_owned()]))
        .expect("client TLS");
    let mut channel = MtlsChannelResolver::new(tls)
        .get_worker_client_for_url(&worker.url("127.0.0.1").unwrap())
        .await
        .map_err(|e| e.to_string())?;
    channel
        .get_worker_info(GetWorkerInfoRequest {})
        .await
        .map(|info| info.version)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_policy_driver_and_workers_are_admitted() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    for service in ["driver", "worker"] {
        let version = worker_info(&ca.identity(service), &worker).await.unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"), "{service}");
    }
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn clients_outside_the_policy_are_refused() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    let other = PolicyCa::new("other");
    let same_name_other_ca = PolicyCa::new("analytics");
    let cases = [
        ("another policy's CA", other.identity("driver")),
        (
            "another CA naming this policy",
            same_name_other_ca.identity("driver"),
        ),
        ("a self-signed certificate", ca.self_signed("driver")),
        ("a service that is not admitted", ca.identity("ingest")),
    ];
    let driver = ca.identity("driver");
    for (what, identity) in cases {
        // The client checks the worker with this policy's CA, so the refusal can only come
        // from the worker's side.
        worker_info_trusting(&identity, &driver, &worker)
            .await
            .expect_err(what);
    }
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    let expired = ca.identity_with_ttl("driver", 0);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    worker_info(&expired, &worker).await.unwrap_err();
    worker_info(&ca.identity("driver"), &worker)
        .await
        .expect("a valid certificate still works");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_outside_the_policy_is_refused_by_the_driver() {
    let ca = PolicyCa::new("analytics");
    let impostor = start_worker_with(
        PolicyCa::new("analytics").identity("worker"),
        None,
        None,
        None,
    );
    let wrong_service = start_worker_with(ca.identity("driver"), None, None, None);
    for worker in [&impostor, &wrong_service] {
        let err = worker_info(&ca.identity("driver"), worker)
            .await
            .unwrap_err();
        assert!(
            err.contains("worker https://127.0.0.1:"),
            "the error names the worker: {err}"
        );
    }
    impostor.stop().await.unwrap();
    wrong_service.stop().await.unwrap();
}

/// A raw TLS client: the handshake completes from the client's view in TLS 1.3 even when the
/// server refuses the client certificate, so a refusal shows as an alert on the first read.
async fn raw_exchange(config: rustls::ClientConfig, worker: &WorkerHandle) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(worker.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(WORKER_SERVER_NAME).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // An HTTP/2 preface: a server that admitted us answers with its SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn accept_any_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    // The server check is not under test here: trust whatever the worker presents.
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    let err = raw_exchange(accept_any_server(&[&rustls::version::TLS13]), &worker)
        .await
        .unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("certificate"),
        "{err}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    let config = accept_any_server(&[&rustls::version::TLS12]);
    let err = raw_exchange(config, &worker).await.unwrap_err();
    assert!(
        err.contains("ProtocolVersion") || err.contains("version"),
        "{err}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections() {
    let ca = PolicyCa::new("analytics");
    let worker = start_worker(&ca, None).await;
    let driver = ca.identity("driver");
    worker_info(&driver, &worker)
        .await
        .expect("the first certificate");
    // Renewed with a certificate of another CA: the driver, trusting the policy's CA, now
    // refuses the worker, so new connections present the new certificate.
    worker
        .renew(&PolicyCa::new("analytics").identity("worker"))
        .unwrap();
    worker_info(&driver, &worker).await.unwrap_err();
    worker.renew(&ca.identity("worker")).unwrap();
    worker_info(&driver, &worker)
        .await
        .expect("a renewed certificate of the policy CA");
    worker.stop().await.unwrap();
}
