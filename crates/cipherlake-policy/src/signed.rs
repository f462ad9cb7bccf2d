//! Signed policy versions and the rules for accepting an update.
//!
//! An owner signs `"cipherlake-policy-v1\0" || canonical hash (32 bytes)` with ed25519 (the
//! hash covers every field, the name and the predecessor included). The signature therefore covers the policy's
//! meaning, not its formatting: re-indenting a signed policy keeps the signature valid, any
//! semantic change breaks it.

use std::fmt;

use ed25519_dalek::Signature;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use zeroize::Zeroizing;

use crate::hash::PolicyHash;
use crate::keys::{OwnerSigningKey, PublicKey};
use crate::policy::{Policy, PolicyError};

/// Domain separation for policy signatures.
const DOMAIN: &[u8] = b"cipherlake-policy-v1\0";
/// The `format` field of the envelope.
const FORMAT: &str = "cipherlake-signed-policy-v1";

/// The bytes an owner signs for a policy version.
pub fn signing_message(hash: &PolicyHash) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + 32);
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(&hash.0);
    message
}

/// A policy text with an owner's signature: what a custodian sends to the CAS.
///
/// JSON: `{"format": "cipherlake-signed-policy-v1", "policy": "<YAML>", "signer":
/// "ed25519:HEX", "signature": "<128 hex digits>"}`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// Always `cipherlake-signed-policy-v1`.
    format: Format,
    /// The policy's YAML text as written (zeroized on drop: it may hold inline secrets).
    #[serde(with = "zeroizing_string")]
    pub policy: Zeroizing<String>,
    /// The key that signed.
    pub signer: PublicKey,
    /// The ed25519 signature over [`signing_message`].
    #[serde(with = "signature_hex")]
    pub signature: Signature,
}

impl fmt::Debug for SignedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPolicy")
            .field("policy", &format_args!("<{} bytes>", self.policy.len()))
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// The envelope's format marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Format;

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(FORMAT)
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == FORMAT {
            Ok(Format)
        } else {
            Err(de::Error::custom(format_args!(
                "unknown envelope format {text:?} (expected {FORMAT:?})"
            )))
        }
    }
}

mod zeroizing_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(super) fn serialize<S: Serializer>(
        value: &Zeroizing<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(deserializer).map(Zeroizing::new)
    }
}

mod signature_hex {
    use ed25519_dalek::Signature;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(
        signature: &Signature,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(signature.to_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Signature, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(&text, &mut bytes)
            .map_err(|_| de::Error::custom("a signature is 128 hex digits"))?;
        Ok(Signature::from_bytes(&bytes))
    }
}

/// Why a signed policy is refused. Nothing is changed when an update is refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The policy text itself is invalid.
    #[error("invalid policy: {0}")]
    Policy(#[from] PolicyError),
    /// The signature does not verify with the named signer key (tampered text, wrong key).
    #[error("the signature by {signer} does not verify for policy {hash}")]
    BadSignature {
        /// The claimed signer.
        signer: PublicKey,
        /// The hash of the text received.
        hash: PolicyHash,
    },
    /// A first version signed by a key that is not among its own owners.
    #[error("the first version of a policy must be signed by one of its owners; {signer} is not")]
    NotOwnOwner {
        /// The signer.
        signer: PublicKey,
    },
    /// A first version that names a predecessor.
    #[error("policy {name:?} does not exist yet, but this version names predecessor {predecessor}")]
    UnexpectedPredecessor {
        /// The policy name.
        name: String,
        /// The predecessor named.
        predecessor: PolicyHash,
    },
    /// An update signed by a key that does not own the current version (new owners listed in
    /// the update itself do not count).
    #[error("{signer} is not an owner of the current version of policy {name:?}")]
    NotAnOwner {
        /// The signer.
        signer: PublicKey,
        /// The policy name.
        name: String,
    },
    /// An update whose name differs from the policy it would replace.
    #[error("the update is named {found:?}, but it would replace policy {expected:?}")]
    NameMismatch {
        /// The current policy's name.
        expected: String,
        /// The update's name.
        found: String,
    },
    /// An update based on a version that is not the current one (someone else updated first).
    #[error(
        "stale update of policy {name:?}: it names predecessor {}, but the current version is {current}; rebase it on the current version",
        .found.map(|h| h.to_string()).unwrap_or_else(|| "null".into())
    )]
    Stale {
        /// The policy name.
        name: String,
        /// The current version's hash.
        current: PolicyHash,
        /// The predecessor the update names.
        found: Option<PolicyHash>,
    },
}

/// An accepted policy version and who signed it (for the audit log).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The new version.
    pub policy: Policy,
    /// The owner key that signed it.
    pub signer: PublicKey,
}

/// Signs a policy text with an owner key (the text must be a valid policy).
pub fn sign(text: &str, key: &OwnerSigningKey) -> Result<SignedPolicy, PolicyError> {
    let policy = Policy::parse(text)?;
    let signature = key.sign(&signing_message(&policy.hash()));
    Ok(SignedPolicy {
        format: Format,
        policy: Zeroizing::new(text.to_string()),
        signer: key.public_key(),
        signature,
    })
}

/// Decides whether `new` may become the current version of its policy.
///
/// * The text must be a valid policy and the signature must verify with the named signer.
/// * First version (`current` is `None`): the signer must be one of the new version's owners
///   and no predecessor may be named.
/// * Update: same name; the signer must be an owner of the **current** version (so nobody gains
///   control by listing their own key); and the predecessor must be the current version's
///   hash. Ownership is checked before the predecessor so that a non-owner learns nothing about
///   the current version.
pub fn verify_update(
    current: Option<&Policy>,
    new: &SignedPolicy,
) -> Result<Accepted, UpdateError> {
    let policy = Policy::parse(&new.policy)?;
    let signer = new.signer;
    let hash = policy.hash();
    let verified = signer.verifying_key().is_some_and(|key| {
        key.verify_strict(&signing_message(&hash), &new.signature)
            .is_ok()
    });
    if !verified {
        return Err(UpdateError::BadSignature { signer, hash });
    }
    match current {
        None => {
            if let Some(predecessor) = policy.predecessor() {
                return Err(UpdateError::UnexpectedPredecessor {
                    name: policy.name().to_string(),
                    predecessor,
                });
            }
            if !policy.is_owner(&signer) {
                return Err(UpdateError::NotOwnOwner { signer });
            }
        }
        Some(current) => {
            if !current.is_owner(&signer) {
                return Err(UpdateError::NotAnOwner {
                    signer,
                    name: current.name().to_string(),
                });
            }
            if policy.name() != current.name() {
                return Err(UpdateError::NameMismatch {
                    expected: current.name().to_string(),
                    found: policy.name().to_string(),
                });
            }
            if policy.predecessor() != Some(current.hash()) {
                return Err(UpdateError::Stale {
                    name: current.name().to_string(),
                    current: current.hash(),
                    found: policy.predecessor(),
                });
            }
        }
    }
    Ok(Accepted { policy, signer })
}
