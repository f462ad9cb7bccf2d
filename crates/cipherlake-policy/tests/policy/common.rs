//! The documentation's example policy, keys, claims and text surgery shared by the tests.

use std::path::PathBuf;

use cipherlake_attest::{Claims, TcbStatus, Tee};
use cipherlake_policy::{OwnerSigningKey, Policy, PolicyError};

/// The example policy of docs/policy.md.
pub fn example_text() -> String {
    let path = repo_file("docs/policy-example.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The example, parsed.
pub fn example() -> Policy {
    Policy::parse(&example_text()).expect("the example policy is valid")
}

/// The owner listed in the example (seed 0x42).
pub fn owner() -> OwnerSigningKey {
    OwnerSigningKey::from_seed(&[0x42; 32])
}

/// A key that owns nothing.
pub fn stranger() -> OwnerSigningKey {
    OwnerSigningKey::from_seed(&[0x43; 32])
}

/// Another key, which an update may add as an owner.
pub fn newcomer() -> OwnerSigningKey {
    OwnerSigningKey::from_seed(&[0x44; 32])
}

/// `text` with the first occurrence of `from` replaced (which must occur).
pub fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the text");
    text.replacen(from, to, 1)
}

/// The 1-based line of the first line containing `needle`.
pub fn line_of(text: &str, needle: &str) -> u64 {
    let index = text
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    index as u64 + 1
}

/// Parses a policy that must be refused, returning the error.
pub fn refused(text: &str) -> PolicyError {
    match Policy::parse(text) {
        Ok(policy) => panic!("accepted a bad policy: {}", policy.hash()),
        Err(e) => e,
    }
}

/// The example's driver measurement (sim: SHA-384 of the executable).
pub const DRIVER: &str = "5035f4a666cc27d91e1804d3db62d8db9e2d36c6976d6adeb7a6f29c0b63fef5037b10aba285a55f7460f116a2bcb296";
/// The example's worker measurement.
pub const WORKER: &str = "3146f0f69c333bbe3f5f39a1b4685df0d16d9b9da760470bf4f080a8df3338bacf30cdb720eb9b99f436145f649bda1d";
/// The example driver's allow-listed job.
pub const JOB: &str = "9625ed6f258439ec40d4b47c45866b7287d5ad850483ea7698d1e299543401ce";

/// Decodes hex from a test constant.
pub fn bytes(hex_digits: &str) -> Vec<u8> {
    hex::decode(hex_digits).expect("test hex")
}

/// The example driver's job hash as a request carries it.
pub fn job() -> [u8; 32] {
    bytes(JOB).try_into().expect("32 bytes")
}

/// Evaluation time used with [`sim_claims`].
pub const NOW: u64 = 1_751_328_000;

/// A LAS platform key (public) for sim claims.
pub const PLATFORM: [u8; 32] = [0x5a; 32];

/// Claims of a healthy sim workload with `measurement`, as the sim verifier produces them.
pub fn sim_claims(measurement: &str) -> Claims {
    Claims {
        tee: Tee::Sim,
        attested_tee: None,
        evidence_version: 1,
        measurement: bytes(measurement),
        rtmrs: Vec::new(),
        signer: None,
        product_id: None,
        svn: Some(1),
        debug: false,
        tcb_status: TcbStatus::NotEvaluated,
        advisory_ids: Vec::new(),
        report_data: [0; 64],
        host_data: None,
        platform_id: Some(PLATFORM.to_vec()),
        timestamp: Some(NOW - 5),
        collateral: None,
        sgx: None,
        tdx: None,
        snp: None,
        vtpm: None,
    }
}

/// Claims of a sim-vtpm workload with `measurement` whose PCR *i* holds 32 bytes of value *i*.
pub fn sim_vtpm_claims(measurement: &str) -> Claims {
    Claims {
        tee: Tee::SimVtpm,
        vtpm: Some(cipherlake_attest::VtpmClaims {
            nonce: vec![0; 64],
            tpm_pcrs: (0..24).map(|i| vec![i as u8; 32]).collect(),
            vm_configuration: serde_json::json!({}),
            user_data: vec![0; 64],
            hardware_report_data: vec![0; 64],
        }),
        ..sim_claims(measurement)
    }
}

/// An SGX enclave's measurement (MRENCLAVE).
pub const MRENCLAVE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// An SGX signer (MRSIGNER).
pub const MRSIGNER: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// A production policy: SGX only, pinned by measurement and signer, product id and SVN.
pub fn sgx_text() -> String {
    format!(
        "apiVersion: cipherlake/v1
name: taxi-prod
owners: [ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12]
attestation:
  tees: [sgx]
services:
  driver:
    operation: run
    jobs: [sha256:{JOB}]
    measurements: [sha256:{MRENCLAVE}]
    signers: [sha256:{MRSIGNER}]
    product_id: 7
    min_svn: 3
"
    )
}

/// Claims of a healthy SGX enclave matching [`sgx_text`].
pub fn sgx_claims() -> Claims {
    Claims {
        tee: Tee::Sgx,
        evidence_version: 3,
        measurement: bytes(MRENCLAVE),
        signer: Some(bytes(MRSIGNER)),
        product_id: Some(7),
        svn: Some(3),
        tcb_status: TcbStatus::UpToDate,
        platform_id: None,
        timestamp: None,
        collateral: None,
        ..sim_claims(DRIVER)
    }
}
