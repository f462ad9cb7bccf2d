//! TLS between the driver and the workers: TLS 1.3 only (ring), ALPN h2, and on both sides a
//! certificate check that admits only workloads of one policy: the peer's certificate must be
//! issued by the policy's CA, be valid now, and name `spiffe://cipherlake/{policy}/{service}`
//! with one of the expected services.

use std::fmt;
use std::sync::Arc;

use cipherlake_cas::ca::{verify_issued_by, workload_identity};
use cipherlake_cas::server::tls::{ClientCertCheck, PeerCertPolicy, ServerCertCheck, provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};
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
        let verifier = Arc::new(ClientCertCheck::new(peers, true));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No resumption: a resumed TLS 1.3 session skips the certificate check, which would let
        // a certificate that has since expired back in.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The configuration a driver or worker dials workers with: TLS 1.3, this identity as the
    /// client certificate, the worker's certificate checked by `peers`, ALPN h2.
    pub fn client_config(&self, peers: PeerCheck) -> Result<Arc<ClientConfig>, ClusterError> {
        let verifier = Arc::new(ServerCertCheck::new(peers));
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

fn tls_error(e: rustls::Error) -> ClusterError {
    ClusterError::Tls(format!("TLS configuration: {e}"))
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
        verify_issued_by(leaf, &self.ca, cipherlake_cas::service::now()).map_err(|e| {
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
}

impl PeerCertPolicy for PeerCheck {
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
