//! Owner-authenticated reads: an owner proves, for one fresh CAS nonce, that it may read a
//! policy's full document.
//!
//! The owner signs with ed25519
//! `"cipherlake-policy-read-v1\0" ‖ u32 BE length of the name ‖ name ‖ nonce (32 bytes)`;
//! the domain separates it from policy signatures ([`crate::signing_message`]), and the nonce
//! (single use, issued by the CAS) makes a captured request useless for a replay.

use ed25519_dalek::Signature;

use crate::keys::{OwnerSigningKey, PublicKey};
use crate::policy::Policy;

/// Domain separation for read requests.
const DOMAIN: &[u8] = b"cipherlake-policy-read-v1\0";

/// The bytes an owner signs to read policy `name` with `nonce`.
pub fn read_message(name: &str, nonce: &[u8; 32]) -> Vec<u8> {
    let length = u32::try_from(name.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(DOMAIN.len() + 4 + name.len() + 32);
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(name.as_bytes());
    message.extend_from_slice(nonce);
    message
}

/// Signs a read request for policy `name` with the CAS nonce `nonce`.
pub fn sign_read(key: &OwnerSigningKey, name: &str, nonce: &[u8; 32]) -> [u8; 64] {
    key.sign(&read_message(name, nonce)).to_bytes()
}

/// Why a read request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The signer does not own the current version.
    #[error("{signer} is not an owner of the current version of policy {name:?}")]
    NotAnOwner {
        /// The claimed signer.
        signer: PublicKey,
        /// The policy name.
        name: String,
    },
    /// The signature does not verify for this policy and nonce.
    #[error("the read request's signature by {signer} does not verify for this policy and nonce")]
    BadSignature {
        /// The claimed signer.
        signer: PublicKey,
    },
}

/// Checks a read request of `current` (the current version) signed by `signer` over `nonce`:
/// the signer must own the current version and the signature must verify.
pub fn verify_read(
    current: &Policy,
    signer: &PublicKey,
    signature: &[u8; 64],
    nonce: &[u8; 32],
) -> Result<(), ReadError> {
    if !current.is_owner(signer) {
        return Err(ReadError::NotAnOwner {
            signer: *signer,
            name: current.name().to_string(),
        });
    }
    let message = read_message(current.name(), nonce);
    let signature = Signature::from_bytes(signature);
    if signer
        .verifying_key()
        .is_some_and(|key| key.verify_strict(&message, &signature).is_ok())
    {
        Ok(())
    } else {
        Err(ReadError::BadSignature { signer: *signer })
    }
}
