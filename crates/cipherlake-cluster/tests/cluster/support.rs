//! Test identities issued by the CAS's own certificate code, and loopback workers.

use std::sync::Arc;

use cipherlake_cas::ca::{Subject, VerifiedCsr, cert_pem, issue_workload, new_policy_ca};
use cipherlake_cluster::driver::{DriverOptions, WorkerList};
use cipherlake_cluster::tls::Identity;
use cipherlake_cluster::worker::{WorkerHandle, WorkerOptions, serve};
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::session::SessionOptions;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A policy CA, as the CAS keeps one per policy.
pub struct PolicyCa {
    pub policy: String,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PolicyCa {
    pub fn new(policy: &str) -> Self {
        let (cert, key) = new_policy_ca(policy).expect("a CA");
        PolicyCa {
            policy: policy.to_owned(),
            cert,
            key,
        }
    }

    /// A workload certificate for `service`, valid `ttl` seconds, issued from a CSR exactly
    /// as the CAS issues it after attestation.
    pub fn identity(&self, service: &str) -> Identity {
        self.identity_with_ttl(service, 3600)
    }

    pub fn identity_with_ttl(&self, service: &str, ttl: u64) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .expect("a CSR")
            .pem()
            .expect("CSR PEM");
        let csr = VerifiedCsr::from_pem(&csr).expect("a valid CSR");
        let subject = Subject {
            policy: &self.policy,
            service,
            release_digest: [0; 32],
        };
        let issued = issue_workload(&csr, subject, &self.cert, &self.key, ttl).expect("issued");
        let chain = format!("{}{}", cert_pem(&issued.der), cert_pem(&self.cert));
        Identity::from_pem(&chain, &cert_pem(&self.cert), &key.serialize_der()).expect("identity")
    }

    /// A certificate naming this policy's `service` but signed by itself, not the CA.
    pub fn self_signed(&self, service: &str) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            format!("spiffe://cipherlake/{}/{service}", self.policy)
                .try_into()
                .expect("a URI"),
        )];
        let cert = params.self_signed(&key).expect("self-signed");
        let pem = cert.pem();
        Identity::from_pem(&pem, &cert_pem(&self.cert), &key.serialize_der()).expect("identity")
    }
}

/// Starts a worker of `ca`'s policy on loopback, admitting the driver and worker services.
pub async fn start_worker(ca: &PolicyCa, kms: Option<Arc<dyn KmsClient>>) -> WorkerHandle {
    start_worker_with(ca.identity("worker"), kms, None, None)
}

pub fn start_worker_with(
    identity: Identity,
    kms: Option<Arc<dyn KmsClient>>,
    memory_limit: Option<usize>,
    spill_dir: Option<std::path::PathBuf>,
) -> WorkerHandle {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    serve(
        listener,
        WorkerOptions {
            session: SessionOptions {
                kms,
                memory_limit,
                spill_dir,
                ..SessionOptions::default()
            },
            identity,
            clients: vec!["driver".into(), "worker".into()],
            workers: vec!["worker".into()],
        },
    )
    .expect("the worker starts")
}

/// Driver options for `workers`, as the driver service of `ca`'s policy.
pub fn driver(ca: &PolicyCa, workers: &[&WorkerHandle]) -> DriverOptions {
    DriverOptions {
        identity: ca.identity("driver"),
        workers: WorkerList::new(
            workers
                .iter()
                .map(|w| w.url("127.0.0.1").unwrap())
                .collect(),
        ),
        worker_services: vec!["worker".into()],
        bytes_per_partition: Some(64 * 1024),
    }
}
