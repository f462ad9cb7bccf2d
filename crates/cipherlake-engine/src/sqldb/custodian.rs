//! The data custodian's operations on a database's Always Encrypted keys and columns:
//! create column master keys and column encryption keys, encrypt or decrypt existing columns
//! in place (resumably), and list the catalog (never key bytes).

use std::fmt::Write as _;

use cipherlake_crypto::always_encrypted::cek::KEY_ENCRYPTION_ALGORITHM;
use cipherlake_crypto::always_encrypted::cell::CEK_LEN;
use cipherlake_crypto::always_encrypted::{CellKey, EncryptionType, SqlType, Zeroizing};
use datafusion::arrow::datatypes::{DataType, TimeUnit};

use super::catalog::{self, Catalog};
use super::conn::{Backend, Conn, Row, Value};
use super::error::SqlDbError;
use super::keystore::KeyStores;
use super::schema::{ColumnKind, PlainType, describe, quote, raw_columns};
use super::values::{decrypt_column, encrypt_column, plain_cells, plain_column};

/// Records column master key `name` in the catalog (creating the catalog if needed), with its
/// metadata signed by the key itself.
pub async fn create_cmk(
    conn: &Conn,
    stores: &KeyStores,
    name: &str,
    provider: &str,
    key_path: &str,
) -> Result<(), SqlDbError> {
    catalog::ensure(conn).await?;
    let signature = stores
        .get(provider, name)?
        .sign_metadata(key_path)
        .await
        .map_err(|e| SqlDbError::cmk(name, e))?;
    conn.execute(
        "INSERT INTO cipherlake_column_master_keys (name, key_store_provider_name, key_path, signature) VALUES ($1, $2, $3, $4)",
        vec![
            Value::Text(name.to_owned()),
            Value::Text(provider.to_owned()),
            Value::Text(key_path.to_owned()),
            Value::Bytes(signature),
        ],
        &format!("recording column master key {name}"),
    )
    .await?;
    Ok(())
}

/// Generates a column encryption key, wraps and signs it with column master key `cmk` and
/// records the value as CEK `name`. The key itself is wiped from memory afterwards.
pub async fn create_cek(
    conn: &Conn,
    stores: &KeyStores,
    name: &str,
    cmk: &str,
) -> Result<(), SqlDbError> {
    let catalog = catalog::load(conn).await?;
    let master = catalog.cmk(cmk)?;
    let mut key = Zeroizing::new(vec![0u8; CEK_LEN]);
    rand::fill(key.as_mut_slice());
    let value = stores
        .get(&master.provider, &master.name)?
        .encrypt_cek(&master.key_path, &key)
        .await
        .map_err(|e| SqlDbError::cek(name, e))?;
    conn.execute(
        "INSERT INTO cipherlake_column_encryption_keys (name, column_master_key, encrypted_value, encryption_algorithm) VALUES ($1, $2, $3, $4)",
        vec![
            Value::Text(name.to_owned()),
            Value::Text(cmk.to_owned()),
            Value::Bytes(value),
            Value::Text(KEY_ENCRYPTION_ALGORITHM.to_owned()),
        ],
        &format!("recording column encryption key {name}"),
    )
    .await?;
    Ok(())
}

/// A column to encrypt: its name, mode, and SQL Server type (inferred from the database
/// type when `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRequest {
    /// The column.
    pub column: String,
    /// Deterministic or randomized.
    pub mode: EncryptionType,
    /// The SQL Server type the values are normalised as.
    pub sql_type: Option<SqlType>,
}

impl std::str::FromStr for ColumnRequest {
    type Err = SqlDbError;

    /// `NAME:deterministic|randomized[:SQLTYPE]`, e.g. `SSN:deterministic:char(11)`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| SqlDbError::Invalid(format!("column {s:?}: {reason}"));
        let mut parts = s.splitn(3, ':');
        let column = parts.next().unwrap_or_default().trim();
        let mode = parts
            .next()
            .ok_or_else(|| bad("expected NAME:deterministic|randomized[:SQLTYPE]".into()))?
            .parse()
            .map_err(|e| bad(format!("{e}")))?;
        let sql_type = parts
            .next()
            .map(|t| t.parse::<SqlType>().map_err(|e| bad(e.to_string())))
            .transpose()?;
        if column.is_empty() {
            return Err(bad("empty column name".into()));
        }
        Ok(ColumnRequest {
            column: column.to_owned(),
            mode,
            sql_type,
        })
    }
}

/// Progress of [`encrypt_columns`] / [`decrypt_columns`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Cells converted by this call.
    pub cells: u64,
    /// Whether every column was finished (swapped in and recorded in the catalog).
    pub finished: bool,
}

/// The name of the work column a column is converted into before the final swap.
fn shadow(column: &str) -> String {
    format!("{column}__cipherlake_new")
}

/// The SQL Server type matching a plaintext database column, for encrypting it.
fn infer_sql_type(
    table: &str,
    column: &str,
    plain: &PlainType,
    db_type: &str,
) -> Result<SqlType, SqlDbError> {
    let length = || {
        db_type
            .split_once('(')
            .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse::<u32>().ok())
    };
    let lower = db_type.to_ascii_lowercase();
    let fixed = ["char", "character", "nchar"]
        .iter()
        .any(|t| lower == *t || lower.starts_with(&format!("{t}(")));
    let ty = match plain {
        PlainType::Bool => SqlType::Bit,
        PlainType::Int16 => SqlType::SmallInt,
        PlainType::Int32 => SqlType::Int,
        PlainType::Int64 => SqlType::BigInt,
        PlainType::Float32 => SqlType::Real,
        PlainType::Float64 => SqlType::Float,
        PlainType::Utf8 => match length() {
            Some(len) if fixed => SqlType::NChar { len },
            len => SqlType::NVarChar { len },
        },
        PlainType::Binary => SqlType::VarBinary { len: None },
        PlainType::Text(DataType::Decimal128(precision, scale)) => SqlType::Decimal {
            precision: *precision,
            scale: *scale as u8,
        },
        PlainType::Text(DataType::Date32) => SqlType::Date,
        PlainType::Text(DataType::Timestamp(TimeUnit::Microsecond, None)) => {
            SqlType::DateTime2 { scale: 6 }
        }
        PlainType::Text(_) => {
            return Err(SqlDbError::column(
                table,
                column,
                format!(
                    "cannot infer a SQL Server type for {db_type}: give it as NAME:MODE:SQLTYPE"
                ),
            ));
        }
    };
    Ok(ty)
}

/// The database type of a decrypted column of SQL Server type `ty`.
fn plain_db_type(backend: Backend, ty: &SqlType) -> String {
    let pg = backend == Backend::Postgres;
    match *ty {
        SqlType::Bit => if pg { "boolean" } else { "BOOLEAN" }.to_owned(),
        SqlType::TinyInt | SqlType::SmallInt => if pg { "smallint" } else { "INTEGER" }.to_owned(),
        SqlType::Int => if pg { "integer" } else { "INTEGER" }.to_owned(),
        SqlType::BigInt => if pg { "bigint" } else { "INTEGER" }.to_owned(),
        SqlType::Real => if pg { "real" } else { "REAL" }.to_owned(),
        SqlType::Float => if pg { "double precision" } else { "REAL" }.to_owned(),
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            format!("numeric({precision},{scale})")
        }
        SqlType::Money => "numeric(19,4)".to_owned(),
        SqlType::SmallMoney => "numeric(10,4)".to_owned(),
        SqlType::Char { len, .. } | SqlType::NChar { len } => format!("char({len})"),
        SqlType::VarChar { len: Some(len), .. } | SqlType::NVarChar { len: Some(len) } => {
            format!("varchar({len})")
        }
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => {
            if pg { "bytea" } else { "BLOB" }.to_owned()
        }
        SqlType::Date => if pg { "date" } else { "DATE" }.to_owned(),
        _ => if pg { "text" } else { "TEXT" }.to_owned(),
    }
}

/// Converts a batch of source cells into shadow column cells.
type Convert<'a> = &'a dyn Fn(&[Value]) -> Result<Vec<Value>, SqlDbError>;

/// One column rewrite into its shadow column.
struct Rewrite<'a> {
    table: &'a str,
    column: &'a str,
    /// Select the source as text (PostgreSQL types read through text).
    select_text: bool,
    /// Cast applied to the new value in the UPDATE (e.g. `::text::numeric(10,2)`).
    update_cast: &'a str,
    /// Rows per batch (one transaction each).
    batch_rows: usize,
}

/// Rewrites the column into its shadow column, converting each batch of source cells with
/// `convert`; stops after `max_batches` batches (when given). Rows already converted (shadow
/// not NULL) are skipped, so an interrupted run resumes where it stopped. Returns the cells
/// converted and whether none remain.
async fn fill_shadow(
    conn: &Conn,
    rewrite: &Rewrite<'_>,
    max_batches: &mut Option<usize>,
    convert: Convert<'_>,
) -> Result<(u64, bool), SqlDbError> {
    let Rewrite {
        table,
        column,
        select_text,
        update_cast,
        batch_rows,
    } = *rewrite;
    let (rowid, rowid_param) = match conn.backend() {
        Backend::Postgres => ("ctid::text", "CAST($2 AS text)::tid"),
        Backend::Sqlite => ("rowid", "$2"),
    };
    let source = if select_text {
        format!("{}::text", quote(column))
    } else {
        quote(column)
    };
    let select = format!(
        "SELECT {rowid}, {source} FROM {} WHERE {} IS NULL AND {} IS NOT NULL LIMIT {}",
        quote(table),
        quote(&shadow(column)),
        quote(column),
        batch_rows.max(1)
    );
    let update = format!(
        "UPDATE {} SET {} = $1{update_cast} WHERE {rowid_param} = {}",
        quote(table),
        quote(&shadow(column)),
        if conn.backend() == Backend::Postgres {
            "ctid"
        } else {
            "rowid"
        },
    );
    let context = format!("converting table {table}, column {column}");
    let mut cells = 0;
    loop {
        if *max_batches == Some(0) {
            return Ok((cells, false));
        }
        let rows = conn.query(&select, vec![], &context).await?;
        if rows.is_empty() {
            return Ok((cells, true));
        }
        let (ids, values): (Vec<Value>, Vec<Value>) = rows
            .into_iter()
            .map(|mut r| {
                let v = r.pop().unwrap_or(Value::Null);
                (r.pop().unwrap_or(Value::Null), v)
            })
            .unzip();
        let converted = convert(&values)?;
        let updates: Vec<Row> = converted
            .into_iter()
            .zip(ids)
            .map(|(v, id)| vec![v, id])
            .collect();
        cells += updates.len() as u64;
        conn.batch("BEGIN", &context).await?;
        if let Err(e) = conn.execute_many(&update, updates, &context).await {
            let _ = conn.batch("ROLLBACK", &context).await;
            return Err(e);
        }
        conn.batch("COMMIT", &context).await?;
        if let Some(n) = max_batches.as_mut() {
            *n -= 1;
        }
    }
}

/// Adds the shadow column if it is not there yet (from an interrupted run).
async fn add_shadow(
    conn: &Conn,
    table: &str,
    column: &str,
    db_type: &str,
) -> Result<(), SqlDbError> {
    let exists = raw_columns(conn, table)
        .await?
        .iter()
        .any(|(name, _, _)| *name == shadow(column));
    if !exists {
        conn.batch(
            &format!(
                "ALTER TABLE {} ADD COLUMN {} {db_type}",
                quote(table),
                quote(&shadow(column))
            ),
            &format!("adding a work column for table {table}, column {column}"),
        )
        .await?;
    }
    Ok(())
}

/// Fills the shadow column of `rewrite` (counting cells into `progress`) and, once every row is
/// done, swaps it in together with the catalog change (SQL and parameters). Returns false, with
/// `progress` marked unfinished, when `max_batches` stopped it first.
async fn rewrite_column(
    conn: &Conn,
    rewrite: &Rewrite<'_>,
    max_batches: &mut Option<usize>,
    convert: Convert<'_>,
    progress: &mut Progress,
    (catalog_sql, params): (&str, Row),
) -> Result<bool, SqlDbError> {
    let (cells, done) = fill_shadow(conn, rewrite, max_batches, convert).await?;
    progress.cells += cells;
    if !done {
        progress.finished = false;
        return Ok(false);
    }
    swap(conn, rewrite.table, rewrite.column, catalog_sql, params).await?;
    Ok(true)
}

/// Swaps the shadow column in for `column` and updates the catalog, in one transaction.
async fn swap(
    conn: &Conn,
    table: &str,
    column: &str,
    catalog_sql: &str,
    params: Row,
) -> Result<(), SqlDbError> {
    let context = format!("swapping in table {table}, column {column}");
    conn.batch("BEGIN", &context).await?;
    let result = async {
        conn.batch(
            &format!(
                "ALTER TABLE {t} DROP COLUMN {c}; ALTER TABLE {t} RENAME COLUMN {s} TO {c}",
                t = quote(table),
                c = quote(column),
                s = quote(&shadow(column))
            ),
            &context,
        )
        .await?;
        conn.execute(catalog_sql, params, &context).await?;
        conn.batch("COMMIT", &context).await
    }
    .await;
    if result.is_err() {
        let _ = conn.batch("ROLLBACK", &context).await;
    }
    result
}

/// Encrypts existing plaintext columns of `table` in place under CEK `cek`.
///
/// Each column is encrypted into a work column in batches of `batch_rows` rows, each batch
/// its own transaction; when all rows are done the work column replaces the plaintext one and
/// the column is recorded in the catalog, in one final transaction. Interrupted (or stopped
/// after `max_batches`), a later call resumes where it stopped. The encrypted column moves to
/// the end of the table.
pub async fn encrypt_columns(
    conn: &Conn,
    stores: &KeyStores,
    table: &str,
    columns: &[ColumnRequest],
    cek: &str,
    batch_rows: usize,
    mut max_batches: Option<usize>,
) -> Result<Progress, SqlDbError> {
    catalog::ensure(conn).await?;
    let catalog = catalog::load(conn).await?;
    if let Some(done) = columns
        .iter()
        .find(|c| catalog.column(table, &c.column).is_some())
    {
        return Err(SqlDbError::column(
            table,
            &done.column,
            "is already encrypted",
        ));
    }
    let key = catalog.unwrap(cek, stores).await?;
    let def = describe(conn, table, &catalog, &catalog.keyring(stores).await?).await?;
    let bytes_type = match conn.backend() {
        Backend::Postgres => "bytea",
        Backend::Sqlite => "BLOB",
    };
    let mut progress = Progress {
        cells: 0,
        finished: true,
    };
    for request in columns {
        let column = &request.column;
        let plain = def
            .columns
            .iter()
            .find(|c| c.name == *column)
            .ok_or_else(|| SqlDbError::column(table, column, "no such column"))?;
        let ColumnKind::Plain(plain_type) = &plain.kind else {
            return Err(SqlDbError::column(table, column, "is already encrypted"));
        };
        let sql_type = match request.sql_type {
            Some(t) => t,
            None => infer_sql_type(table, column, plain_type, &plain.db_type)?,
        };
        add_shadow(conn, table, column, bytes_type).await?;
        let convert = |cells: &[Value]| {
            let array = plain_column(table, column, plain_type, cells)?;
            encrypt_column(table, column, &sql_type, request.mode, &key, &array)
        };
        let select_text =
            matches!(plain_type, PlainType::Text(_)) && conn.backend() == Backend::Postgres;
        let rewrite = Rewrite {
            table,
            column,
            select_text,
            update_cast: "",
            batch_rows,
        };
        let catalog_change = (
            "INSERT INTO cipherlake_encrypted_columns (table_name, column_name, column_encryption_key, encryption_type, sql_type) VALUES ($1, $2, $3, $4, $5)",
            vec![
                Value::Text(table.to_owned()),
                Value::Text(column.clone()),
                Value::Text(cek.to_owned()),
                Value::Text(request.mode.to_string()),
                Value::Text(sql_type.to_string()),
            ],
        );
        let rewritten = rewrite_column(
            conn,
            &rewrite,
            &mut max_batches,
            &convert,
            &mut progress,
            catalog_change,
        )
        .await?;
        if !rewritten {
            return Ok(progress);
        }
    }
    Ok(progress)
}

/// Decrypts encrypted columns of `table` back to plaintext columns in place (resumable like
/// [`encrypt_columns`]) and removes them from the catalog.
pub async fn decrypt_columns(
    conn: &Conn,
    stores: &KeyStores,
    table: &str,
    columns: &[String],
    batch_rows: usize,
    mut max_batches: Option<usize>,
) -> Result<Progress, SqlDbError> {
    let catalog = catalog::load(conn).await?;
    let mut progress = Progress {
        cells: 0,
        finished: true,
    };
    let backend = conn.backend();
    for column in columns {
        let enc = catalog
            .column(table, column)
            .ok_or_else(|| SqlDbError::column(table, column, "is not encrypted"))?;
        let key: CellKey = catalog.unwrap(&enc.cek, stores).await?;
        let db_type = plain_db_type(backend, &enc.sql_type);
        add_shadow(conn, table, column, &db_type).await?;
        let binary = matches!(
            enc.sql_type,
            SqlType::Binary { .. } | SqlType::VarBinary { .. }
        );
        let target = match backend {
            _ if binary => PlainType::Binary,
            Backend::Postgres => PlainType::Text(DataType::Utf8),
            Backend::Sqlite => sqlite_plain(&enc.sql_type),
        };
        let convert = |cells: &[Value]| {
            let array = decrypt_column(table, column, &enc.sql_type, &key, cells)?;
            plain_cells(table, column, &target, &array)
        };
        let cast = match backend {
            Backend::Postgres if !binary => format!("::text::{db_type}"),
            _ => String::new(),
        };
        let rewrite = Rewrite {
            table,
            column,
            select_text: false,
            update_cast: &cast,
            batch_rows,
        };
        let catalog_change = (
            "DELETE FROM cipherlake_encrypted_columns WHERE table_name = $1 AND column_name = $2",
            vec![Value::Text(table.to_owned()), Value::Text(column.clone())],
        );
        let rewritten = rewrite_column(
            conn,
            &rewrite,
            &mut max_batches,
            &convert,
            &mut progress,
            catalog_change,
        )
        .await?;
        if !rewritten {
            return Ok(progress);
        }
    }
    Ok(progress)
}

/// How decrypted values are stored in SQLite.
fn sqlite_plain(ty: &SqlType) -> PlainType {
    match ty {
        SqlType::Bit => PlainType::Bool,
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => PlainType::Int64,
        SqlType::Real | SqlType::Float => PlainType::Float64,
        _ => PlainType::Utf8,
    }
}

/// The catalog as text: keys (names, providers, key paths, value sizes; never key bytes) and
/// encrypted columns.
pub fn describe_catalog(catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "column master keys:");
    for k in &catalog.cmks {
        let _ = writeln!(
            out,
            "  {} provider={} key_path={} signed={}",
            k.name,
            k.provider,
            k.key_path,
            !k.signature.is_empty()
        );
    }
    let _ = writeln!(out, "column encryption keys:");
    for k in &catalog.ceks {
        let _ = writeln!(
            out,
            "  {} cmk={} algorithm={} value_bytes={}",
            k.name,
            k.column_master_key,
            k.algorithm,
            k.encrypted_value.len()
        );
    }
    let _ = writeln!(out, "encrypted columns:");
    for c in &catalog.columns {
        let _ = writeln!(
            out,
            "  {}.{} {} {} cek={}",
            c.table, c.column, c.sql_type, c.mode, c.cek
        );
    }
    out
}
