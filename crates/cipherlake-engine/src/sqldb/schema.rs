//! A table's columns: their database types, Arrow types, and encryption.

use std::sync::Arc;

use cipherlake_crypto::always_encrypted::{CellKey, EncryptionType, SqlType};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::catalog::{CATALOG_TABLES, Catalog, Keyring};
use super::conn::{Backend, Conn, Value};
use super::error::SqlDbError;
use super::values::arrow_type;

/// How a plaintext column is read and written.
#[derive(Debug, Clone, PartialEq)]
pub enum PlainType {
    /// Boolean.
    Bool,
    /// 16-bit integer.
    Int16,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Text.
    Utf8,
    /// Bytes.
    Binary,
    /// Read as text and converted to this Arrow type (decimals, dates, timestamps and other
    /// types); written as text and converted by the database.
    Text(DataType),
}

impl PlainType {
    fn data_type(&self) -> DataType {
        match self {
            PlainType::Bool => DataType::Boolean,
            PlainType::Int16 => DataType::Int16,
            PlainType::Int32 => DataType::Int32,
            PlainType::Int64 => DataType::Int64,
            PlainType::Float32 => DataType::Float32,
            PlainType::Float64 => DataType::Float64,
            PlainType::Utf8 => DataType::Utf8,
            PlainType::Binary => DataType::Binary,
            PlainType::Text(t) => t.clone(),
        }
    }
}

/// An encrypted column's encryption.
#[derive(Clone)]
pub struct Encryption {
    /// The declared SQL Server type of the plaintext.
    pub sql_type: SqlType,
    /// Deterministic or randomized.
    pub mode: EncryptionType,
    /// The column encryption key's name.
    pub cek: String,
    /// The unwrapped key.
    pub key: Arc<CellKey>,
}

/// How a column is stored.
#[derive(Clone)]
pub enum ColumnKind {
    /// In plaintext.
    Plain(PlainType),
    /// As Always Encrypted cells.
    Encrypted(Encryption),
}

/// One column of a table.
#[derive(Clone)]
pub struct Column {
    /// The name.
    pub name: String,
    /// The database's type name (`numeric(10,2)`, `BLOB`, …).
    pub db_type: String,
    /// Plaintext or encrypted.
    pub kind: ColumnKind,
}

impl Column {
    /// The column's Arrow type (for encrypted columns: of the decrypted values).
    pub fn data_type(&self) -> DataType {
        match &self.kind {
            ColumnKind::Plain(p) => p.data_type(),
            ColumnKind::Encrypted(e) => arrow_type(&e.sql_type),
        }
    }
}

/// A table's name and columns.
#[derive(Clone)]
pub struct TableDef {
    /// The name as the database spells it.
    pub name: String,
    /// The columns in table order.
    pub columns: Vec<Column>,
}

impl TableDef {
    /// The Arrow schema of the (decrypted) table.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Quotes an identifier for either database.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The user tables of the database (without the key catalog).
pub async fn list_tables(conn: &Conn) -> Result<Vec<String>, SqlDbError> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        }
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    Ok(conn
        .query(sql, vec![], "listing tables")
        .await?
        .into_iter()
        .filter_map(|row| match row.into_iter().next() {
            Some(Value::Text(name)) if !CATALOG_TABLES.contains(&name.as_str()) => Some(name),
            _ => None,
        })
        .collect())
}

/// The columns of `table` with their database types: (name, type, PostgreSQL base type name).
pub async fn raw_columns(
    conn: &Conn,
    table: &str,
) -> Result<Vec<(String, String, String)>, SqlDbError> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text
             FROM pg_attribute a
             JOIN pg_class c ON a.attrelid = c.oid
             JOIN pg_namespace n ON c.relnamespace = n.oid
             JOIN pg_type t ON a.atttypid = t.oid
             WHERE n.nspname = current_schema() AND c.relname = $1
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum"
        }
        Backend::Sqlite => "SELECT name, type, type FROM pragma_table_info($1) ORDER BY cid",
    };
    let rows = conn
        .query(
            sql,
            vec![Value::Text(table.to_owned())],
            &format!("reading the columns of table {table}"),
        )
        .await?;
    if rows.is_empty() {
        return Err(SqlDbError::Invalid(format!(
            "table {table} does not exist or has no columns"
        )));
    }
    rows.into_iter()
        .map(|row| match row.as_slice() {
            [Value::Text(name), Value::Text(ty), Value::Text(base)] => {
                Ok((name.clone(), ty.clone(), base.clone()))
            }
            _ => Err(SqlDbError::Invalid(format!(
                "table {table}: unexpected column metadata"
            ))),
        })
        .collect()
}

/// Reads the definition of `table`, with the encryption of its encrypted columns from the
/// catalog and their keys from `keyring`.
pub async fn describe(
    conn: &Conn,
    table: &str,
    catalog: &Catalog,
    keyring: &Keyring,
) -> Result<TableDef, SqlDbError> {
    let backend = conn.backend();
    let mut columns = Vec::new();
    for (name, db_type, base) in raw_columns(conn, table).await? {
        let kind = match catalog.column(table, &name) {
            Some(enc) => {
                if !is_bytes(backend, &base) {
                    return Err(SqlDbError::column(
                        table,
                        &name,
                        format!("encrypted column must be stored as bytes, found {db_type}"),
                    ));
                }
                ColumnKind::Encrypted(Encryption {
                    sql_type: enc.sql_type,
                    mode: enc.mode,
                    cek: enc.cek.clone(),
                    key: keyring
                        .get(&enc.cek)
                        .map_err(|e| SqlDbError::column(table, &name, e))?,
                })
            }
            None => ColumnKind::Plain(match backend {
                Backend::Postgres => postgres_type(&base, &db_type),
                Backend::Sqlite => sqlite_type(&db_type),
            }),
        };
        columns.push(Column {
            name,
            db_type,
            kind,
        });
    }
    Ok(TableDef {
        name: table.to_owned(),
        columns,
    })
}

/// Whether a column of this base type stores bytes (bytea, BLOB).
pub fn is_bytes(backend: Backend, base: &str) -> bool {
    match backend {
        Backend::Postgres => base == "bytea",
        Backend::Sqlite => base.to_ascii_uppercase().contains("BLOB") || base.is_empty(),
    }
}

/// `(p, s)` of `numeric(p,s)` / `DECIMAL(p, s)` if it fits Decimal128.
fn precision_scale(db_type: &str) -> Option<(u8, i8)> {
    let args = db_type.split_once('(')?.1.strip_suffix(')')?;
    let (p, s) = args.split_once(',').unwrap_or((args, "0"));
    let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
    ((1..=38).contains(&p) && s >= 0 && s as u8 <= p).then_some((p, s))
}

fn postgres_type(base: &str, db_type: &str) -> PlainType {
    match base {
        "bool" => PlainType::Bool,
        "int2" => PlainType::Int16,
        "int4" => PlainType::Int32,
        "int8" => PlainType::Int64,
        "float4" => PlainType::Float32,
        "float8" => PlainType::Float64,
        "text" | "varchar" | "bpchar" | "name" => PlainType::Utf8,
        "bytea" => PlainType::Binary,
        "numeric" => PlainType::Text(match precision_scale(db_type) {
            Some((p, s)) => DataType::Decimal128(p, s),
            None => DataType::Float64,
        }),
        "date" => PlainType::Text(DataType::Date32),
        "timestamp" => PlainType::Text(DataType::Timestamp(TimeUnit::Microsecond, None)),
        _ => PlainType::Text(DataType::Utf8),
    }
}

/// SQLite's type affinity rules, with decimals, dates and timestamps recognised by name.
fn sqlite_type(declared: &str) -> PlainType {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        PlainType::Int64
    } else if t.contains("BOOL") {
        PlainType::Bool
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        PlainType::Utf8
    } else if t.contains("BLOB") || t.is_empty() {
        PlainType::Binary
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        PlainType::Float64
    } else if t.starts_with("DECIMAL") || t.starts_with("NUMERIC") {
        match precision_scale(&t) {
            Some((p, s)) => PlainType::Text(DataType::Decimal128(p, s)),
            None => PlainType::Float64,
        }
    } else if t.starts_with("DATETIME") || t.starts_with("TIMESTAMP") {
        PlainType::Text(DataType::Timestamp(TimeUnit::Microsecond, None))
    } else if t.starts_with("DATE") {
        PlainType::Text(DataType::Date32)
    } else {
        PlainType::Text(DataType::Utf8)
    }
}
