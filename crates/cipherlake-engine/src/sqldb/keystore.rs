//! Column master key stores: where the RSA keys that wrap column encryption keys live.
//!
//! - `local`: the key path names an RSA private key PEM file (tests, development);
//! - `cas`: the key path is a CAS KMS key id; the private key never leaves the CAS, which
//!   decrypts (grant `unwrap`) and signs (grant `wrap`) only for the attested services and
//!   policy users it grants the key.
//!
//! Every store verifies a CEK value's signature before unwrapping it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cipherlake_cas::client::CasClient;
use cipherlake_crypto::always_encrypted::cek::cmk_metadata_digest;
use cipherlake_crypto::always_encrypted::{
    EncryptedCek, RsaPrivateKey, RsaPublicKey, Zeroizing, encrypt_cek, encrypt_cek_unsigned,
    private_key_from_pem, public_key_from_pem, sign_cmk_metadata, verify_cmk_metadata,
};

use super::error::SqlDbError;

/// Provider name of the local PEM file store.
pub const LOCAL_PROVIDER: &str = "local";
/// Provider name of the CAS KMS store.
pub const CAS_PROVIDER: &str = "cas";

/// A column master key store. `key_path` is the key's path as recorded in the catalog;
/// errors name it but never key material.
#[async_trait]
pub trait ColumnMasterKeyStore: Send + Sync {
    /// The provider name recorded in `cipherlake_column_master_keys.key_store_provider_name`.
    fn provider_name(&self) -> &'static str;

    /// Verifies an encrypted CEK value (key path and signature) and decrypts the CEK.
    async fn decrypt_cek(
        &self,
        key_path: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SqlDbError>;

    /// Wraps and signs a new CEK into an encrypted CEK value.
    async fn encrypt_cek(&self, key_path: &str, cek: &[u8]) -> Result<Vec<u8>, SqlDbError>;

    /// Signs the column master key metadata (provider name, key path).
    async fn sign_metadata(&self, key_path: &str) -> Result<Vec<u8>, SqlDbError>;

    /// Verifies a column master key metadata signature.
    async fn verify_metadata(&self, key_path: &str, signature: &[u8]) -> Result<(), SqlDbError>;
}

fn key_error(key_path: &str, reason: impl std::fmt::Display) -> SqlDbError {
    SqlDbError::Invalid(format!("column master key at {key_path}: {reason}"))
}

/// Column master keys in local RSA private key PEM files (PKCS#8 or PKCS#1).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalKeyStore;

impl LocalKeyStore {
    fn private_key(key_path: &str) -> Result<RsaPrivateKey, SqlDbError> {
        let pem =
            Zeroizing::new(std::fs::read_to_string(key_path).map_err(|e| key_error(key_path, e))?);
        private_key_from_pem(&pem).map_err(|e| key_error(key_path, e))
    }
}

#[async_trait]
impl ColumnMasterKeyStore for LocalKeyStore {
    fn provider_name(&self) -> &'static str {
        LOCAL_PROVIDER
    }

    async fn decrypt_cek(
        &self,
        key_path: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SqlDbError> {
        let key = Self::private_key(key_path)?;
        EncryptedCek::parse(value)
            .and_then(|v| v.decrypt(key_path, &key))
            .map_err(|e| key_error(key_path, e))
    }

    async fn encrypt_cek(&self, key_path: &str, cek: &[u8]) -> Result<Vec<u8>, SqlDbError> {
        let key = Self::private_key(key_path)?;
        encrypt_cek(cek, key_path, key.as_public_key(), &key).map_err(|e| key_error(key_path, e))
    }

    async fn sign_metadata(&self, key_path: &str) -> Result<Vec<u8>, SqlDbError> {
        let key = Self::private_key(key_path)?;
        sign_cmk_metadata(LOCAL_PROVIDER, key_path, false, &key).map_err(|e| key_error(key_path, e))
    }

    async fn verify_metadata(&self, key_path: &str, signature: &[u8]) -> Result<(), SqlDbError> {
        let key = Self::private_key(key_path)?;
        verify_cmk_metadata(
            LOCAL_PROVIDER,
            key_path,
            false,
            signature,
            key.as_public_key(),
        )
        .map_err(|e| key_error(key_path, e))
    }
}

/// Column master keys held by the CAS KMS (key path = KMS key id). Signatures are verified
/// with the key's public half, which the CAS gives any caller granted the key (so a reader
/// needs only `unwrap`); signing (new CEKs, CMK metadata) needs `wrap`.
#[derive(Debug)]
pub struct CasKeyStore {
    client: CasClient,
    public_keys: tokio::sync::Mutex<HashMap<String, RsaPublicKey>>,
}

impl CasKeyStore {
    /// A store using `client`, which carries an attested identity
    /// ([`CasClient::with_identity`]) or a policy user's credential
    /// ([`CasClient::with_credential`]).
    pub fn new(client: CasClient) -> Self {
        Self {
            client,
            public_keys: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The public key of KMS key `key_id`, from the CAS once per store.
    async fn public_key(&self, key_id: &str) -> Result<RsaPublicKey, SqlDbError> {
        let mut keys = self.public_keys.lock().await;
        if let Some(key) = keys.get(key_id) {
            return Ok(key.clone());
        }
        let pem = self
            .client
            .kms_public_key(key_id)
            .await
            .map_err(|e| key_error(key_id, format!("CAS public key: {e}")))?;
        let key = public_key_from_pem(&pem).map_err(|e| key_error(key_id, e))?;
        keys.insert(key_id.to_owned(), key.clone());
        Ok(key)
    }

    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, SqlDbError> {
        self.client
            .kms_rsa_sign(key_id, message)
            .await
            .map_err(|e| key_error(key_id, format!("CAS signing failed: {e}")))
    }
}

#[async_trait]
impl ColumnMasterKeyStore for CasKeyStore {
    fn provider_name(&self) -> &'static str {
        CAS_PROVIDER
    }

    async fn decrypt_cek(
        &self,
        key_path: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SqlDbError> {
        let parsed = EncryptedCek::parse(value).map_err(|e| key_error(key_path, e))?;
        if parsed.key_path.to_lowercase() != key_path.to_lowercase() {
            return Err(key_error(
                key_path,
                format!("the CEK value is for key path {:?}", parsed.key_path),
            ));
        }
        let public = self.public_key(key_path).await?;
        parsed
            .verify(key_path, &public)
            .map_err(|e| key_error(key_path, e))?;
        self.client
            .kms_rsa_decrypt(key_path, &parsed.ciphertext)
            .await
            .map_err(|e| key_error(key_path, format!("CAS decryption failed: {e}")))
    }

    async fn encrypt_cek(&self, key_path: &str, cek: &[u8]) -> Result<Vec<u8>, SqlDbError> {
        let public = self.public_key(key_path).await?;
        let mut value =
            encrypt_cek_unsigned(cek, key_path, &public).map_err(|e| key_error(key_path, e))?;
        let signature = self.sign(key_path, &value).await?;
        value.extend_from_slice(&signature);
        Ok(value)
    }

    async fn sign_metadata(&self, key_path: &str) -> Result<Vec<u8>, SqlDbError> {
        self.sign(
            key_path,
            &cmk_metadata_digest(CAS_PROVIDER, key_path, false),
        )
        .await
    }

    async fn verify_metadata(&self, key_path: &str, signature: &[u8]) -> Result<(), SqlDbError> {
        let public = self.public_key(key_path).await?;
        verify_cmk_metadata(CAS_PROVIDER, key_path, false, signature, &public)
            .map_err(|e| key_error(key_path, e))
    }
}

/// The key stores available to a job, by provider name. The local store is always present.
#[derive(Clone)]
pub struct KeyStores {
    stores: HashMap<&'static str, Arc<dyn ColumnMasterKeyStore>>,
}

impl Default for KeyStores {
    fn default() -> Self {
        let mut stores: HashMap<&'static str, Arc<dyn ColumnMasterKeyStore>> = HashMap::new();
        stores.insert(LOCAL_PROVIDER, Arc::new(LocalKeyStore));
        Self { stores }
    }
}

impl std::fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.stores.keys().collect();
        names.sort();
        f.debug_struct("KeyStores")
            .field("providers", &names)
            .finish()
    }
}

impl KeyStores {
    /// Adds (or replaces) a store under its provider name.
    pub fn with(mut self, store: Arc<dyn ColumnMasterKeyStore>) -> Self {
        self.stores.insert(store.provider_name(), store);
        self
    }

    /// The store of `provider`, or an error naming the column master key `cmk`.
    pub fn get(&self, provider: &str, cmk: &str) -> Result<&dyn ColumnMasterKeyStore, SqlDbError> {
        self.stores
            .get(provider)
            .map(|s| s.as_ref())
            .ok_or_else(|| {
                SqlDbError::cmk(
                    cmk,
                    format!("key store provider {provider:?} is not available to this job"),
                )
            })
    }
}
