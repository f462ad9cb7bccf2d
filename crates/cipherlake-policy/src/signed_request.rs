//! Requests signed by a policy's users and owners: people and outside systems prove who they
//! are with their keys, never with attestation (they are outside every TEE).
//!
//! The signer signs with ed25519
//! ```text
//! "cipherlake-request-v1\0" ‖ field(policy) ‖ field(signer) ‖ nonce (32 bytes)
//!                           ‖ field(method) ‖ field(path) ‖ SHA-256(body)
//! ```
//! where `field(x)` is the u32 big-endian length of `x` and `x`, and `signer` is `user:NAME` or
//! `owner:ed25519:HEX`. The nonce is issued by the CAS and single use, so a captured request
//! cannot be replayed; the method, path and body hash bind the signature to this one request,
//! so it cannot be used for another key, another operation or another user.

use std::fmt;

use ed25519_dalek::Signature;
use sha2::{Digest as _, Sha256};

use crate::keys::{OwnerSigningKey, PublicKey};
use crate::model::User;
use crate::policy::Policy;

/// Domain separation for signed requests.
const DOMAIN: &[u8] = b"cipherlake-request-v1\0";

/// Who signs a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A user of the policy, by name.
    User(String),
    /// An owner of the policy, by key.
    Owner(PublicKey),
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::User(name) => write!(f, "user:{name}"),
            Signer::Owner(key) => write!(f, "owner:{key}"),
        }
    }
}

impl std::str::FromStr for Signer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("user:") {
            if name.is_empty() {
                return Err("user: needs a user name".into());
            }
            return Ok(Signer::User(name.to_string()));
        }
        if let Some(key) = text.strip_prefix("owner:") {
            return key.parse().map(Signer::Owner);
        }
        Err(format!(
            "{text:?} names no signer: expected user:NAME or owner:ed25519:HEX"
        ))
    }
}

/// The request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The HTTP method (`POST`, `GET`).
    pub method: &'a str,
    /// The path and query (`/v1/kms/unwrap`).
    pub path: &'a str,
    /// The body bytes as sent.
    pub body: &'a [u8],
}

fn field(message: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(bytes);
}

/// The bytes `signer` signs for `target` under policy `policy` with the CAS nonce `nonce`.
pub fn request_message(
    policy: &str,
    signer: &Signer,
    nonce: &[u8; 32],
    target: Target<'_>,
) -> Vec<u8> {
    let mut message = DOMAIN.to_vec();
    field(&mut message, policy.as_bytes());
    field(&mut message, signer.to_string().as_bytes());
    message.extend_from_slice(nonce);
    field(&mut message, target.method.as_bytes());
    field(&mut message, target.path.as_bytes());
    message.extend_from_slice(&Sha256::digest(target.body));
    message
}

/// Signs `target` as `signer` of policy `policy` with `key`.
pub fn sign_request(
    key: &OwnerSigningKey,
    policy: &str,
    signer: &Signer,
    nonce: &[u8; 32],
    target: Target<'_>,
) -> [u8; 64] {
    key.sign(&request_message(policy, signer, nonce, target))
        .to_bytes()
}

/// A signer whose signature verified.
#[derive(Debug, Clone, Copy)]
pub enum Verified<'a> {
    /// A user of the policy.
    User {
        /// The user's name.
        name: &'a str,
        /// Its entry in the policy.
        user: &'a User,
    },
    /// An owner of the policy's current version.
    Owner(PublicKey),
}

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The policy lists no such user.
    #[error("policy {policy:?} has no user {user:?}")]
    UnknownUser {
        /// The policy.
        policy: String,
        /// The claimed user.
        user: String,
    },
    /// The key does not own the current version.
    #[error("{key} is not an owner of the current version of policy {policy:?}")]
    NotAnOwner {
        /// The policy.
        policy: String,
        /// The claimed owner key.
        key: PublicKey,
    },
    /// The signature does not verify for this signer, nonce and request.
    #[error(
        "the signature of {signer} does not verify for this policy, nonce and request (signed with another key, for another request, or tampered)"
    )]
    BadSignature {
        /// The claimed signer.
        signer: Signer,
    },
}

/// Checks a request signed by `signer` under `policy` (its current version) over `nonce` and
/// `target`. The caller checks that the nonce is fresh and consumes it.
pub fn verify_request<'a>(
    policy: &'a Policy,
    signer: &Signer,
    signature: &[u8; 64],
    nonce: &[u8; 32],
    target: Target<'_>,
) -> Result<Verified<'a>, RequestError> {
    let (key, verified) = match signer {
        Signer::User(name) => {
            let (name, user) = policy.spec().users.get_key_value(name).ok_or_else(|| {
                RequestError::UnknownUser {
                    policy: policy.name().to_string(),
                    user: name.clone(),
                }
            })?;
            (user.key, Verified::User { name, user })
        }
        Signer::Owner(key) => {
            if !policy.is_owner(key) {
                return Err(RequestError::NotAnOwner {
                    policy: policy.name().to_string(),
                    key: *key,
                });
            }
            (*key, Verified::Owner(*key))
        }
    };
    let message = request_message(policy.name(), signer, nonce, target);
    let signature = Signature::from_bytes(signature);
    if key
        .verifying_key()
        .is_some_and(|key| key.verify_strict(&message, &signature).is_ok())
    {
        Ok(verified)
    } else {
        Err(RequestError::BadSignature {
            signer: signer.clone(),
        })
    }
}
