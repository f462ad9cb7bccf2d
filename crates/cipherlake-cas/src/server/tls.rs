//! TLS for the CAS: rustls with the ring provider, the CAS's self-generated certificate, and
//! optional client certificates; on the client side, [`ServerCertCheck`] (pinning or recording
//! the CAS certificate).
//!
//! The client-certificate verifier accepts any certificate *syntactically* during the
//! handshake (and verifies the handshake signature, proving possession of its key); whether
//! the certificate was issued by a policy CA the CAS holds is checked per request, against
//! the CA of the policy its SPIFFE URI names ([`crate::service::Cas::authenticate`]). This
//! keeps the TLS configuration static while policies (and their CAs) come and go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig, SignatureScheme};
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::CasError;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's leaf certificate, if it presented one (a request extension).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<Vec<u8>>);

/// The ring crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server-side client-certificate verifier: `policy` decides about the certificate (when
/// one is presented; `mandatory` requires one); the handshake signature is verified as usual
/// (so the client holds the certificate's key).
#[derive(Debug)]
pub struct ClientCertCheck<P> {
    policy: P,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: PeerCertPolicy> ClientCertCheck<P> {
    /// A verifier applying `policy`, with the ring provider's signature algorithms.
    pub fn new(policy: P, mandatory: bool) -> Self {
        ClientCertCheck {
            policy,
            mandatory,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl<P: PeerCertPolicy> ClientCertVerifier for ClientCertCheck<P> {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.policy
            .accept(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The CAS's client-certificate decision at the TLS layer: any certificate. Chain and identity
/// are verified per request against the CA of the policy the certificate names.
#[derive(Debug)]
struct CheckedPerRequest;

impl PeerCertPolicy for CheckedPerRequest {
    fn accept(&self, _end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// Decides whether a peer's certificate is acceptable: on the client side the server's (the
/// CAS is self-signed: clients pin it, or record it to check it against evidence), on the
/// server side a client's.
pub trait PeerCertPolicy: std::fmt::Debug + Send + Sync {
    /// Accepts or refuses the end-entity certificate the server presented.
    fn accept(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error>;
}

impl<T: PeerCertPolicy + ?Sized> PeerCertPolicy for Arc<T> {
    fn accept(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        (**self).accept(end_entity)
    }
}

/// A client-side certificate verifier: `policy` decides about the certificate; the handshake
/// signature is verified as usual (so the server holds the certificate's key).
#[derive(Debug)]
pub struct ServerCertCheck<P> {
    policy: P,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: PeerCertPolicy> ServerCertCheck<P> {
    /// A verifier applying `policy`, with the ring provider's signature algorithms.
    pub fn new(policy: P) -> Self {
        ServerCertCheck {
            policy,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl<P: PeerCertPolicy> ServerCertVerifier for ServerCertCheck<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy
            .accept(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server's TLS configuration.
pub fn server_config(cert_der: &[u8], key_pkcs8: &[u8]) -> Result<Arc<ServerConfig>, CasError> {
    let provider = provider();
    let verifier = Arc::new(ClientCertCheck::new(CheckedPerRequest, false));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CasError::Crypto(format!("TLS configuration: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec())),
        )
        .map_err(|e| CasError::Crypto(format!("TLS configuration: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Resolves once the server stops (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Serves one connection: TLS handshake, then HTTP/1.1 with the peer certificate attached to
/// every request. When `stop` turns true the connection shuts down gracefully: a request in
/// flight completes, then the connection closes (an idle one closes at once).
pub async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec());
    let router = router.layer(axum::Extension(PeerCertificate(leaf)));
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            router.clone().oneshot(request)
        });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
