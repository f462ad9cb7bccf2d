//! The KMS selection string of the CLI: `local:FILE` or `cas:URL`.

use std::path::PathBuf;
use std::sync::Arc;

use cipherlake_crypto::key_material::{KmsClient, LocalKms};

use super::EncryptionError;

/// A parsed KMS selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsSpec {
    /// A master key list file in the text form of parquet-java's `parquet.encryption.key.list`
    /// (`ID:BASE64` entries separated by commas or newlines).
    Local(PathBuf),
    /// The CAS KMS at this URL.
    Cas(String),
}

impl std::str::FromStr for KmsSpec {
    type Err = EncryptionError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| EncryptionError::KmsSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        match spec.split_once(':') {
            Some(("local", path)) if !path.is_empty() => Ok(Self::Local(PathBuf::from(path))),
            Some(("local", _)) => Err(bad("expected local:FILE with a master key list file")),
            Some(("cas", url)) if !url.is_empty() => Ok(Self::Cas(url.to_owned())),
            Some(("cas", _)) => Err(bad("expected cas:URL")),
            _ => Err(bad("expected local:FILE or cas:URL")),
        }
    }
}

impl KmsSpec {
    /// Opens a local KMS: reads and parses the master key list. The CAS KMS needs an attested
    /// identity first (see [`super::CasKms`]), so `cas:` is refused here with that reason.
    pub fn open(&self) -> Result<Arc<dyn KmsClient>, EncryptionError> {
        match self {
            Self::Local(path) => {
                let key_list_error = |reason: String| EncryptionError::KeyList {
                    path: path.display().to_string(),
                    reason,
                };
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| key_list_error(e.to_string()))?,
                );
                let kms =
                    LocalKms::from_key_list(&text).map_err(|e| key_list_error(e.to_string()))?;
                Ok(Arc::new(kms))
            }
            Self::Cas(url) => Err(EncryptionError::CasNeedsIdentity {
                spec: format!("cas:{url}"),
            }),
        }
    }
}

/// Parses and opens a `--kms` selection string.
pub fn open_kms(spec: &str) -> Result<Arc<dyn KmsClient>, EncryptionError> {
    spec.parse::<KmsSpec>()?.open()
}
