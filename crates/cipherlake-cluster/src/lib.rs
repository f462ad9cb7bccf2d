//! Distributed confidential execution on datafusion-distributed: attested workers serve plan
//! fragments over mTLS (TLS 1.3, certificates issued by the CAS, peers admitted only when
//! their certificate chains to the same policy's CA and names an expected service), stages
//! stream between processes without touching disk, and each worker reads encrypted Parquet
//! through its own KMS grants.
//!
//! - [`tls`]: identities, TLS configurations and the peer check;
//! - [`channel`]: mTLS channels to workers, errors naming the worker;
//! - [`worker`]: the worker server;
//! - [`driver`]: the distributed session and its worker list;
//! - [`registry`]: workers registering with the CAS, drivers following the live list;
//! - [`scan_crypto`]: the rewrite giving each worker's Parquet scans its own KMS;
//! - `runtime`: query work on a runtime of its own, connections on the caller's.

pub mod channel;
pub mod driver;
pub mod registry;
mod runtime;
pub mod scan_crypto;
pub mod tls;
pub mod worker;

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A certificate, key or TLS configuration problem.
    #[error("{0}")]
    Tls(String),
    /// The worker could not start or serve.
    #[error("worker: {0}")]
    Worker(String),
    /// The distributed session could not be built.
    #[error("distributed session: {0}")]
    Driver(String),
    /// A CAS call failed.
    #[error(transparent)]
    Cas(#[from] cipherlake_cas::CasError),
}
