//! Sealing released configuration to the attested workload's HPKE key (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305).
//!
//! The `info` string binds the sealed box to its policy and service:
//! `"cipherlake-config-v1\0" ‖ policy ‖ "\0" ‖ service`; there is no associated data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core_09::TryRngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CasError;

/// The HPKE suite name, as reported in API bodies.
pub const SUITE: &str = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/ChaCha20Poly1305";

/// A sealed box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The suite (always [`SUITE`]).
    pub suite: String,
    /// The encapsulated key, base64.
    pub enc: String,
    /// The ciphertext, base64.
    pub ciphertext: String,
}

fn info(policy: &str, service: &str) -> Vec<u8> {
    format!("cipherlake-config-v1\0{policy}\0{service}").into_bytes()
}

/// An HPKE key pair held by the workload.
pub struct HpkeKeyPair {
    private: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    public: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for HpkeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpkeKeyPair")
            .field("public", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl HpkeKeyPair {
    /// A fresh key pair.
    pub fn generate() -> Self {
        let (private, public) =
            X25519HkdfSha256::gen_keypair(&mut rand_core_09::OsRng.unwrap_err());
        HpkeKeyPair { private, public }
    }

    /// The public key, 32 raw bytes.
    pub fn public_key(&self) -> Vec<u8> {
        self.public.to_bytes().to_vec()
    }

    /// The key pair of a 32-byte private key.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self, CasError> {
        let private = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| CasError::BadRequest("not an X25519 private key".into()))?;
        let public = X25519HkdfSha256::sk_to_pk(&private);
        Ok(HpkeKeyPair { private, public })
    }

    /// The private key, 32 raw bytes (to store it).
    pub fn private_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.private.to_bytes().to_vec())
    }

    /// Opens a box sealed to this key for `policy`/`service`.
    pub fn open(
        &self,
        sealed: &Sealed,
        policy: &str,
        service: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CasError> {
        self.open_with_info(sealed, &info(policy, service))
    }

    /// Opens a box sealed to this key with `info`.
    pub fn open_with_info(
        &self,
        sealed: &Sealed,
        info: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CasError> {
        let bad = || CasError::Crypto("the sealed box does not open with this key".into());
        let enc = BASE64.decode(&sealed.enc).map_err(|_| bad())?;
        let ct = BASE64.decode(&sealed.ciphertext).map_err(|_| bad())?;
        let enc =
            <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| bad())?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.private,
            &enc,
            info,
            &ct,
            &[],
        )
        .map(Zeroizing::new)
        .map_err(|_| bad())
    }
}

/// Seals `plaintext` to the 32-byte X25519 `public_key` for `policy`/`service`.
pub fn seal(
    public_key: &[u8],
    policy: &str,
    service: &str,
    plaintext: &[u8],
) -> Result<Sealed, CasError> {
    seal_with_info(public_key, &info(policy, service), plaintext)
}

/// Seals `plaintext` to the 32-byte X25519 `public_key` with `info`.
pub fn seal_with_info(
    public_key: &[u8],
    info: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CasError> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map_err(|_| CasError::BadRequest("not an X25519 public key".into()))?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        &[],
        &mut rand_core_09::OsRng.unwrap_err(),
    )
    .map_err(|_| CasError::Crypto("HPKE sealing failed".into()))?;
    Ok(Sealed {
        suite: SUITE.to_string(),
        enc: BASE64.encode(enc.to_bytes()),
        ciphertext: BASE64.encode(ct),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_to_the_key_and_binds_policy_and_service() {
        let keys = HpkeKeyPair::generate();
        let sealed = seal(&keys.public_key(), "p", "s", b"config").unwrap();
        assert_eq!(&*keys.open(&sealed, "p", "s").unwrap(), b"config");
        assert!(keys.open(&sealed, "p", "t").is_err());
        assert!(HpkeKeyPair::generate().open(&sealed, "p", "s").is_err());
    }
}
