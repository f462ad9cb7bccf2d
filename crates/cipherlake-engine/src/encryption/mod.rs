//! Encrypted Parquet for DataFusion: Parquet modular encryption with PKMT1 key material, keys
//! resolved through a [`KmsClient`].
//!
//! - [`KmsSpec`]: the `--kms` selection string (`local:FILE`, `cas:URL`);
//! - [`CasKms`]: the CAS KMS for an attested workload (master keys never leave the CAS);
//! - [`EncryptionSpec`]: how to encrypt a file (footer key, column keys, footer mode, wrapping,
//!   data key length), parsed from the factory options of `COPY … TO … OPTIONS (…)` and
//!   `CREATE EXTERNAL TABLE … OPTIONS (…)`;
//! - [`KmsEncryptionFactory`]: the DataFusion `EncryptionFactory` registered under
//!   [`FACTORY_ID`] in every cipherlake session. Reading needs no options: each file's key
//!   metadata names its master keys and the KMS unwraps them.
//!
//! Writing an encrypted file from SQL (the session already selects the factory):
//!
//! ```sql
//! COPY t TO 'out/' STORED AS PARQUET OPTIONS (
//!   'format.crypto.factory_options.footer_key' 'kf',
//!   'format.crypto.factory_options.column_keys' 'kc:fare_amount,tip_amount;kl:PULocationID',
//!   'format.crypto.factory_options.plaintext_footer' 'false',
//!   'format.crypto.factory_options.double_wrapping' 'true',
//!   'format.crypto.factory_options.data_key_bits' '256');
//! ```
//!
//! Errors never carry key bytes: they name files, master key ids and option names.

mod cas_kms;
pub mod custodian;
mod factory;
mod kms_spec;
mod renewable_kms;
mod spec;

pub use cas_kms::CasKms;
pub use cipherlake_crypto::key_material::DataKeyLength;
pub use factory::{FACTORY_ID, KmsEncryptionFactory, decryption_properties};
pub use kms_spec::{KmsSpec, open_kms};
pub use renewable_kms::RenewableKms;
pub use spec::{ColumnKeys, EncryptionSpec, parse_column_keys};

/// Errors of the encryption layer. Messages name files, master key ids and options, never keys.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The `--kms` string is malformed.
    #[error("bad KMS selection '{spec}': {reason}")]
    KmsSpec {
        /// The string as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The CAS KMS needs an attested workload identity, which [`KmsSpec::open`] cannot give.
    #[error(
        "KMS '{spec}' needs an attested identity: attest first (give --cas-cert, --policy and --service) and use CasKms"
    )]
    CasNeedsIdentity {
        /// The string as given.
        spec: String,
    },
    /// The local master key list cannot be read or parsed.
    #[error("master key list {path}: {reason}")]
    KeyList {
        /// File path.
        path: String,
        /// What failed (never key text).
        reason: String,
    },
    /// An encryption option is malformed.
    #[error("encryption option '{option}': {reason}")]
    Option {
        /// Option name.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// Encryption was requested but no KMS is configured.
    #[error("cannot write encrypted Parquet file {path}: no KMS is configured (use --kms)")]
    NoKmsForWrite {
        /// File path.
        path: String,
    },
    /// Generating or wrapping data keys failed.
    #[error("cannot create the data keys for {path}: {reason}")]
    KeyGeneration {
        /// File path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A file cannot be read, written or parsed.
    #[error("{path}: {reason}")]
    File {
        /// File path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The Parquet encryption properties cannot be built.
    #[error("cannot configure Parquet encryption for {path}: {reason}")]
    Properties {
        /// File path.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl From<EncryptionError> for datafusion::error::DataFusionError {
    fn from(error: EncryptionError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
