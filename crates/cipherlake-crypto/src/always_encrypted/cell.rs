//! The AEAD_AES_256_CBC_HMAC_SHA256 cell cipher, byte-compatible with SQL Server.
//!
//! A cell is `version (0x01) ‖ MAC (32) ‖ IV (16) ‖ AES-256-CBC-PKCS7 ciphertext`, where
//! `MAC = HMAC-SHA256(mac_key, version ‖ IV ‖ ciphertext ‖ 0x01)` (the trailing byte is the
//! length of the version field). The three 32-byte keys are derived from the column encryption
//! key (CEK) by HMAC-SHA256 over UTF-16LE labels. Deterministic encryption takes the IV from
//! `HMAC-SHA256(iv_key, plaintext)[..16]`; randomized encryption draws it from the OS.

use std::fmt;
use std::str::FromStr;

use aes::Aes256;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Name of the only cell encryption algorithm SQL Server defines.
pub const ALGORITHM_NAME: &str = "AEAD_AES_256_CBC_HMAC_SHA256";
/// Version byte that starts every cell.
pub const CELL_VERSION: u8 = 0x01;
/// Length of a column encryption key in bytes.
pub const CEK_LEN: usize = 32;

const MAC_LEN: usize = 32;
const IV_LEN: usize = 16;
const BLOCK_LEN: usize = 16;
const HEADER_LEN: usize = 1 + MAC_LEN + IV_LEN;
/// Smallest well-formed cell: header plus one cipher block.
pub const MIN_CELL_LEN: usize = HEADER_LEN + BLOCK_LEN;

const ENC_LABEL: &str = "Microsoft SQL Server cell encryption key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
const MAC_LABEL: &str = "Microsoft SQL Server cell MAC key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
const IV_LABEL: &str = "Microsoft SQL Server cell IV key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";

type HmacSha256 = Hmac<Sha256>;
type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// How a column is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionType {
    /// Same plaintext, same cell: allows equality lookups, joins and grouping on ciphertext.
    Deterministic,
    /// A fresh random IV for every cell.
    Randomized,
}

impl EncryptionType {
    /// The value SQL Server stores for this type in `sys.columns.encryption_type`.
    pub fn sql_server_code(self) -> u8 {
        match self {
            EncryptionType::Deterministic => 1,
            EncryptionType::Randomized => 2,
        }
    }
}

impl fmt::Display for EncryptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncryptionType::Deterministic => "deterministic",
            EncryptionType::Randomized => "randomized",
        })
    }
}

/// An unknown encryption type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encryption type {0:?} (expected deterministic or randomized)")]
pub struct UnknownEncryptionType(pub String);

impl FromStr for EncryptionType {
    type Err = UnknownEncryptionType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "deterministic" => Ok(EncryptionType::Deterministic),
            "randomized" => Ok(EncryptionType::Randomized),
            _ => Err(UnknownEncryptionType(s.to_owned())),
        }
    }
}

/// Why a cell could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// The column encryption key is not 32 bytes long.
    #[error("column encryption key must be {CEK_LEN} bytes, got {0}")]
    InvalidKeyLength(usize),
    /// The cell is shorter than the smallest possible cell.
    #[error("cell too short: {len} bytes, at least {MIN_CELL_LEN} required")]
    Truncated {
        /// Length of the rejected cell.
        len: usize,
    },
    /// The ciphertext part is not a whole number of AES blocks.
    #[error("cell ciphertext length {0} is not a multiple of the AES block size")]
    InvalidCiphertextLength(usize),
    /// The first byte is not the algorithm version 0x01.
    #[error("unsupported cell version 0x{0:02x} (expected 0x01)")]
    UnsupportedVersion(u8),
    /// The authentication tag does not match: the cell was altered or the key is wrong.
    #[error("cell authentication failed: the cell was modified or the key is wrong")]
    AuthenticationFailed,
    /// The MAC was valid but the PKCS#7 padding was not: the cell was produced with a broken
    /// implementation holding the right key.
    #[error("cell padding invalid after successful authentication")]
    InvalidPadding,
    /// The operating system random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

/// The three keys SQL Server derives from a column encryption key. Zeroized on drop.
#[derive(Clone)]
pub struct CellKey {
    enc_key: [u8; 32],
    mac_key: [u8; 32],
    iv_key: [u8; 32],
}

impl Drop for CellKey {
    fn drop(&mut self) {
        self.enc_key.zeroize();
        self.mac_key.zeroize();
        self.iv_key.zeroize();
    }
}

impl fmt::Debug for CellKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CellKey(<redacted>)")
    }
}

fn derive(cek: &[u8], label: &str) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(cek).expect("HMAC accepts any key length");
    for unit in label.encode_utf16() {
        mac.update(&unit.to_le_bytes());
    }
    mac.finalize().into_bytes().into()
}

fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl CellKey {
    /// Derives the encryption, MAC and IV keys from a 32-byte column encryption key.
    pub fn new(cek: &[u8]) -> Result<Self, CellError> {
        if cek.len() != CEK_LEN {
            return Err(CellError::InvalidKeyLength(cek.len()));
        }
        Ok(CellKey {
            enc_key: derive(cek, ENC_LABEL),
            mac_key: derive(cek, MAC_LABEL),
            iv_key: derive(cek, IV_LABEL),
        })
    }

    fn tag(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.mac_key, &[&[CELL_VERSION], iv, ciphertext, &[1u8]])
    }

    /// Encrypts already-normalised plaintext bytes into a cell.
    pub fn encrypt(&self, plaintext: &[u8], mode: EncryptionType) -> Result<Vec<u8>, CellError> {
        let mut iv = [0u8; IV_LEN];
        match mode {
            EncryptionType::Deterministic => {
                let mut full = hmac_sha256(&self.iv_key, &[plaintext]);
                iv.copy_from_slice(&full[..IV_LEN]);
                full.zeroize();
            }
            EncryptionType::Randomized => getrandom::fill(&mut iv).map_err(|_| CellError::Rng)?,
        }
        Ok(self.encrypt_with_iv(plaintext, &iv))
    }

    fn encrypt_with_iv(&self, plaintext: &[u8], iv: &[u8; IV_LEN]) -> Vec<u8> {
        let padded_len = (plaintext.len() / BLOCK_LEN + 1) * BLOCK_LEN;
        let mut cell = vec![0u8; HEADER_LEN + padded_len];
        cell[0] = CELL_VERSION;
        cell[1 + MAC_LEN..HEADER_LEN].copy_from_slice(iv);
        let body = &mut cell[HEADER_LEN..];
        body[..plaintext.len()].copy_from_slice(plaintext);
        Aes256CbcEnc::new(&self.enc_key.into(), iv.into())
            .encrypt_padded_mut::<Pkcs7>(body, plaintext.len())
            .expect("buffer sized for PKCS#7 padding");
        let tag = self.tag(iv, &cell[HEADER_LEN..]);
        cell[1..1 + MAC_LEN].copy_from_slice(&tag);
        cell
    }

    /// Authenticates and decrypts a cell, returning the normalised plaintext bytes.
    ///
    /// Checks, in order and before any decryption: the length, the version byte and (in
    /// constant time) the MAC.
    pub fn decrypt(&self, cell: &[u8]) -> Result<Vec<u8>, CellError> {
        if cell.len() < MIN_CELL_LEN {
            return Err(CellError::Truncated { len: cell.len() });
        }
        let body = &cell[HEADER_LEN..];
        if !body.len().is_multiple_of(BLOCK_LEN) {
            return Err(CellError::InvalidCiphertextLength(body.len()));
        }
        if cell[0] != CELL_VERSION {
            return Err(CellError::UnsupportedVersion(cell[0]));
        }
        let iv = &cell[1 + MAC_LEN..HEADER_LEN];
        let expected = self.tag(iv, body);
        if !bool::from(expected.ct_eq(&cell[1..1 + MAC_LEN])) {
            return Err(CellError::AuthenticationFailed);
        }
        let mut out = body.to_vec();
        let iv: [u8; IV_LEN] = iv.try_into().expect("slice of IV_LEN");
        let len = Aes256CbcDec::new(&self.enc_key.into(), &iv.into())
            .decrypt_padded_mut::<Pkcs7>(&mut out)
            .map_err(|_| CellError::InvalidPadding)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEK: [u8; 32] = [7u8; 32];

    #[test]
    fn labels_are_the_documented_strings() {
        assert!(ENC_LABEL.contains("cell encryption key with encryption algorithm:"));
        assert!(MAC_LABEL.starts_with("Microsoft SQL Server cell MAC key"));
        assert!(IV_LABEL.starts_with("Microsoft SQL Server cell IV key"));
        for label in [ENC_LABEL, MAC_LABEL, IV_LABEL] {
            assert!(label.ends_with(":AEAD_AES_256_CBC_HMAC_SHA256 and key length:256"));
        }
    }

    #[test]
    fn layout_and_round_trip() {
        let key = CellKey::new(&CEK).unwrap();
        for len in [0usize, 1, 15, 16, 17, 100] {
            let pt = vec![0xabu8; len];
            let cell = key.encrypt(&pt, EncryptionType::Randomized).unwrap();
            assert_eq!(cell[0], 1);
            assert_eq!(cell.len(), HEADER_LEN + (len / 16 + 1) * 16);
            assert_eq!(key.decrypt(&cell).unwrap(), pt);
        }
    }

    #[test]
    fn deterministic_iv_is_hmac_prefix() {
        let key = CellKey::new(&CEK).unwrap();
        let cell = key.encrypt(b"abc", EncryptionType::Deterministic).unwrap();
        let iv = hmac_sha256(&key.iv_key, &[b"abc"]);
        assert_eq!(&cell[33..49], &iv[..16]);
    }

    #[test]
    fn rejects_bad_key_length() {
        assert_eq!(
            CellKey::new(&[0u8; 16]).unwrap_err(),
            CellError::InvalidKeyLength(16)
        );
    }

    #[test]
    fn parses_encryption_type() {
        assert_eq!(
            "Deterministic".parse::<EncryptionType>().unwrap(),
            EncryptionType::Deterministic
        );
        assert_eq!(
            "randomized".parse::<EncryptionType>().unwrap(),
            EncryptionType::Randomized
        );
        assert!("random".parse::<EncryptionType>().is_err());
        assert_eq!(EncryptionType::Randomized.sql_server_code(), 2);
    }
}
