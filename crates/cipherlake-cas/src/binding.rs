//! The report data a workload binds into its evidence.
//!
//! ```text
//! report_data = SHA-512( "cipherlake-attest-v2\0"
//!                      ‖ u8 length ‖ operation          (`run`, `worker`, `encrypt`, `serve`, `probe`)
//!                      ‖ nonce                         (32 bytes, from POST /v1/attest/nonce)
//!                      ‖ SHA-256(CSR SubjectPublicKeyInfo DER)
//!                      ‖ SHA-256(HPKE X25519 public key, 32 raw bytes)
//!                      ‖ job hash                      (32 bytes, or 32 zero bytes without a job) )
//! ```
//!
//! SHA-512 yields exactly the 64 bytes every TEE's report data holds. Binding both keys means
//! the certificate's key (TLS, P-256) and the key the configuration is sealed to (X25519) are
//! both the attested workload's. Binding the operation means the evidence says what the code
//! does with what it receives: the CAS refuses evidence whose operation is not the service's
//! ([`cipherlake_policy::Intent`]). Client and server call [`report_data`].

use cipherlake_policy::Intent;
use sha2::{Digest, Sha256, Sha512};

/// Domain separation prefix of the report data.
pub const DOMAIN: &[u8] = b"cipherlake-attest-v2\0";

/// Length of a CAS nonce.
pub const NONCE_LEN: usize = 32;

/// Computes the report data binding the operation `intent`, `nonce`, the CSR's public key
/// (SubjectPublicKeyInfo DER), the HPKE public key and the optional job hash.
pub fn report_data(
    intent: Intent,
    nonce: &[u8; NONCE_LEN],
    csr_spki_der: &[u8],
    hpke_public_key: &[u8],
    job_hash: Option<&[u8; 32]>,
) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(DOMAIN);
    let operation = intent.as_str().as_bytes();
    hasher.update([operation.len() as u8]);
    hasher.update(operation);
    hasher.update(nonce);
    hasher.update(Sha256::digest(csr_spki_der));
    hasher.update(Sha256::digest(hpke_public_key));
    hasher.update(job_hash.unwrap_or(&[0u8; 32]));
    hasher.finalize().into()
}

/// The job hash of a job file: SHA-256 of its bytes.
pub fn job_hash(job_file: &[u8]) -> [u8; 32] {
    Sha256::digest(job_file).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_binding() {
        use cipherlake_policy::Operation;
        let run = Intent::Perform(Operation::Run);
        let base = report_data(run, &[1; 32], b"spki", b"hpke", None);
        assert_ne!(base, report_data(run, &[2; 32], b"spki", b"hpke", None));
        assert_ne!(base, report_data(run, &[1; 32], b"spkj", b"hpke", None));
        assert_ne!(base, report_data(run, &[1; 32], b"spki", b"hpkf", None));
        assert_ne!(
            base,
            report_data(run, &[1; 32], b"spki", b"hpke", Some(&[9; 32]))
        );
        for other in [
            Intent::Perform(Operation::Worker),
            Intent::Perform(Operation::Encrypt),
            Intent::Perform(Operation::Serve),
            Intent::Probe,
        ] {
            assert_ne!(base, report_data(other, &[1; 32], b"spki", b"hpke", None));
        }
    }
}
