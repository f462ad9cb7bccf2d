//! Writer side: generate data keys and their PKMT1 key metadata (parquet-java's
//! `FileKeyWrapper`, Arrow C++'s `file_key_wrapper.cc`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use zeroize::Zeroizing;

use super::local::{BASE64, encrypt_key_locally};
use super::{
    KEK_ID_LENGTH, KEK_LENGTH, KMS_INSTANCE_DEFAULT, KeyMaterial, KeyMaterialError, KmsClient,
    Wrapping, random_bytes,
};

/// Length of generated data encryption keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataKeyLength {
    /// 128-bit keys (AES-128-GCM), the default of parquet-java and Arrow C++.
    #[default]
    Aes128,
    /// 256-bit keys (AES-256-GCM).
    Aes256,
}

impl DataKeyLength {
    /// Length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }
}

/// Options of a [`FileKeyWrapper`] (parquet-java's `parquet.encryption.double.wrapping`,
/// `parquet.encryption.data.key.length.bits`, `parquet.encryption.kms.instance.id/url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrappingOptions {
    /// Wrap DEKs with a per-master-key KEK that the KMS wraps (true, the default), or have the
    /// KMS wrap each DEK directly.
    pub double_wrapping: bool,
    /// Length of generated DEKs.
    pub data_key_length: DataKeyLength,
    /// `kmsInstanceID` written in footer key material.
    pub kms_instance_id: String,
    /// `kmsInstanceURL` written in footer key material.
    pub kms_instance_url: String,
}

impl Default for KeyWrappingOptions {
    fn default() -> Self {
        Self {
            double_wrapping: true,
            data_key_length: DataKeyLength::Aes128,
            kms_instance_id: KMS_INSTANCE_DEFAULT.to_owned(),
            kms_instance_url: KMS_INSTANCE_DEFAULT.to_owned(),
        }
    }
}

/// A freshly generated data encryption key and the key metadata to store with it in the
/// Parquet file. `Debug` does not print the key.
pub struct DataKey {
    /// The DEK, to hand to the Parquet encryptor; zeroized on drop.
    pub key: Zeroizing<Vec<u8>>,
    /// The key metadata bytes (PKMT1 JSON) to store in the file.
    pub key_metadata: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key", &format_args!("<{} bytes redacted>", self.key.len()))
            .field("key_metadata", &String::from_utf8_lossy(&self.key_metadata))
            .finish()
    }
}

/// A KEK made for one master key, shared by the files of one write ([`WriterKeks`]).
struct WriterKek {
    key: Zeroizing<[u8; KEK_LENGTH]>,
    id: [u8; KEK_ID_LENGTH],
    encoded_id: String,
    wrapped: String,
    made: Instant,
}

/// How long a KEK is reused by default: parquet-java's
/// `parquet.encryption.cache.lifetime.seconds` (600 s).
pub const KEK_LIFETIME: Duration = Duration::from_secs(600);

/// The KEKs of one write, shared by the [`FileKeyWrapper`]s of its files (parquet-java's KEK
/// write cache): the first file that needs a KEK under a master key makes one and has the KMS
/// wrap it; later files reuse it until it is older than the lifetime. A write of a thousand
/// files thus makes one KMS call per master key, and a reader unwraps one KEK per master key
/// ([`super::FileKeyUnwrapper`] caches them). KEKs are zeroized when the last wrapper and
/// the cache drop them.
///
/// Use one cache per KMS client: a KEK is wrapped by the KMS of the wrapper that made it.
#[derive(Clone)]
pub struct WriterKeks {
    keks: Arc<Mutex<HashMap<KekScope, Arc<WriterKek>>>>,
    lifetime: Duration,
}

/// What a KEK is made for: one master key of one KMS instance.
#[derive(Clone, PartialEq, Eq, Hash)]
struct KekScope {
    kms_instance_id: String,
    kms_instance_url: String,
    master_key_id: String,
}

impl Default for WriterKeks {
    fn default() -> Self {
        Self::new(KEK_LIFETIME)
    }
}

impl fmt::Debug for WriterKeks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keks = self.keks.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("WriterKeks")
            .field(
                "master_key_ids",
                &keks
                    .keys()
                    .map(|scope| &scope.master_key_id)
                    .collect::<Vec<_>>(),
            )
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl WriterKeks {
    /// An empty cache whose KEKs are reused for `lifetime` after they are made.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            keks: Arc::default(),
            lifetime,
        }
    }

    /// The KEK for `scope`, made and wrapped through `kms` if there is none or it expired.
    /// The lock is held across the KMS call, so concurrent writers wait for one KEK rather
    /// than making one each.
    fn get_or_make(
        &self,
        scope: KekScope,
        kms: &dyn KmsClient,
    ) -> Result<Arc<WriterKek>, KeyMaterialError> {
        let mut keks = self.keks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kek) = keks.get(&scope)
            && kek.made.elapsed() < self.lifetime
        {
            return Ok(Arc::clone(kek));
        }
        let mut key = Zeroizing::new([0u8; KEK_LENGTH]);
        random_bytes(key.as_mut_slice())?;
        let mut id = [0u8; KEK_ID_LENGTH];
        random_bytes(&mut id)?;
        let wrapped = kms
            .wrap_key(key.as_slice(), &scope.master_key_id)
            .map_err(KeyMaterialError::Wrap)?;
        let kek = Arc::new(WriterKek {
            key,
            id,
            encoded_id: BASE64.encode(id),
            wrapped,
            made: Instant::now(),
        });
        keks.insert(scope, Arc::clone(&kek));
        Ok(kek)
    }
}

/// Generates DEKs and their PKMT1 key metadata for one Parquet file writer.
///
/// With double wrapping, the first key asked for under a master key creates a random 16-byte
/// KEK and a random 16-byte KEK id and has the KMS wrap the KEK; later keys under the same master
/// key reuse it: in this file, and in the other files of the write when they share
/// [`WriterKeks`]. Each DEK is then encrypted with AES-GCM under the KEK with the raw KEK id
/// as AAD, exactly as parquet-java and Arrow C++ do.
pub struct FileKeyWrapper {
    kms: Arc<dyn KmsClient>,
    options: KeyWrappingOptions,
    keks: WriterKeks,
}

impl fmt::Debug for FileKeyWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyWrapper")
            .field("options", &self.options)
            .field("keks", &self.keks)
            .finish_non_exhaustive()
    }
}

impl FileKeyWrapper {
    /// A wrapper using `kms` with the given options, whose KEKs serve this file only.
    pub fn new(kms: Arc<dyn KmsClient>, options: KeyWrappingOptions) -> Self {
        Self::with_keks(kms, options, WriterKeks::default())
    }

    /// A wrapper using `kms` with the given options and the KEKs of a write of several files.
    pub fn with_keks(
        kms: Arc<dyn KmsClient>,
        options: KeyWrappingOptions,
        keks: WriterKeks,
    ) -> Self {
        Self { kms, options, keks }
    }

    /// The options this wrapper was made with.
    pub fn options(&self) -> &KeyWrappingOptions {
        &self.options
    }

    /// Generates the footer DEK under `master_key_id` and its key metadata (with the KMS
    /// instance id and URL).
    pub fn generate_footer_key(
        &mut self,
        master_key_id: &str,
    ) -> Result<DataKey, KeyMaterialError> {
        self.generate(master_key_id, true)
    }

    /// Generates a column DEK under `master_key_id` and its key metadata. Every call makes a
    /// new DEK, as parquet-java does for each column.
    pub fn generate_column_key(
        &mut self,
        master_key_id: &str,
    ) -> Result<DataKey, KeyMaterialError> {
        self.generate(master_key_id, false)
    }

    /// Wraps an existing DEK under `master_key_id` and returns its key metadata (used to
    /// re-key a file with the same data keys, and for footer/column keys chosen by the caller).
    pub fn wrap_data_key(
        &mut self,
        data_key: &[u8],
        master_key_id: &str,
        is_footer_key: bool,
    ) -> Result<Vec<u8>, KeyMaterialError> {
        let (wrapped_dek, wrapping) =
            if self.options.double_wrapping {
                let kek = self.kek_for(master_key_id)?;
                let wrapped_dek = encrypt_key_locally(data_key, kek.key.as_slice(), &kek.id)
                    .map_err(|cause| KeyMaterialError::EncryptDek {
                        master_key_id: master_key_id.to_owned(),
                        cause,
                    })?;
                let wrapping = Wrapping::Double {
                    kek_id: kek.encoded_id.clone(),
                    wrapped_kek: kek.wrapped.clone(),
                };
                (wrapped_dek, wrapping)
            } else {
                let wrapped_dek = self
                    .kms
                    .wrap_key(data_key, master_key_id)
                    .map_err(KeyMaterialError::Wrap)?;
                (wrapped_dek, Wrapping::Single)
            };
        let (kms_instance_id, kms_instance_url) = if is_footer_key {
            (
                Some(self.options.kms_instance_id.clone()),
                Some(self.options.kms_instance_url.clone()),
            )
        } else {
            (None, None)
        };
        let material = KeyMaterial {
            is_footer_key,
            kms_instance_id,
            kms_instance_url,
            master_key_id: master_key_id.to_owned(),
            wrapped_dek,
            wrapping,
        };
        Ok(material.to_key_metadata())
    }

    fn generate(
        &mut self,
        master_key_id: &str,
        is_footer_key: bool,
    ) -> Result<DataKey, KeyMaterialError> {
        let mut key = Zeroizing::new(vec![0u8; self.options.data_key_length.bytes()]);
        random_bytes(&mut key)?;
        let key_metadata = self.wrap_data_key(&key, master_key_id, is_footer_key)?;
        Ok(DataKey { key, key_metadata })
    }

    fn kek_for(&mut self, master_key_id: &str) -> Result<Arc<WriterKek>, KeyMaterialError> {
        let scope = KekScope {
            kms_instance_id: self.options.kms_instance_id.clone(),
            kms_instance_url: self.options.kms_instance_url.clone(),
            master_key_id: master_key_id.to_owned(),
        };
        self.keks.get_or_make(scope, self.kms.as_ref())
    }
}
