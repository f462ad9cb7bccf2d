//! Parquet key material (PKMT1): the key-management-tools layer of Parquet modular encryption.
//!
//! Parquet files carry, for the footer key and each column key, an opaque "key metadata" byte
//! string. parquet-java (`org.apache.parquet.crypto.keytools`) and Arrow C++
//! (`parquet/encryption/*`, used by pyarrow's `CryptoFactory`) fill it with a flat JSON object,
//! the "key material", that lets a reader recover the data encryption key (DEK) through a KMS
//! ("envelope encryption"):
//!
//! - **single wrapping**: the DEK is wrapped by the KMS under a master key;
//! - **double wrapping** (the default): the DEK is encrypted locally with AES-GCM under a random
//!   key encryption key (KEK), with the raw 16-byte KEK id as AAD, and the KEK is wrapped by the
//!   KMS under the master key. One KEK is made per master key and file writer.
//!
//! This module speaks that format exactly, with the key material stored internally (inside the
//! key metadata), which is the default of both implementations:
//!
//! - [`KeyMaterial`]: parse and serialise the JSON;
//! - [`KmsClient`]: wrap and unwrap keys by master key id; [`LocalKms`] is the offline
//!   implementation over a `parquet.encryption.key.list`-style master key list, wrapping like
//!   parquet-java's `InMemoryKMS`;
//! - [`FileKeyWrapper`]: writer side, generates DEKs and their key metadata;
//! - [`FileKeyUnwrapper`]: reader side, recovers DEKs from key metadata with a per-job cache;
//! - [`encrypt_key_locally`] / [`decrypt_key_locally`]: the AES-GCM key wrapping primitive of
//!   `KeyToolkit.encryptKeyLocally` (base64 of nonce(12) ‖ ciphertext ‖ tag(16)).
//!
//! Nothing here prints key bytes: every type holding a key redacts it in `Debug`, and errors
//! name master key ids and KEK ids only.

mod json;
mod kms;
mod local;
mod unwrapper;
mod wrapper;

pub use json::{KeyMaterial, Wrapping};
pub use kms::{KeyListError, KmsClient, KmsError, LocalKms};
pub use local::{LocalWrapError, decrypt_key_locally, encrypt_key_locally};
pub use unwrapper::FileKeyUnwrapper;
pub use wrapper::{
    DataKey, DataKeyLength, FileKeyWrapper, KEK_LIFETIME, KeyWrappingOptions, WriterKeks,
};

/// The only key material type defined by the Parquet key management tools.
pub const KEY_MATERIAL_TYPE_PKMT1: &str = "PKMT1";

/// The KMS instance id and URL written into footer key material when none is configured, as
/// parquet-java (`KmsClient.KMS_INSTANCE_ID_DEFAULT`) and Arrow C++ do.
pub const KMS_INSTANCE_DEFAULT: &str = "DEFAULT";

/// Length in bytes of key encryption keys generated for double wrapping (128 bits, the default
/// of parquet-java and the fixed length of Arrow C++).
pub const KEK_LENGTH: usize = 16;

/// Length in bytes of the random key encryption key ids (before base64).
pub const KEK_ID_LENGTH: usize = 16;

/// Errors of the key material layer. Messages name master key ids, KEK ids and JSON fields,
/// never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyMaterialError {
    /// The key metadata bytes are not UTF-8.
    #[error("Parquet key metadata is not UTF-8 text")]
    NotUtf8,
    /// The key metadata is not a JSON object.
    #[error("Parquet key metadata is not a JSON object: {reason}")]
    MalformedJson {
        /// What the JSON parser reported.
        reason: String,
    },
    /// A required field is absent.
    #[error("Parquet key material lacks the field {field:?}")]
    MissingField {
        /// JSON field name.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("Parquet key material field {field:?} is not a JSON {expected}")]
    WrongFieldType {
        /// JSON field name.
        field: &'static str,
        /// Expected JSON type.
        expected: &'static str,
    },
    /// `keyMaterialType` is not `PKMT1`.
    #[error("unsupported Parquet key material type {found:?} (only \"PKMT1\" is supported)")]
    UnknownKeyMaterialType {
        /// The value found in the file.
        found: String,
    },
    /// `internalStorage` is false: the key material lives in a separate file next to the
    /// Parquet file (parquet-java's `HadoopFSKeyMaterialStore`), which is not supported.
    #[error(
        "Parquet key material is stored externally (internalStorage: false, keyReference {key_reference:?}); \
         external key material is not supported, rewrite the file with internal key material"
    )]
    ExternalKeyMaterial {
        /// The `keyReference` field, when present.
        key_reference: Option<String>,
    },
    /// A base64 field could not be decoded.
    #[error("Parquet key material field {field:?} is not valid base64")]
    InvalidBase64 {
        /// JSON field name.
        field: &'static str,
    },
    /// The KMS failed to wrap a key.
    #[error("cannot wrap a key with the KMS: {0}")]
    Wrap(KmsError),
    /// Double wrapping: encrypting a DEK under its KEK failed.
    #[error(
        "cannot encrypt a data key under the key encryption key of master key {master_key_id:?}: {cause}"
    )]
    EncryptDek {
        /// Master key id the KEK belongs to.
        master_key_id: String,
        /// What failed.
        cause: LocalWrapError,
    },
    /// The KMS failed to unwrap a KEK (double wrapping): wrong master key, tampered `wrappedKEK`,
    /// or no access.
    #[error("cannot unwrap the key encryption key {kek_id:?}: {cause}")]
    UnwrapKek {
        /// The `keyEncryptionKeyID` of the key material.
        kek_id: String,
        /// The KMS error (names the master key id).
        cause: KmsError,
    },
    /// The KMS failed to unwrap a DEK (single wrapping): wrong master key, tampered
    /// `wrappedDEK`, or no access.
    #[error("cannot unwrap the data encryption key: {0}")]
    UnwrapDek(KmsError),
    /// Double wrapping: the DEK did not authenticate under its KEK (tampered `wrappedDEK` or
    /// `keyEncryptionKeyID`).
    #[error(
        "the wrapped data key of master key {master_key_id:?} does not authenticate under key \
         encryption key {kek_id:?} (tampered wrappedDEK or keyEncryptionKeyID)"
    )]
    DekAuthentication {
        /// Master key id of the key material.
        master_key_id: String,
        /// The `keyEncryptionKeyID` of the key material.
        kek_id: String,
    },
    /// A wrapped DEK or KEK is malformed (too short to hold nonce and tag).
    #[error("the {field} of master key {master_key_id:?} is malformed: {cause}")]
    MalformedWrappedKey {
        /// JSON field name.
        field: &'static str,
        /// Master key id of the key material.
        master_key_id: String,
        /// What is wrong.
        cause: LocalWrapError,
    },
    /// An unwrapped KEK does not have an AES key length.
    #[error(
        "the key encryption key of master key {master_key_id:?} has {len} bytes, not 16, 24 or 32"
    )]
    InvalidKekLength {
        /// Master key id of the key material.
        master_key_id: String,
        /// Length in bytes.
        len: usize,
    },
    /// An unwrapped DEK is not 128 or 256 bits (192-bit data keys are not supported by the
    /// Parquet reader).
    #[error(
        "the data key of master key {master_key_id:?} has {bits} bits; only 128- and 256-bit data keys are supported"
    )]
    UnsupportedDataKeyLength {
        /// Master key id of the key material.
        master_key_id: String,
        /// Length in bits.
        bits: usize,
    },
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
}

/// Fills `buf` from the operating system CSPRNG.
fn random_bytes(buf: &mut [u8]) -> Result<(), KeyMaterialError> {
    getrandom::fill(buf).map_err(|_| KeyMaterialError::Random)
}
