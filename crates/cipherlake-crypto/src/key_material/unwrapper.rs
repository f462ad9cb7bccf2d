//! Reader side: recover data keys from PKMT1 key metadata (parquet-java's `FileKeyUnwrapper`,
//! Arrow C++'s `file_key_unwrapper.cc`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use zeroize::Zeroizing;

use super::local::{BASE64, LocalWrapError, decrypt_key_locally};
use super::{KeyMaterial, KeyMaterialError, KmsClient, Wrapping};

/// Entries a cache may hold before it is emptied, bounding memory on very large jobs.
const MAX_CACHE_ENTRIES: usize = 65_536;

/// Identity of a cached KEK: parquet-java keys its cache by KEK id alone; we also key by
/// master key id and wrapped KEK so that a crafted file cannot borrow a KEK unwrapped for
/// another master key.
#[derive(Hash, PartialEq, Eq)]
struct KekCacheKey {
    master_key_id: String,
    kek_id: String,
    wrapped_kek: String,
}

/// Recovers DEKs from Parquet key metadata through a [`KmsClient`], caching unwrapped KEKs and
/// DEKs in memory for the lifetime of the unwrapper (one job). Cached keys are zeroized when
/// evicted or dropped. Thread-safe: share one per job behind an `Arc`.
pub struct FileKeyUnwrapper {
    kms: Arc<dyn KmsClient>,
    keks: Mutex<HashMap<KekCacheKey, Zeroizing<Vec<u8>>>>,
    deks: Mutex<HashMap<Vec<u8>, Zeroizing<Vec<u8>>>>,
}

impl fmt::Debug for FileKeyUnwrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyUnwrapper")
            .field("cached_keks", &lock(&self.keks).len())
            .field("cached_deks", &lock(&self.deks).len())
            .finish_non_exhaustive()
    }
}

/// Locks a cache; a poisoned lock only means another thread panicked while holding it, and the
/// map is still consistent, so it is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Inserts into a bounded cache, emptying it first when full.
fn insert_bounded<K: std::hash::Hash + Eq>(
    cache: &Mutex<HashMap<K, Zeroizing<Vec<u8>>>>,
    key: K,
    value: Zeroizing<Vec<u8>>,
) {
    let mut cache = lock(cache);
    if cache.len() >= MAX_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, value);
}

impl FileKeyUnwrapper {
    /// An unwrapper with empty caches, unwrapping through `kms`.
    pub fn new(kms: Arc<dyn KmsClient>) -> Self {
        Self {
            kms,
            keks: Mutex::new(HashMap::new()),
            deks: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the DEK described by Parquet key metadata bytes (PKMT1, internal storage).
    ///
    /// The DEK must be 128 or 256 bits. Errors name the JSON field, master key id or KEK id
    /// at fault; see [`KeyMaterialError`].
    pub fn unwrap(&self, key_metadata: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyMaterialError> {
        if let Some(dek) = lock(&self.deks).get(key_metadata) {
            return Ok(dek.clone());
        }
        let material = KeyMaterial::parse(key_metadata)?;
        let dek = self.unwrap_material(&material)?;
        insert_bounded(&self.deks, key_metadata.to_vec(), dek.clone());
        Ok(dek)
    }

    /// Returns the DEK of parsed key material (not cached by itself; its KEK is).
    pub fn unwrap_material(
        &self,
        material: &KeyMaterial,
    ) -> Result<Zeroizing<Vec<u8>>, KeyMaterialError> {
        let master_key_id = &material.master_key_id;
        let dek = match &material.wrapping {
            Wrapping::Single => self
                .kms
                .unwrap_key(&material.wrapped_dek, master_key_id)
                .map_err(KeyMaterialError::UnwrapDek)?,
            Wrapping::Double {
                kek_id,
                wrapped_kek,
            } => {
                let kek = self.kek(master_key_id, kek_id, wrapped_kek)?;
                let aad = BASE64
                    .decode(kek_id)
                    .map_err(|_| KeyMaterialError::InvalidBase64 {
                        field: "keyEncryptionKeyID",
                    })?;
                decrypt_key_locally(&material.wrapped_dek, &kek, &aad).map_err(
                    |cause| match cause {
                        LocalWrapError::Authentication => KeyMaterialError::DekAuthentication {
                            master_key_id: master_key_id.clone(),
                            kek_id: kek_id.clone(),
                        },
                        cause => KeyMaterialError::MalformedWrappedKey {
                            field: "wrappedDEK",
                            master_key_id: master_key_id.clone(),
                            cause,
                        },
                    },
                )?
            }
        };
        if !matches!(dek.len(), 16 | 32) {
            return Err(KeyMaterialError::UnsupportedDataKeyLength {
                master_key_id: master_key_id.clone(),
                bits: dek.len() * 8,
            });
        }
        Ok(dek)
    }

    /// Empties the caches (zeroizing the cached keys).
    pub fn clear(&self) {
        lock(&self.keks).clear();
        lock(&self.deks).clear();
    }

    fn kek(
        &self,
        master_key_id: &str,
        kek_id: &str,
        wrapped_kek: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyMaterialError> {
        let cache_key = KekCacheKey {
            master_key_id: master_key_id.to_owned(),
            kek_id: kek_id.to_owned(),
            wrapped_kek: wrapped_kek.to_owned(),
        };
        if let Some(kek) = lock(&self.keks).get(&cache_key) {
            return Ok(kek.clone());
        }
        // The KMS call runs without the lock held; a concurrent miss unwraps twice, harmlessly.
        let kek = self
            .kms
            .unwrap_key(wrapped_kek, master_key_id)
            .map_err(|cause| KeyMaterialError::UnwrapKek {
                kek_id: kek_id.to_owned(),
                cause,
            })?;
        if !matches!(kek.len(), 16 | 24 | 32) {
            return Err(KeyMaterialError::InvalidKekLength {
                master_key_id: master_key_id.to_owned(),
                len: kek.len(),
            });
        }
        insert_bounded(&self.keks, cache_key, kek.clone());
        Ok(kek)
    }
}
