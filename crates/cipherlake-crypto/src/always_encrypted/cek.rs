//! Column encryption key (CEK) values and column master key (CMK) metadata signatures.
//!
//! An encrypted CEK value, as stored in `sys.column_encryption_key_values`, is
//!
//! ```text
//! 0x01 ‖ key path length (u16 LE) ‖ ciphertext length (u16 LE)
//!      ‖ key path (UTF-16LE, lower-cased when written) ‖ RSA-OAEP-SHA1 ciphertext ‖ signature
//! ```
//!
//! where the signature is RSASSA-PKCS1-v1_5 with SHA-256 over every byte before it, made with
//! the column master key. CMK metadata signatures (for enclave-enabled keys) are
//! RSASSA-PKCS1-v1_5/SHA-256 over the 32-byte digest
//! `SHA-256(UTF-16LE(lowercase(provider name ‖ key path ‖ "true"|"false")))`.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};
use zeroize::Zeroizing;

use super::rsa_private;

/// Version byte of encrypted CEK values.
pub const CEK_VALUE_VERSION: u8 = 0x01;
/// The key-encryption algorithm name SQL Server records for CEK values.
pub const KEY_ENCRYPTION_ALGORITHM: &str = "RSA_OAEP";
/// Key store provider name of the Windows certificate store.
pub const CERTIFICATE_STORE_PROVIDER: &str = "MSSQL_CERTIFICATE_STORE";

const HEADER_LEN: usize = 5;

/// Why a CEK value or CMK signature was rejected or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CekError {
    /// The value ends before the parts its header announces, or its signature is shorter
    /// than the column master key.
    #[error("encrypted CEK value truncated")]
    Truncated,
    /// The first byte is not 0x01.
    #[error("unsupported encrypted CEK value version 0x{0:02x} (expected 0x01)")]
    UnsupportedVersion(u8),
    /// The key path is not valid UTF-16LE.
    #[error("key path in encrypted CEK value is not valid UTF-16LE")]
    InvalidKeyPath,
    /// The key path in the value is not the column master key's path.
    #[error("encrypted CEK value is for key path {found:?}, expected {expected:?}")]
    KeyPathMismatch {
        /// The path the caller expected.
        expected: String,
        /// The path in the value.
        found: String,
    },
    /// The signature does not verify with the column master key.
    #[error("signature does not verify with the column master key")]
    InvalidSignature,
    /// RSA-OAEP decryption of the CEK failed.
    #[error("column encryption key could not be decrypted with the column master key")]
    UnwrapFailed,
    /// The key path or ciphertext does not fit the u16 length fields.
    #[error("key path or ciphertext too long for an encrypted CEK value")]
    TooLong,
    /// The public and private keys given are not one key pair.
    #[error("public key does not belong to the private key")]
    KeyPairMismatch,
    /// A key or certificate could not be decoded.
    #[error("invalid key or certificate: {0}")]
    InvalidKey(String),
    /// An RSA operation failed while creating a value or signature (key too small, RNG).
    #[error("RSA operation failed")]
    RsaFailed,
}

/// A parsed encrypted column encryption key value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedCek {
    /// Column master key path as stored (normally lower-case).
    pub key_path: String,
    /// RSA-OAEP (SHA-1) encryption of the CEK under the column master key.
    pub ciphertext: Vec<u8>,
    /// RSASSA-PKCS1-v1_5 SHA-256 signature over all preceding bytes.
    pub signature: Vec<u8>,
    /// The signed bytes: version, lengths, key path and ciphertext exactly as stored.
    signed: Vec<u8>,
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

impl EncryptedCek {
    /// Parses an encrypted CEK value. Does not verify it.
    pub fn parse(bytes: &[u8]) -> Result<Self, CekError> {
        let (&version, _) = bytes.split_first().ok_or(CekError::Truncated)?;
        if version != CEK_VALUE_VERSION {
            return Err(CekError::UnsupportedVersion(version));
        }
        if bytes.len() < HEADER_LEN {
            return Err(CekError::Truncated);
        }
        let path_len = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
        let ct_len = usize::from(u16::from_le_bytes([bytes[3], bytes[4]]));
        let signed_len = HEADER_LEN + path_len + ct_len;
        if bytes.len() <= signed_len {
            return Err(CekError::Truncated);
        }
        let path = &bytes[HEADER_LEN..HEADER_LEN + path_len];
        if !path.len().is_multiple_of(2) {
            return Err(CekError::InvalidKeyPath);
        }
        let units: Vec<u16> = path
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let key_path = String::from_utf16(&units).map_err(|_| CekError::InvalidKeyPath)?;
        Ok(EncryptedCek {
            key_path,
            ciphertext: bytes[HEADER_LEN + path_len..signed_len].to_vec(),
            signature: bytes[signed_len..].to_vec(),
            signed: bytes[..signed_len].to_vec(),
        })
    }

    /// The signed bytes: version, lengths, key path and ciphertext exactly as stored.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// The encoded value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed.clone();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Checks the key path against `expected` (case-insensitively, as SQL Server compares
    /// paths) and the signature with the column master key's public key.
    pub fn verify(&self, expected_key_path: &str, cmk: &PublicKey) -> Result<(), CekError> {
        if self.key_path.to_lowercase() != expected_key_path.to_lowercase() {
            return Err(CekError::KeyPathMismatch {
                expected: expected_key_path.to_owned(),
                found: self.key_path.clone(),
            });
        }
        if self.signature.len() < cmk.size() {
            return Err(CekError::Truncated);
        }
        cmk.pkcs1v15_verify::<Sha256>(&self.signed, &self.signature)
            .map_err(|_| CekError::InvalidSignature)
    }

    /// Verifies the value (see [`EncryptedCek::verify`]) and decrypts the column encryption
    /// key with the column master key's private key.
    pub fn decrypt(
        &self,
        expected_key_path: &str,
        cmk: &PrivateKey,
    ) -> Result<Zeroizing<Vec<u8>>, CekError> {
        self.verify(expected_key_path, cmk.as_public_key())?;
        rsa_private::oaep_sha1_decrypt(cmk, &self.ciphertext).map_err(|_| CekError::UnwrapFailed)
    }
}

/// Parses, verifies and decrypts an encrypted CEK value in one step.
pub fn decrypt_cek(
    value: &[u8],
    expected_key_path: &str,
    cmk: &PrivateKey,
) -> Result<Zeroizing<Vec<u8>>, CekError> {
    EncryptedCek::parse(value)?.decrypt(expected_key_path, cmk)
}

/// Creates an encrypted CEK value: encrypts `cek` with the column master key's public key
/// (RSA-OAEP, SHA-1), records the lower-cased `key_path`, and signs with its private key.
pub fn encrypt_cek(
    cek: &[u8],
    key_path: &str,
    cmk_public: &PublicKey,
    cmk_private: &PrivateKey,
) -> Result<Vec<u8>, CekError> {
    if cmk_private.as_public_key() != cmk_public {
        return Err(CekError::KeyPairMismatch);
    }
    let mut out = encrypt_cek_unsigned(cek, key_path, cmk_public)?;
    let signature =
        rsa_private::pkcs1v15_sha256_sign(cmk_private, &out).map_err(|_| CekError::RsaFailed)?;
    out.extend_from_slice(&signature);
    Ok(out)
}

/// The signed part of an encrypted CEK value (version, lengths, lower-cased key path,
/// RSA-OAEP-SHA1 ciphertext of `cek`), for column master keys held where only a signing
/// operation is available (a KMS): append the RSASSA-PKCS1-v1_5 SHA-256 signature of these
/// bytes to get the value.
pub fn encrypt_cek_unsigned(
    cek: &[u8],
    key_path: &str,
    cmk_public: &PublicKey,
) -> Result<Vec<u8>, CekError> {
    let path = utf16le(&key_path.to_lowercase());
    let ciphertext = cmk_public
        .oaep_encrypt::<sha1::Sha1>(cek)
        .map_err(|_| CekError::RsaFailed)?;
    let path_len = u16::try_from(path.len()).map_err(|_| CekError::TooLong)?;
    let ct_len = u16::try_from(ciphertext.len()).map_err(|_| CekError::TooLong)?;
    let mut out =
        Vec::with_capacity(HEADER_LEN + path.len() + ciphertext.len() + cmk_public.size());
    out.push(CEK_VALUE_VERSION);
    out.extend_from_slice(&path_len.to_le_bytes());
    out.extend_from_slice(&ct_len.to_le_bytes());
    out.extend_from_slice(&path);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// The digest a CMK metadata signature signs:
/// `SHA-256(UTF-16LE(lowercase(provider_name ‖ key_path ‖ "true"|"false")))`.
pub fn cmk_metadata_digest(
    provider_name: &str,
    key_path: &str,
    allow_enclave_computations: bool,
) -> [u8; 32] {
    let text = format!("{provider_name}{key_path}{allow_enclave_computations}").to_lowercase();
    Sha256::digest(utf16le(&text)).into()
}

/// Signs column master key metadata (RSASSA-PKCS1-v1_5, SHA-256 over
/// [`cmk_metadata_digest`]), as `CREATE COLUMN MASTER KEY … ENCLAVE_COMPUTATIONS
/// (SIGNATURE = …)` expects.
pub fn sign_cmk_metadata(
    provider_name: &str,
    key_path: &str,
    allow_enclave_computations: bool,
    cmk: &PrivateKey,
) -> Result<Vec<u8>, CekError> {
    let digest = cmk_metadata_digest(provider_name, key_path, allow_enclave_computations);
    rsa_private::pkcs1v15_sha256_sign(cmk, &digest).map_err(|_| CekError::RsaFailed)
}

/// Verifies a column master key metadata signature.
pub fn verify_cmk_metadata(
    provider_name: &str,
    key_path: &str,
    allow_enclave_computations: bool,
    signature: &[u8],
    cmk: &PublicKey,
) -> Result<(), CekError> {
    let digest = cmk_metadata_digest(provider_name, key_path, allow_enclave_computations);
    cmk.pkcs1v15_verify::<Sha256>(&digest, signature)
        .map_err(|_| CekError::InvalidSignature)
}

/// The RSA public key of a PEM X.509 certificate (`-----BEGIN CERTIFICATE-----`).
pub fn public_key_from_certificate_pem(pem: &str) -> Result<PublicKey, CekError> {
    let cert =
        Certificate::from_pem(pem.trim()).map_err(|e| CekError::InvalidKey(e.to_string()))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| CekError::InvalidKey(e.to_string()))?;
    PublicKey::from_public_key_der(&spki).map_err(|e| CekError::InvalidKey(e.to_string()))
}

/// An RSA public key from PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo) or from an
/// X.509 certificate PEM.
pub fn public_key_from_pem(pem: &str) -> Result<PublicKey, CekError> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN CERTIFICATE-----") {
        public_key_from_certificate_pem(pem)
    } else {
        PublicKey::from_public_key_pem(pem).map_err(|e| CekError::InvalidKey(e.to_string()))
    }
}

/// An RSA private key from PEM: PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKey, CekError> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        PrivateKey::from_pkcs1_pem(pem).map_err(|e| CekError::InvalidKey(e.to_string()))
    } else {
        PrivateKey::from_pkcs8_pem(pem).map_err(|e| CekError::InvalidKey(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_short_and_versionless_values() {
        assert_eq!(EncryptedCek::parse(&[]), Err(CekError::Truncated));
        assert_eq!(
            EncryptedCek::parse(&[2, 0, 0]),
            Err(CekError::UnsupportedVersion(2))
        );
        assert_eq!(EncryptedCek::parse(&[1, 0]), Err(CekError::Truncated));
        // Header announces 4 path bytes and 2 ciphertext bytes but the value ends there.
        assert_eq!(
            EncryptedCek::parse(&[1, 4, 0, 2, 0, b'a', 0, b'b', 0, 9, 9]),
            Err(CekError::Truncated)
        );
        assert_eq!(
            EncryptedCek::parse(&[1, 1, 0, 0, 0, b'a', 7]),
            Err(CekError::InvalidKeyPath)
        );
    }

    #[test]
    fn parse_round_trips() {
        let v = [1, 4, 0, 1, 0, b'a', 0, b'b', 0, 9, 7, 7];
        let cek = EncryptedCek::parse(&v).unwrap();
        assert_eq!(cek.key_path, "ab");
        assert_eq!(cek.ciphertext, [9]);
        assert_eq!(cek.signature, [7, 7]);
        assert_eq!(cek.to_bytes(), v);
    }

    #[test]
    fn metadata_digest_is_lowercased_utf16() {
        let a = cmk_metadata_digest("MSSQL_CERTIFICATE_STORE", "CurrentUser/My/ABC", true);
        let b = Sha256::digest(utf16le("mssql_certificate_storecurrentuser/my/abctrue"));
        assert_eq!(a, <[u8; 32]>::from(b));
        assert_ne!(
            a,
            cmk_metadata_digest("MSSQL_CERTIFICATE_STORE", "CurrentUser/My/ABC", false)
        );
    }
}
