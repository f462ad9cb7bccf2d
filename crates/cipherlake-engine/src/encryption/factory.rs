//! The DataFusion `EncryptionFactory` backed by a KMS.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use cipherlake_crypto::key_material::{FileKeyUnwrapper, KmsClient, WriterKeks};
use datafusion::common::config::EncryptionFactoryOptions;
use datafusion::error::Result;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use object_store::path::Path;
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;

use super::{EncryptionError, EncryptionSpec};

/// The id under which every cipherlake session registers its [`KmsEncryptionFactory`] and
/// which it sets as the default `format.crypto.factory_id`.
pub const FACTORY_ID: &str = "cipherlake";

/// Encrypts and decrypts Parquet files with data keys wrapped by a [`KmsClient`] (PKMT1 key
/// material, interoperable with parquet-java and pyarrow).
///
/// - Reading: every file gets decryption properties whose key retriever unwraps the key
///   metadata stored in the file through the KMS (data keys cached per session, in memory
///   only). Plaintext files are read as usual. Without a KMS, reading an encrypted file fails
///   with an error naming the file.
/// - Writing: with a `footer_key` factory option (see [`EncryptionSpec`]) each file gets fresh
///   data keys; without it files are written in plaintext. The files a session writes share
///   their KEKs for [`cipherlake_crypto::key_material::KEK_LIFETIME`] ([`WriterKeks`]), so a
///   write of many files makes one KMS call per master key.
pub struct KmsEncryptionFactory {
    kms: Option<Arc<dyn KmsClient>>,
    keks: WriterKeks,
    unwrapper: Option<Arc<FileKeyUnwrapper>>,
    plaintext: PlaintextFiles,
}

impl fmt::Debug for KmsEncryptionFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsEncryptionFactory")
            .field("kms_configured", &self.kms.is_some())
            .finish_non_exhaustive()
    }
}

impl KmsEncryptionFactory {
    /// A factory using `kms`, or one that only reads plaintext files when `None`.
    pub fn new(kms: Option<Arc<dyn KmsClient>>) -> Self {
        let unwrapper = kms
            .as_ref()
            .map(|kms| Arc::new(FileKeyUnwrapper::new(Arc::clone(kms))));
        Self {
            kms,
            keks: WriterKeks::default(),
            unwrapper,
            plaintext: PlaintextFiles::default(),
        }
    }
}

#[async_trait]
impl EncryptionFactory for KmsEncryptionFactory {
    async fn get_file_encryption_properties(
        &self,
        config: &EncryptionFactoryOptions,
        schema: &SchemaRef,
        file_path: &Path,
    ) -> Result<Option<Arc<FileEncryptionProperties>>> {
        let Some(spec) = EncryptionSpec::from_factory_options(&config.options)? else {
            return Ok(None);
        };
        let path = file_path.to_string();
        let Some(kms) = self.kms.clone() else {
            return Err(EncryptionError::NoKmsForWrite { path }.into());
        };
        let schema = Arc::clone(schema);
        let keks = self.keks.clone();
        // KMS clients may block (a remote KMS); keep them off the async workers.
        let properties = tokio::task::spawn_blocking(move || {
            spec.file_encryption_properties(kms, &keks, &schema, &path)
        })
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??;
        Ok(Some(properties))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &Path,
    ) -> Result<Option<Arc<FileDecryptionProperties>>> {
        // DataFusion caches the metadata of a file only when it is read without decryption
        // properties, so plaintext files are given none.
        if self.plaintext.contains(file_path) {
            return Ok(None);
        }
        Ok(Some(decryption_properties(
            self.unwrapper.clone(),
            file_path.as_ref(),
        )?))
    }
}

/// Remembers which local files are plaintext Parquet, keyed by path, size and modification
/// time. Files that are not local (another object store) count as possibly encrypted.
#[derive(Default)]
struct PlaintextFiles {
    known: Mutex<HashMap<String, (u64, SystemTime, bool)>>,
}

/// Entries kept before the map is emptied.
const MAX_KNOWN_FILES: usize = 65_536;

impl PlaintextFiles {
    /// Whether `file_path` is a local plaintext Parquet file (no encryption at all). Any
    /// doubt (not local, unreadable, unparsable) answers `false`, which is always safe.
    fn contains(&self, file_path: &Path) -> bool {
        let local = std::path::Path::new("/").join(file_path.as_ref());
        let Ok(meta) = std::fs::metadata(&local) else {
            return false;
        };
        let Ok(modified) = meta.modified() else {
            return false;
        };
        let key = file_path.as_ref().to_owned();
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((len, time, plaintext)) = known.get(&key)
            && *len == meta.len()
            && *time == modified
        {
            return *plaintext;
        }
        drop(known);
        let plaintext = is_plaintext_parquet(&local);
        known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_KNOWN_FILES {
            known.clear();
        }
        known.insert(key, (meta.len(), modified, plaintext));
        plaintext
    }
}

/// Whether the file ends in `PAR1` and its footer names no encrypted column.
fn is_plaintext_parquet(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    match ParquetMetaDataReader::new().parse_and_finish(&file) {
        Ok(metadata) => metadata
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .all(|column| column.crypto_metadata().is_none()),
        Err(_) => false,
    }
}

/// Decryption properties for the file at `path` (used in error messages) that resolve its
/// keys from its key metadata through `unwrapper`; with `None`, any key request fails with an
/// error saying the file is encrypted and no KMS is configured.
pub fn decryption_properties(
    unwrapper: Option<Arc<FileKeyUnwrapper>>,
    path: &str,
) -> Result<Arc<FileDecryptionProperties>, ParquetError> {
    let retriever = KmsKeyRetriever {
        unwrapper,
        path: path.to_owned(),
    };
    FileDecryptionProperties::with_key_retriever(Arc::new(retriever)).build()
}

/// Resolves the keys of one file through the KMS.
struct KmsKeyRetriever {
    unwrapper: Option<Arc<FileKeyUnwrapper>>,
    path: String,
}

impl KeyRetriever for KmsKeyRetriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let Some(unwrapper) = &self.unwrapper else {
            return Err(ParquetError::General(format!(
                "Parquet file {} is encrypted and no KMS is configured to obtain its keys (use --kms)",
                self.path
            )));
        };
        let key = unwrapper.unwrap(key_metadata).map_err(|e| {
            ParquetError::General(format!(
                "cannot obtain a key of encrypted Parquet file {}: {e}",
                self.path
            ))
        })?;
        Ok(key.to_vec())
    }
}
