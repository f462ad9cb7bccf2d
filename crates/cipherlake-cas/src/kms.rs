//! KMS operations with keys that never leave the CAS.
//!
//! * wrap / unwrap: AES-256-GCM exactly as Parquet's `InMemoryKMS` (parquet-java
//!   `KeyToolkit.encryptKeyLocally`, pyarrow): base64(nonce ‖ ciphertext ‖ tag), AAD = the
//!   master key id, so key material written through the CAS is readable with the same master
//!   key by parquet-java or pyarrow;
//! * rsa-decrypt: RSAES-OAEP with SHA-1 (MGF1-SHA-1, empty label), as Always Encrypted wraps
//!   column encryption keys;
//! * rsa-sign: RSASSA-PKCS1-v1_5 over SHA-256 of the message (column master key metadata
//!   signatures).

use cipherlake_crypto::key_material::{decrypt_key_locally, encrypt_key_locally};
use cipherlake_policy::SecretValue;
use rsa::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

use crate::CasError;

/// A KMS operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Wrap a data key (input: the key; output: the wrapped form, UTF-8).
    Wrap,
    /// Unwrap a data key (input: the wrapped form, UTF-8; output: the key).
    Unwrap,
    /// RSA-OAEP-SHA-1 decryption.
    RsaDecrypt,
    /// RSA PKCS#1 v1.5 SHA-256 signature.
    RsaSign,
}

impl Operation {
    /// The right a grant must give for this operation.
    pub fn right(self) -> cipherlake_policy::KmsRight {
        match self {
            Operation::Unwrap | Operation::RsaDecrypt => cipherlake_policy::KmsRight::Unwrap,
            Operation::Wrap | Operation::RsaSign => cipherlake_policy::KmsRight::Wrap,
        }
    }

    /// The operation's name in the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Wrap => "wrap",
            Operation::Unwrap => "unwrap",
            Operation::RsaDecrypt => "rsa-decrypt",
            Operation::RsaSign => "rsa-sign",
        }
    }
}

/// Runs `op` with the key `value` (the secret `key_id`).
pub fn run(
    op: Operation,
    key_id: &str,
    value: &SecretValue,
    input: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CasError> {
    let wrong_kind = || {
        CasError::BadRequest(format!(
            "KMS key {key_id:?} is not of a kind that supports {}",
            op.as_str()
        ))
    };
    match op {
        Operation::Wrap | Operation::Unwrap => {
            let SecretValue::Bytes(key) = value else {
                return Err(wrong_kind());
            };
            if key.len() != 32 {
                return Err(wrong_kind());
            }
            if op == Operation::Wrap {
                encrypt_key_locally(input, key, key_id.as_bytes())
                    .map(|w| Zeroizing::new(w.into_bytes()))
                    .map_err(|e| CasError::Crypto(format!("wrap: {e}")))
            } else {
                let wrapped = std::str::from_utf8(input)
                    .map_err(|_| CasError::BadRequest("wrapped: not UTF-8".into()))?;
                decrypt_key_locally(wrapped, key, key_id.as_bytes()).map_err(|_| {
                    CasError::BadRequest(format!(
                        "the wrapped key does not authenticate under master key {key_id:?}"
                    ))
                })
            }
        }
        Operation::RsaDecrypt | Operation::RsaSign => {
            let SecretValue::KeyPair {
                private_pkcs8_der, ..
            } = value
            else {
                return Err(wrong_kind());
            };
            let key =
                rsa::PrivateKey::from_pkcs8_der(private_pkcs8_der).map_err(|_| wrong_kind())?;
            if op == Operation::RsaDecrypt {
                key.oaep_decrypt::<sha1::Sha1>(input)
                    .map(Zeroizing::new)
                    .map_err(|_| CasError::BadRequest("RSA-OAEP decryption failed".into()))
            } else {
                key.pkcs1v15_sign::<sha2::Sha256>(input)
                    .map(Zeroizing::new)
                    .map_err(|_| CasError::Crypto("RSA signing failed".into()))
            }
        }
    }
}
