//! SQL database tables (PostgreSQL, SQLite) with SQL Server Always Encrypted columns, read and
//! written inside the engine.
//!
//! - [`url`]: connection URLs (`postgres://…`, `sqlite:PATH`), redacted in every message;
//! - [`catalog`]: the key catalog inside the database (column master keys, column encryption
//!   key values, encrypted columns), mirroring SQL Server's;
//! - [`keystore`]: column master key stores (`local` PEM files, the `cas` KMS);
//! - [`provider`]: the DataFusion table provider: decrypting scans with projection pushdown
//!   and equality filters on deterministic columns pushed down as ciphertext, and
//!   transactional, encrypting inserts;
//! - [`pinning`]: the job's policy for a database's catalog (trusted column master key
//!   paths, columns that must be encrypted, whether local keys may be used), checked before
//!   any key is unwrapped or row read;
//! - [`custodian`]: the custodian's operations (create keys, encrypt or decrypt existing
//!   columns, show the catalog);
//! - [`sample`]: the ContosoHR-like sample table;
//! - [`conn`]: one connection to either database, rows as [`conn::Value`]s.

pub mod catalog;
pub mod conn;
pub mod custodian;
pub mod error;
pub mod keystore;
pub mod pinning;
pub mod provider;
pub mod sample;
mod schema;
pub mod url;
mod values;

pub use error::SqlDbError;
pub use keystore::{CasKeyStore, ColumnMasterKeyStore, KeyStores, LocalKeyStore};
pub use pinning::{DatabasePolicy, PolicyViolation, RequiredColumn};
pub use provider::{DatabaseSpec, register_database, register_database_with_policy};
pub use url::DbUrl;
