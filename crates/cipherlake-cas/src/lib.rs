//! The cipherlake Configuration and Attestation Service (CAS) and its client.
//!
//! The CAS is where a data custodian's policy becomes enforcement. A workload receives a
//! certificate, its configuration and its secrets only after its TEE evidence, bound to a CAS
//! nonce and to its keys ([`binding`]), satisfies its service in the policy.
//!
//! * [`store`]: the embedded SQLite database (policies, secrets, nonces, platforms, issued
//!   certificates, audit log); secrets and private keys are encrypted at rest ([`at_rest`])
//!   under a master key held by a [`at_rest::MasterKeyProvider`].
//! * [`service`]: the CAS operations (apply a policy, issue nonces, attest, KMS), independent
//!   of HTTP; [`server`] exposes them over HTTPS (rustls, ring) as documented in `docs/api.md`.
//! * [`material`]: secret values, their generation and their encoding at rest; [`ca`]: the
//!   per-policy workload CA and the CAS's own TLS certificate; [`seal`]: HPKE sealing of
//!   released configuration to the attested workload key; [`kms`]: wrap/unwrap (Parquet
//!   `InMemoryKMS` format), RSA-OAEP decrypt and RSA sign with keys that never leave the CAS.
//! * [`audit`]: the hash-chained, signed audit log and [`audit::verify_log`].
//! * [`cas_evidence`]: the CAS's own evidence, binding its TLS key, and how a custodian checks
//!   it before trusting the CAS (`cipherlake cas verify`).
//! * [`client`]: the HTTPS client (pinned CAS certificate, mTLS workload identity).
//! * [`api`]: the JSON bodies shared by server and client.

pub mod api;
pub mod at_rest;
pub mod audit;
pub mod binding;
pub mod ca;
pub mod cas_evidence;
pub mod client;
pub mod error;
pub mod evidence;
pub mod integrity;
pub mod kms;
pub mod material;
pub mod seal;
pub mod sealing;
pub mod server;
pub mod service;
pub mod store;
pub mod workers;

pub use error::CasError;
