//! Attack and happy-path tests of the CAS through its real HTTPS API, with a real LAS for sim
//! evidence.

#[path = "cas/common.rs"]
mod common;

#[path = "cas/attestation.rs"]
mod attestation;
#[path = "cas/audit_log.rs"]
mod audit_log;
#[path = "cas/cas_verify.rs"]
mod cas_verify;
#[path = "cas/collateral.rs"]
mod collateral;
#[path = "cas/happy.rs"]
mod happy;
#[path = "cas/identity.rs"]
mod identity;
#[path = "cas/kms.rs"]
mod kms;
#[path = "cas/operations.rs"]
mod operations;
#[path = "cas/owner_read.rs"]
mod owner_read;
#[path = "cas/policies.rs"]
mod policies;
#[path = "cas/principals.rs"]
mod principals;
#[path = "cas/restart.rs"]
mod restart;
#[path = "cas/robustness.rs"]
mod robustness;
#[path = "cas/sealing.rs"]
mod sealing;
#[path = "cas/tampering.rs"]
mod tampering;
#[path = "cas/vtpm.rs"]
mod vtpm;
