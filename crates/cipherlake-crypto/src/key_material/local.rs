//! Local AES-GCM key wrapping as in parquet-java's `KeyToolkit.encryptKeyLocally` and Arrow
//! C++'s `internal::EncryptKeyLocally`: the wrapped form is base64 (standard alphabet, padded)
//! of nonce(12) ‖ ciphertext ‖ tag(16), with no length prefix, under an AES-128/192/256 key.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

/// AES-GCM nonce length used by Parquet key wrapping.
const NONCE_LENGTH: usize = 12;
/// AES-GCM tag length used by Parquet key wrapping.
const TAG_LENGTH: usize = 16;

/// Base64 as Java's `Base64.getEncoder()` writes it (padded) and `Base64.getDecoder()` reads it
/// (padding optional).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors of local key wrapping. Never carry key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalWrapError {
    /// The wrapping key is not 16, 24 or 32 bytes long.
    #[error("wrapping key has {0} bytes, not 16, 24 or 32")]
    InvalidKeyLength(usize),
    /// The wrapped key is not valid base64.
    #[error("wrapped key is not valid base64")]
    InvalidBase64,
    /// The decoded wrapped key is shorter than nonce and tag.
    #[error("wrapped key has {0} bytes, fewer than the 28 of nonce and tag")]
    TooShort(usize),
    /// The key to wrap exceeds what AES-GCM can encrypt in one message.
    #[error("key to wrap is too long for AES-GCM ({0} bytes)")]
    KeyTooLong(usize),
    /// AES-GCM tag verification failed: wrong wrapping key, wrong AAD or tampered ciphertext.
    #[error("AES-GCM authentication failed")]
    Authentication,
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
}

/// An AES-GCM instance for any of the three AES key sizes.
enum GcmCipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<AesGcm<Aes192, U12>>),
    Aes256(Box<Aes256Gcm>),
}

impl GcmCipher {
    fn new(key: &[u8]) -> Result<Self, LocalWrapError> {
        let invalid = |_| LocalWrapError::InvalidKeyLength(key.len());
        Ok(match key.len() {
            16 => Self::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(invalid)?)),
            24 => Self::Aes192(Box::new(
                AesGcm::<Aes192, U12>::new_from_slice(key).map_err(invalid)?,
            )),
            32 => Self::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(invalid)?)),
            other => return Err(LocalWrapError::InvalidKeyLength(other)),
        })
    }

    fn encrypt(
        &self,
        nonce: &[u8; NONCE_LENGTH],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, LocalWrapError> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let result = match self {
            Self::Aes128(c) => c.encrypt(nonce, payload),
            Self::Aes192(c) => c.encrypt(nonce, payload),
            Self::Aes256(c) => c.encrypt(nonce, payload),
        };
        result.map_err(|_| LocalWrapError::KeyTooLong(plaintext.len()))
    }

    fn decrypt(
        &self,
        nonce: &[u8],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, LocalWrapError> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        let result = match self {
            Self::Aes128(c) => c.decrypt(nonce, payload),
            Self::Aes192(c) => c.decrypt(nonce, payload),
            Self::Aes256(c) => c.decrypt(nonce, payload),
        };
        result
            .map(Zeroizing::new)
            .map_err(|_| LocalWrapError::Authentication)
    }
}

/// Wraps `key` under `wrapping_key` (16, 24 or 32 bytes) with AES-GCM, a random 12-byte nonce
/// and `aad`, returning base64(nonce ‖ ciphertext ‖ tag) exactly as parquet-java's
/// `KeyToolkit.encryptKeyLocally` does.
///
/// The Parquet key tools use this with AAD = UTF-8 master key id (KMS wrapping of
/// `InMemoryKMS`/`LocalWrapKmsClient`) and with AAD = raw KEK id (DEK under KEK).
pub fn encrypt_key_locally(
    key: &[u8],
    wrapping_key: &[u8],
    aad: &[u8],
) -> Result<String, LocalWrapError> {
    let cipher = GcmCipher::new(wrapping_key)?;
    let mut nonce = [0u8; NONCE_LENGTH];
    getrandom::fill(&mut nonce).map_err(|_| LocalWrapError::Random)?;
    let sealed = cipher.encrypt(&nonce, key, aad)?;
    let mut out = Vec::with_capacity(NONCE_LENGTH + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(BASE64.encode(out))
}

/// Reverses [`encrypt_key_locally`]: decodes base64, splits nonce(12) ‖ ciphertext ‖ tag(16) and
/// decrypts under `wrapping_key` with `aad` (parquet-java's `KeyToolkit.decryptKeyLocally`).
pub fn decrypt_key_locally(
    wrapped: &str,
    wrapping_key: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, LocalWrapError> {
    let cipher = GcmCipher::new(wrapping_key)?;
    let bytes = BASE64
        .decode(wrapped.trim())
        .map_err(|_| LocalWrapError::InvalidBase64)?;
    if bytes.len() < NONCE_LENGTH + TAG_LENGTH {
        return Err(LocalWrapError::TooShort(bytes.len()));
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LENGTH);
    cipher.decrypt(nonce, ciphertext, aad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_key_sizes() {
        for len in [16, 24, 32] {
            let wrapping_key = vec![7u8; len];
            let wrapped = encrypt_key_locally(b"0123456789abcdef", &wrapping_key, b"aad").unwrap();
            let raw = BASE64.decode(&wrapped).unwrap();
            assert_eq!(raw.len(), 12 + 16 + 16);
            let key = decrypt_key_locally(&wrapped, &wrapping_key, b"aad").unwrap();
            assert_eq!(key.as_slice(), b"0123456789abcdef");
            assert_eq!(
                decrypt_key_locally(&wrapped, &wrapping_key, b"other"),
                Err(LocalWrapError::Authentication)
            );
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            encrypt_key_locally(b"k", &[1u8; 20], b""),
            Err(LocalWrapError::InvalidKeyLength(20))
        );
        assert_eq!(
            decrypt_key_locally("not base64!", &[1u8; 16], b""),
            Err(LocalWrapError::InvalidBase64)
        );
        assert_eq!(
            decrypt_key_locally("AAAA", &[1u8; 16], b""),
            Err(LocalWrapError::TooShort(3))
        );
    }

    #[test]
    fn accepts_unpadded_base64() {
        let wrapping_key = [9u8; 16];
        // 16-byte key → 44 bytes → base64 with one '=' of padding.
        let wrapped = encrypt_key_locally(&[1u8; 16], &wrapping_key, b"").unwrap();
        assert!(wrapped.ends_with('='));
        let unpadded = wrapped.trim_end_matches('=');
        assert_eq!(
            decrypt_key_locally(unpadded, &wrapping_key, b"")
                .unwrap()
                .as_slice(),
            &[1u8; 16]
        );
    }
}
