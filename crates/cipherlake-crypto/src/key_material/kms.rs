//! The KMS client interface and the local (in-memory master key list) implementation.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::local::{BASE64, LocalWrapError, decrypt_key_locally, encrypt_key_locally};

/// A key management service that wraps and unwraps keys under master keys it holds, like
/// parquet-java's `org.apache.parquet.crypto.keytools.KmsClient` and pyarrow's
/// `pyarrow.parquet.encryption.KmsClient`.
///
/// The wrapped form is an opaque string that the key material stores verbatim (in
/// `wrappedDEK` for single wrapping, `wrappedKEK` for double wrapping). Implementations are
/// synchronous: an implementation talking to a remote KMS blocks, and async callers run it on a
/// blocking thread.
pub trait KmsClient: Send + Sync {
    /// Wraps (encrypts) `key` under the master key `master_key_id`.
    fn wrap_key(&self, key: &[u8], master_key_id: &str) -> Result<String, KmsError>;

    /// Unwraps a key wrapped by [`KmsClient::wrap_key`] under the master key `master_key_id`.
    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

/// Errors of a [`KmsClient`]. Each names the master key id, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The KMS holds no master key with this id.
    #[error("master key {master_key_id:?} is not known to the KMS")]
    UnknownMasterKey {
        /// The master key id asked for.
        master_key_id: String,
    },
    /// The wrapped key does not authenticate under the master key: wrong master key or
    /// tampered wrapped key.
    #[error(
        "wrapped key does not authenticate under master key {master_key_id:?} (wrong master key or tampered wrapped key)"
    )]
    UnwrapFailed {
        /// The master key id used.
        master_key_id: String,
    },
    /// The wrapped key is not in the KMS's format.
    #[error("wrapped key for master key {master_key_id:?} is malformed: {cause}")]
    MalformedWrappedKey {
        /// The master key id used.
        master_key_id: String,
        /// What is wrong.
        cause: LocalWrapError,
    },
    /// Wrapping failed.
    #[error("wrapping a key under master key {master_key_id:?} failed: {cause}")]
    WrapFailed {
        /// The master key id used.
        master_key_id: String,
        /// What failed.
        cause: LocalWrapError,
    },
    /// The caller may not use this master key.
    #[error("access to master key {master_key_id:?} denied: {reason}")]
    AccessDenied {
        /// The master key id asked for.
        master_key_id: String,
        /// Why, as the KMS put it.
        reason: String,
    },
    /// The KMS could not be reached or failed otherwise.
    #[error("KMS request for master key {master_key_id:?} failed: {reason}")]
    Unavailable {
        /// The master key id asked for.
        master_key_id: String,
        /// What failed.
        reason: String,
    },
}

/// Errors parsing a master key list. Never carry key text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    /// The list has no entries.
    #[error("the master key list is empty")]
    Empty,
    /// An entry is not of the form `ID:BASE64` (entries are counted from 1).
    #[error("master key list entry {entry} is not of the form ID:BASE64")]
    Malformed {
        /// 1-based index of the entry.
        entry: usize,
    },
    /// A key is not valid base64.
    #[error("master key {id:?} is not valid base64")]
    InvalidBase64 {
        /// Master key id.
        id: String,
    },
    /// A key is not 128, 192 or 256 bits long.
    #[error("master key {id:?} has {len} bytes, not 16, 24 or 32")]
    InvalidKeyLength {
        /// Master key id.
        id: String,
        /// Length in bytes.
        len: usize,
    },
    /// A key consists of zero bytes only (parquet-java rejects such keys too).
    #[error("master key {id:?} is all zero bytes")]
    AllZeroKey {
        /// Master key id.
        id: String,
    },
    /// The same id appears twice.
    #[error("master key {id:?} appears more than once")]
    Duplicate {
        /// Master key id.
        id: String,
    },
}

/// A KMS whose master keys are held in memory: the `local` KMS for tests and offline
/// custodians.
///
/// Wraps keys as parquet-java's test `InMemoryKMS` and Arrow C++'s `TestOnlyInServerWrapKms` do:
/// base64(nonce(12) ‖ AES-GCM(master key, key, AAD = UTF-8 master key id) ‖ tag(16)). Master
/// keys are zeroized on drop and never printed.
pub struct LocalKms {
    master_keys: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl LocalKms {
    /// Parses a master key list in the text form of parquet-java's
    /// `parquet.encryption.key.list`: `ID:BASE64` entries separated by commas and/or newlines,
    /// whitespace around entries, ids and keys trimmed, empty entries ignored. Keys must be
    /// 16, 24 or 32 bytes, not all zero; ids must be unique.
    pub fn from_key_list(text: &str) -> Result<Self, KeyListError> {
        let mut master_keys = BTreeMap::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let malformed = KeyListError::Malformed { entry: index + 1 };
            let mut parts = entry.split(':');
            let (Some(id), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(malformed);
            };
            let id = id.trim();
            if id.is_empty() {
                return Err(malformed);
            }
            let key = Zeroizing::new(
                BASE64
                    .decode(key.trim())
                    .map_err(|_| KeyListError::InvalidBase64 { id: id.to_owned() })?,
            );
            insert_master_key(&mut master_keys, id, key)?;
        }
        if master_keys.is_empty() {
            return Err(KeyListError::Empty);
        }
        Ok(Self { master_keys })
    }

    /// Builds a KMS from raw master keys (same checks as [`LocalKms::from_key_list`]).
    pub fn from_keys<I, S>(keys: I) -> Result<Self, KeyListError>
    where
        I: IntoIterator<Item = (S, Zeroizing<Vec<u8>>)>,
        S: AsRef<str>,
    {
        let mut master_keys = BTreeMap::new();
        for (id, key) in keys {
            insert_master_key(&mut master_keys, id.as_ref(), key)?;
        }
        if master_keys.is_empty() {
            return Err(KeyListError::Empty);
        }
        Ok(Self { master_keys })
    }

    /// The ids of the master keys held, in sorted order.
    pub fn master_key_ids(&self) -> impl Iterator<Item = &str> {
        self.master_keys.keys().map(String::as_str)
    }

    fn master_key(&self, master_key_id: &str) -> Result<&[u8], KmsError> {
        self.master_keys
            .get(master_key_id)
            .map(|key| key.as_slice())
            .ok_or_else(|| KmsError::UnknownMasterKey {
                master_key_id: master_key_id.to_owned(),
            })
    }
}

fn insert_master_key(
    master_keys: &mut BTreeMap<String, Zeroizing<Vec<u8>>>,
    id: &str,
    key: Zeroizing<Vec<u8>>,
) -> Result<(), KeyListError> {
    if id.is_empty() {
        return Err(KeyListError::Malformed {
            entry: master_keys.len() + 1,
        });
    }
    if !matches!(key.len(), 16 | 24 | 32) {
        return Err(KeyListError::InvalidKeyLength {
            id: id.to_owned(),
            len: key.len(),
        });
    }
    if key.iter().all(|&b| b == 0) {
        return Err(KeyListError::AllZeroKey { id: id.to_owned() });
    }
    if master_keys.contains_key(id) {
        return Err(KeyListError::Duplicate { id: id.to_owned() });
    }
    master_keys.insert(id.to_owned(), key);
    Ok(())
}

impl fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKms")
            .field(
                "master_key_ids",
                &self.master_keys.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KmsClient for LocalKms {
    fn wrap_key(&self, key: &[u8], master_key_id: &str) -> Result<String, KmsError> {
        let master_key = self.master_key(master_key_id)?;
        encrypt_key_locally(key, master_key, master_key_id.as_bytes()).map_err(|cause| {
            KmsError::WrapFailed {
                master_key_id: master_key_id.to_owned(),
                cause,
            }
        })
    }

    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let master_key = self.master_key(master_key_id)?;
        decrypt_key_locally(wrapped_key, master_key, master_key_id.as_bytes()).map_err(|cause| {
            let master_key_id = master_key_id.to_owned();
            match cause {
                LocalWrapError::Authentication => KmsError::UnwrapFailed { master_key_id },
                cause => KmsError::MalformedWrappedKey {
                    master_key_id,
                    cause,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODw=="; // 16 bytes 00..0f
    const K2: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes

    #[test]
    fn parses_commas_newlines_and_whitespace() {
        let kms =
            LocalKms::from_key_list(&format!(" kf : {K1} ,\n kc1:{K2}\n\n,kc2:{K1}\n")).unwrap();
        assert_eq!(
            kms.master_key_ids().collect::<Vec<_>>(),
            ["kc1", "kc2", "kf"]
        );
        let dbg = format!("{kms:?}");
        assert!(dbg.contains("kc1") && !dbg.contains("AAEC") && !dbg.contains("[0, 1"));
    }

    #[test]
    fn key_list_errors() {
        assert_eq!(
            LocalKms::from_key_list(" \n,").unwrap_err(),
            KeyListError::Empty
        );
        assert_eq!(
            LocalKms::from_key_list(&format!("a:{K1},{K2}")).unwrap_err(),
            KeyListError::Malformed { entry: 2 }
        );
        assert_eq!(
            LocalKms::from_key_list(&format!("a:{K1}:x")).unwrap_err(),
            KeyListError::Malformed { entry: 1 }
        );
        assert_eq!(
            LocalKms::from_key_list("a:!!!!").unwrap_err(),
            KeyListError::InvalidBase64 { id: "a".into() }
        );
        assert_eq!(
            LocalKms::from_key_list("a:AAECAw==").unwrap_err(),
            KeyListError::InvalidKeyLength {
                id: "a".into(),
                len: 4
            }
        );
        assert_eq!(
            LocalKms::from_key_list("a:AAAAAAAAAAAAAAAAAAAAAA==").unwrap_err(),
            KeyListError::AllZeroKey { id: "a".into() }
        );
        assert_eq!(
            LocalKms::from_key_list(&format!("a:{K1}\na:{K2}")).unwrap_err(),
            KeyListError::Duplicate { id: "a".into() }
        );
    }

    #[test]
    fn wrap_unwrap_and_errors_name_the_master_key() {
        let kms = LocalKms::from_key_list(&format!("a:{K1},b:{K2}")).unwrap();
        let wrapped = kms.wrap_key(&[5u8; 16], "a").unwrap();
        assert_eq!(
            kms.unwrap_key(&wrapped, "a").unwrap().as_slice(),
            &[5u8; 16]
        );
        assert_eq!(
            kms.unwrap_key(&wrapped, "b").unwrap_err(),
            KmsError::UnwrapFailed {
                master_key_id: "b".into()
            }
        );
        assert_eq!(
            kms.wrap_key(&[5u8; 16], "zz").unwrap_err(),
            KmsError::UnknownMasterKey {
                master_key_id: "zz".into()
            }
        );
        assert!(matches!(
            kms.unwrap_key("%%%", "a").unwrap_err(),
            KmsError::MalformedWrappedKey { master_key_id, cause: LocalWrapError::InvalidBase64 }
                if master_key_id == "a"
        ));
    }
}
