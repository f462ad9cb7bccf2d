//! The Always Encrypted key catalog kept inside each database, mirroring SQL Server's
//! `sys.column_master_keys`, `sys.column_encryption_keys` + `sys.column_encryption_key_values`
//! and the encryption metadata of `sys.columns`:
//!
//! - `cipherlake_column_master_keys(name, key_store_provider_name, key_path, signature)`;
//! - `cipherlake_column_encryption_keys(name, column_master_key, encrypted_value,
//!   encryption_algorithm)`: the CEK value wrapped and signed by the column master key, in SQL
//!   Server's format;
//! - `cipherlake_encrypted_columns(table_name, column_name, column_encryption_key,
//!   encryption_type, sql_type)`: `deterministic` or `randomized`, and the column's declared
//!   SQL Server type (the cells are stored as bytea / BLOB in SQL Server's cell format).

use std::collections::HashMap;
use std::sync::Arc;

use cipherlake_crypto::always_encrypted::cek::KEY_ENCRYPTION_ALGORITHM;
use cipherlake_crypto::always_encrypted::{CellKey, EncryptionType, SqlType};

use super::conn::{Backend, Conn, Value};
use super::error::SqlDbError;
use super::keystore::KeyStores;

/// The catalog's table names (excluded from a database's user tables).
pub const CATALOG_TABLES: [&str; 3] = [
    "cipherlake_column_master_keys",
    "cipherlake_column_encryption_keys",
    "cipherlake_encrypted_columns",
];

/// A column master key's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMasterKey {
    /// Name.
    pub name: String,
    /// Key store provider (`local`, `cas`).
    pub provider: String,
    /// Key path within the store (PEM file path, CAS key id).
    pub key_path: String,
    /// RSASSA-PKCS1-v1_5 SHA-256 signature of the metadata by the key itself.
    pub signature: Vec<u8>,
}

/// A column encryption key value (wrapped; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnEncryptionKey {
    /// Name.
    pub name: String,
    /// The column master key that wraps it.
    pub column_master_key: String,
    /// The encrypted CEK value in SQL Server's format.
    pub encrypted_value: Vec<u8>,
    /// `RSA_OAEP`.
    pub algorithm: String,
}

/// How one column is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedColumn {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The column encryption key's name.
    pub cek: String,
    /// Deterministic or randomized.
    pub mode: EncryptionType,
    /// The column's SQL Server type.
    pub sql_type: SqlType,
}

/// The whole catalog of one database.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Column master keys.
    pub cmks: Vec<ColumnMasterKey>,
    /// Column encryption key values.
    pub ceks: Vec<ColumnEncryptionKey>,
    /// Encrypted columns.
    pub columns: Vec<EncryptedColumn>,
}

/// Unwrapped column encryption keys of one job, by name. [`CellKey`]s wipe themselves when
/// the last reference is dropped; `Debug` shows only names.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: HashMap<String, Arc<CellKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.keys.keys().collect();
        names.sort();
        f.debug_struct("Keyring").field("keys", &names).finish()
    }
}

impl Keyring {
    /// The cell key of CEK `name`.
    pub fn get(&self, name: &str) -> Result<Arc<CellKey>, SqlDbError> {
        self.keys
            .get(name)
            .cloned()
            .ok_or_else(|| SqlDbError::cek(name, "not loaded"))
    }
}

/// Creates the catalog tables if they do not exist.
pub async fn ensure(conn: &Conn) -> Result<(), SqlDbError> {
    let bytes = match conn.backend() {
        Backend::Postgres => "bytea",
        Backend::Sqlite => "BLOB",
    };
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS cipherlake_column_master_keys (
            name text PRIMARY KEY,
            key_store_provider_name text NOT NULL,
            key_path text NOT NULL,
            signature {bytes});
         CREATE TABLE IF NOT EXISTS cipherlake_column_encryption_keys (
            name text NOT NULL,
            column_master_key text NOT NULL REFERENCES cipherlake_column_master_keys(name),
            encrypted_value {bytes} NOT NULL,
            encryption_algorithm text NOT NULL,
            PRIMARY KEY (name, column_master_key));
         CREATE TABLE IF NOT EXISTS cipherlake_encrypted_columns (
            table_name text NOT NULL,
            column_name text NOT NULL,
            column_encryption_key text NOT NULL,
            encryption_type text NOT NULL CHECK (encryption_type IN ('deterministic', 'randomized')),
            sql_type text NOT NULL,
            PRIMARY KEY (table_name, column_name));"
    );
    conn.batch(&sql, "creating the key catalog").await
}

/// Whether the catalog tables exist.
async fn exists(conn: &Conn) -> Result<bool, SqlDbError> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
        }
        Backend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let rows = conn
        .query(
            sql,
            vec![Value::Text(CATALOG_TABLES[2].to_owned())],
            "looking for the key catalog",
        )
        .await?;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0))
}

fn text(row: &[Value], i: usize, what: &str) -> Result<String, SqlDbError> {
    match row.get(i) {
        Some(Value::Text(t)) => Ok(t.clone()),
        _ => Err(SqlDbError::Invalid(format!(
            "key catalog: {what} is not text"
        ))),
    }
}

fn bytes(row: &[Value], i: usize, what: &str) -> Result<Vec<u8>, SqlDbError> {
    match row.get(i) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err(SqlDbError::Invalid(format!(
            "key catalog: {what} is not bytes"
        ))),
    }
}

/// Reads the catalog (empty when the database has none).
pub async fn load(conn: &Conn) -> Result<Catalog, SqlDbError> {
    if !exists(conn).await? {
        return Ok(Catalog::default());
    }
    let context = "reading the key catalog";
    let cmks = conn
        .query(
            "SELECT name, key_store_provider_name, key_path, signature FROM cipherlake_column_master_keys ORDER BY name",
            vec![],
            context,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ColumnMasterKey {
                name: text(r, 0, "column master key name")?,
                provider: text(r, 1, "key store provider name")?,
                key_path: text(r, 2, "key path")?,
                signature: bytes(r, 3, "column master key signature")?,
            })
        })
        .collect::<Result<_, SqlDbError>>()?;
    let ceks = conn
        .query(
            "SELECT name, column_master_key, encrypted_value, encryption_algorithm FROM cipherlake_column_encryption_keys ORDER BY name",
            vec![],
            context,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ColumnEncryptionKey {
                name: text(r, 0, "column encryption key name")?,
                column_master_key: text(r, 1, "column master key name")?,
                encrypted_value: bytes(r, 2, "encrypted CEK value")?,
                algorithm: text(r, 3, "encryption algorithm")?,
            })
        })
        .collect::<Result<_, SqlDbError>>()?;
    let columns = conn
        .query(
            "SELECT table_name, column_name, column_encryption_key, encryption_type, sql_type FROM cipherlake_encrypted_columns ORDER BY table_name, column_name",
            vec![],
            context,
        )
        .await?
        .iter()
        .map(|r| {
            let table = text(r, 0, "table name")?;
            let column = text(r, 1, "column name")?;
            let mode = text(r, 3, "encryption type")?
                .parse()
                .map_err(|e| SqlDbError::column(&table, &column, e))?;
            let sql_type = text(r, 4, "SQL type")?
                .parse()
                .map_err(|e| SqlDbError::column(&table, &column, e))?;
            Ok(EncryptedColumn {
                cek: text(r, 2, "column encryption key name")?,
                table,
                column,
                mode,
                sql_type,
            })
        })
        .collect::<Result<_, SqlDbError>>()?;
    Ok(Catalog {
        cmks,
        ceks,
        columns,
    })
}

impl Catalog {
    /// The column master key `name`.
    pub fn cmk(&self, name: &str) -> Result<&ColumnMasterKey, SqlDbError> {
        self.cmks
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| SqlDbError::cmk(name, "not in the key catalog"))
    }

    /// The encryption of `table.column`, if it is encrypted.
    pub fn column(&self, table: &str, column: &str) -> Option<&EncryptedColumn> {
        self.columns
            .iter()
            .find(|c| c.table == table && c.column == column)
    }

    /// Unwraps column encryption key `name` through its column master key's store, after
    /// verifying the CMK metadata signature and the CEK value's signature.
    pub async fn unwrap(&self, name: &str, stores: &KeyStores) -> Result<CellKey, SqlDbError> {
        let value = self
            .ceks
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| SqlDbError::cek(name, "not in the key catalog"))?;
        if value.algorithm != KEY_ENCRYPTION_ALGORITHM {
            return Err(SqlDbError::cek(
                name,
                format!("unsupported encryption algorithm {:?}", value.algorithm),
            ));
        }
        let cmk = self.cmk(&value.column_master_key)?;
        let store = stores.get(&cmk.provider, &cmk.name)?;
        store
            .verify_metadata(&cmk.key_path, &cmk.signature)
            .await
            .map_err(|e| SqlDbError::cmk(&cmk.name, e))?;
        let cek = store
            .decrypt_cek(&cmk.key_path, &value.encrypted_value)
            .await
            .map_err(|e| SqlDbError::cek(name, e))?;
        CellKey::new(&cek).map_err(|e| SqlDbError::cek(name, e))
    }

    /// Unwraps every column encryption key that an encrypted column uses (once each).
    pub async fn keyring(&self, stores: &KeyStores) -> Result<Keyring, SqlDbError> {
        let mut keys = HashMap::new();
        for column in &self.columns {
            if !keys.contains_key(&column.cek) {
                let key = self.unwrap(&column.cek, stores).await?;
                keys.insert(column.cek.clone(), Arc::new(key));
            }
        }
        Ok(Keyring { keys })
    }
}
