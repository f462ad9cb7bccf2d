//! TLS between the driver and the workers: TLS 1.3 only (ring), ALPN h2, and on both sides a
//! certificate check that admits only workloads of one policy: the peer's certificate must be
//! issued by the policy's CA, be valid now, and name `spiffe://cipherlake/{policy}/{service}`
//! with one of the expected services.

use std::fmt;
use std::sync::Arc;

use cipherlake_cas::ca::{verify_issued_by, workload_identity};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DistinguishedName, ServerConfig, SignatureScheme};
use zeroize::Zeroizing;

use crate::ClusterError;

/// The server name a driver or worker sends when dialing a worker. Workers are identified by
/// the service their certificate names, not by a host name: the URL host is only dialed.
pub const WORKER_SERVER_NAME: &str = "worker.cipherlake.invalid";

/// A workload's TLS identity, issued by the CAS after attestation.
#[derive(Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<Zeroizing<Vec<u8>>>,
    ca: Vec<u8>,
    policy: String,
    service: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("policy", &self.policy)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from PEM (certificate chain, leaf first, and the policy CA) and the PKCS#8
    /// DER private key, as [`cipherlake_cas::client::Attested`] carries them. The policy and
    /// service are read from the leaf.
    pub fn from_pem(
        chain_pem: &str,
        ca_pem: &str,
        key_pkcs8_der: &[u8],
    ) -> Result<Self, ClusterError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Tls(format!("the certificate chain: {e}")))?;
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| ClusterError::Tls(format!("the policy CA certificate: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| ClusterError::Tls("the certificate chain is empty".into()))?;
        let (policy, service) = workload_identity(leaf)
            .map_err(|e| ClusterError::Tls(format!("the workload certificate: {e}")))?;
        Ok(Identity {
            chain,
            key: Arc::new(Zeroizing::new(key_pkcs8_der.to_vec())),
            ca: ca.to_vec(),
            policy,
            service,
        })
    }

    /// An identity from what the CAS returned at attestation.
    pub fn from_attested(
        attested: &cipherlake_cas::client::Attested,
    ) -> Result<Self, ClusterError> {
        Self::from_pem(
            &attested.certificate_chain_pem,
            &attested.ca_pem,
            &attested.key_pkcs8_der,
        )
    }

    /// The policy the certificate names.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The service the certificate names.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }

    /// A check admitting peers of this identity's policy that name one of `services`.
    pub fn peer_check(&self, services: &[String]) -> PeerCheck {
        PeerCheck {
            ca: self.ca.clone(),
            policy: self.policy.clone(),
            services: services.to_vec(),
        }
    }

    /// The configuration a worker serves with: TLS 1.3, a client certificate required and
    /// checked by `peers`, ALPN h2.
    pub fn server_config(&self, peers: PeerCheck) -> Result<Arc<ServerConfig>, ClusterError> {
        let provider = provider();
        let verifier = Arc::new(RequiredClientCert {
            peers,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The configuration a driver or worker dials workers with: TLS 1.3, this identity as the
    /// client certificate, the worker's certificate checked by `peers`, ALPN h2.
    pub fn client_config(&self, peers: PeerCheck) -> Result<Arc<ClientConfig>, ClusterError> {
        let provider = provider();
        let verifier = Arc::new(ServerCert {
            algorithms: provider.signature_verification_algorithms,
            peers,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

fn tls_error(e: rustls::Error) -> ClusterError {
    ClusterError::Tls(format!("TLS configuration: {e}"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which peers a TLS endpoint admits: certificates issued by one policy's CA naming that
/// policy and one of `services`.
#[derive(Clone)]
pub struct PeerCheck {
    ca: Vec<u8>,
    policy: String,
    services: Vec<String>,
}

impl fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCheck")
            .field("policy", &self.policy)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl PeerCheck {
    /// Admits or refuses a peer's leaf certificate, naming the reason.
    pub fn check(&self, leaf: &[u8]) -> Result<(String, String), String> {
        verify_issued_by(leaf, &self.ca, now()).map_err(|e| {
            format!(
                "peer certificate refused: {e} (expected the CA of policy {:?})",
                self.policy
            )
        })?;
        let (policy, service) =
            workload_identity(leaf).map_err(|e| format!("peer certificate refused: {e}"))?;
        if policy != self.policy {
            return Err(format!(
                "peer certificate refused: it names policy {policy:?}, expected {:?}",
                self.policy
            ));
        }
        if !self.services.contains(&service) {
            return Err(format!(
                "peer certificate refused: it names service {service:?} of policy {policy:?}, expected one of {:?}",
                self.services
            ));
        }
        Ok((policy, service))
    }

    fn accept(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match self.check(leaf) {
            Ok((policy, service)) => {
                tracing::debug!(policy, service, "peer admitted");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(%reason, "TLS peer refused");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }
}

/// Never reached (both sides offer TLS 1.3 only); refuses should a TLS 1.2 signature arrive.
fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not accepted between cipherlake workloads".into())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The worker side: a client certificate is mandatory and must pass the [`PeerCheck`].
#[derive(Debug)]
struct RequiredClientCert {
    peers: PeerCheck,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequiredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
        self.peers
            .accept(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
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

/// The dialing side: the worker's certificate must pass the [`PeerCheck`]; the server name is
/// not used (see [`WORKER_SERVER_NAME`]).
#[derive(Debug)]
struct ServerCert {
    peers: PeerCheck,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.peers
            .accept(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
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
