//! Ed25519 keys: owner keys (who may update a policy), LAS platform keys (sim), and the owner's
//! private signing key.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use zeroize::Zeroizing;

use crate::digest::decode_hex;

/// Prefix of public keys in policies.
const PUBLIC_PREFIX: &str = "ed25519:";
/// Prefix of the private key file written by [`OwnerSigningKey::to_file_text`].
const PRIVATE_PREFIX: &str = "cipherlake-owner-key-v1:ed25519:";

/// An ed25519 public key, written `ed25519:HEX` (64 hex digits; the prefix is optional when
/// parsing, so a LAS platform key printed as plain hex is accepted).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key as a verifier, or `None` when the bytes are not a usable ed25519 public key
    /// (not a curve point, or a weak key of small order).
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0)
            .ok()
            .filter(|key| !key.is_weak())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix(PUBLIC_PREFIX).unwrap_or(s);
        if digits.contains(':') {
            return Err(format!(
                "expected an ed25519 public key as ed25519:HEX, found the prefix {:?}",
                s.split(':').next().unwrap_or_default()
            ));
        }
        let bytes = decode_hex(digits)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "an ed25519 public key has 32 bytes (64 hex digits), found {}",
                bytes.len()
            )
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Errors reading an owner's private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("cannot generate a key: the random source failed: {0}")]
    Random(String),
    /// The text is not an owner key file.
    #[error("not a cipherlake owner key (expected a line {PRIVATE_PREFIX}<64 hex digits>)")]
    Malformed,
}

/// An owner's private ed25519 key: signs policy versions. Zeroized on drop; never printed.
pub struct OwnerSigningKey(SigningKey);

impl OwnerSigningKey {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public key, as listed under `owners`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The key file's text: one line `cipherlake-owner-key-v1:ed25519:<hex seed>`.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.0.to_bytes());
        let digits = Zeroizing::new(hex::encode(seed.as_ref()));
        Zeroizing::new(format!("{PRIVATE_PREFIX}{}\n", digits.as_str()))
    }

    /// Reads a key file's text (as written by [`OwnerSigningKey::to_file_text`]).
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let digits = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(KeyError::Malformed)?;
        if digits.len() != 64 {
            return Err(KeyError::Malformed);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, seed.as_mut()).map_err(|_| KeyError::Malformed)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Signs a message.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

impl fmt::Debug for OwnerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OwnerSigningKey(public {}, private redacted)",
            self.public_key()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_redacted_debug() {
        let key = OwnerSigningKey::generate().expect("random");
        let text = key.to_file_text();
        let back = OwnerSigningKey::from_file_text(&text).expect("parses");
        assert_eq!(back.public_key(), key.public_key());
        let debug = format!("{key:?}");
        assert!(!debug.contains(&text[PRIVATE_PREFIX.len()..PRIVATE_PREFIX.len() + 64]));
        assert!(OwnerSigningKey::from_file_text("ed25519:00").is_err());
        let public = key.public_key();
        assert_eq!(
            public.to_string().parse::<PublicKey>().expect("parses"),
            public
        );
        assert!(public.verifying_key().is_some());
        // The identity point is a weak key: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey(identity).verifying_key().is_none());
    }
}
