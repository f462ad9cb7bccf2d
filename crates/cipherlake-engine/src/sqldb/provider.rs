//! The DataFusion table provider of a database table with Always Encrypted columns, and the
//! registration of a whole database as a schema of the session.
//!
//! Scans select only the projected columns, decrypt encrypted cells inside the engine and
//! push `col = literal` and `col IN (literals)` on deterministic columns down to the database
//! as ciphertext equality (the literals encrypted deterministically). Inserts encrypt the
//! encrypted columns and write every row in one transaction: all rows arrive or none.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use cipherlake_crypto::always_encrypted::{EncryptionType, SqlType, SqlValue, encrypt_value};
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::memory::MemorySchemaProvider;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::catalog;
use super::conn::{Backend, Conn, Row, Value};
use super::error::SqlDbError;
use super::keystore::KeyStores;
use super::pinning::DatabasePolicy;
use super::schema::{Column, ColumnKind, PlainType, TableDef, describe, list_tables, quote};
use super::url::DbUrl;
use super::values::{
    array_to_sql_values, decrypt_column, encrypt_column, plain_cells, plain_column,
};

/// Rows per record batch read from the database.
const BATCH_ROWS: usize = 8192;

/// A `--database NAME=URL` argument: register every user table of the database at URL as
/// `NAME.table`.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    /// The schema name in the session.
    pub name: String,
    /// The database.
    pub url: DbUrl,
}

impl FromStr for DatabaseSpec {
    type Err = SqlDbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s.split_once('=').ok_or_else(|| {
            SqlDbError::Invalid("expected --database NAME=URL (postgres://… or sqlite:PATH)".into())
        })?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SqlDbError::Invalid(format!(
                "database name {name:?} must be letters, digits and _"
            )));
        }
        Ok(DatabaseSpec {
            name: name.to_owned(),
            url: url.parse()?,
        })
    }
}

/// Registers every user table of the database as `spec.name.TABLE` in `ctx`'s default
/// catalog, trusting its key catalog as it is ([`DatabasePolicy::unrestricted`]): for
/// databases the caller controls. See [`register_database_with_policy`].
pub async fn register_database(
    ctx: &SessionContext,
    spec: &DatabaseSpec,
    stores: &KeyStores,
) -> Result<Vec<String>, SqlDbError> {
    register_database_with_policy(ctx, spec, stores, &DatabasePolicy::unrestricted()).await
}

/// Registers every user table of the database as `spec.name.TABLE` in `ctx`'s default
/// catalog. The key catalog is checked against `policy` first (trusted column master key
/// paths, local keys, required encrypted columns: a violation is [`SqlDbError::Policy`],
/// before any key is unwrapped or row read). The column encryption keys that encrypted columns
/// use are then unwrapped, once for the job, through `stores` (a CEK value with a bad
/// signature is refused here). Nothing is registered on error. Returns the table names.
pub async fn register_database_with_policy(
    ctx: &SessionContext,
    spec: &DatabaseSpec,
    stores: &KeyStores,
    policy: &DatabasePolicy,
) -> Result<Vec<String>, SqlDbError> {
    if let DbUrl::Sqlite(path) = &spec.url
        && !path.is_file()
    {
        return Err(SqlDbError::Connect {
            url: spec.url.redacted(),
            reason: "no such database file".into(),
        });
    }
    let conn = Conn::open(&spec.url).await?;
    let catalog = catalog::load(&conn).await?;
    policy.check_catalog(&spec.name, &catalog)?;
    let keyring = catalog.keyring(stores).await?;
    let tables = list_tables(&conn).await?;
    let mut defs = Vec::with_capacity(tables.len());
    for table in &tables {
        defs.push(describe(&conn, table, &catalog, &keyring).await?);
    }
    policy.check_tables(&spec.name, &defs)?;
    let default_catalog = ctx.state().config_options().catalog.default_catalog.clone();
    let target = ctx
        .catalog(&default_catalog)
        .ok_or_else(|| SqlDbError::Invalid(format!("no catalog {default_catalog}")))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    for def in defs {
        let table = def.name.clone();
        let provider = SqlTable::new(spec.url.clone(), def);
        datafusion::catalog::SchemaProvider::register_table(
            schema.as_ref(),
            table.clone(),
            Arc::new(provider),
        )
        .map_err(|e| SqlDbError::Invalid(format!("table {}.{table}: {e}", spec.name)))?;
    }
    target
        .register_schema(&spec.name, schema)
        .map_err(|e| SqlDbError::Invalid(format!("schema {}: {e}", spec.name)))?;
    Ok(tables)
}

/// A database table as a DataFusion table.
pub struct SqlTable {
    url: DbUrl,
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl fmt::Debug for SqlTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTable")
            .field("url", &self.url)
            .field("table", &self.def.name)
            .finish()
    }
}

/// A filter pushed down to the database: the column and the cells it may equal.
struct PushedFilter {
    column: usize,
    cells: Vec<Vec<u8>>,
}

impl SqlTable {
    /// The provider of table `def` of the database at `url`.
    pub fn new(url: DbUrl, def: TableDef) -> Self {
        let schema = def.schema();
        Self {
            url,
            def: Arc::new(def),
            schema,
        }
    }

    /// The filter as ciphertext equality on a deterministic column, if it is one whose
    /// result on ciphertext equals DataFusion's on the decrypted values.
    fn pushed(&self, expr: &Expr) -> Option<PushedFilter> {
        let (column, literals) = match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    (c, vec![v.clone()])
                }
                _ => return None,
            },
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) => match expr.as_ref() {
                Expr::Column(c) => (
                    c,
                    list.iter()
                        .map(|e| match e {
                            Expr::Literal(v, _) => Some(v.clone()),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()?,
                ),
                _ => return None,
            },
            _ => return None,
        };
        let index = self.schema.index_of(&column.name).ok()?;
        let ColumnKind::Encrypted(enc) = &self.def.columns[index].kind else {
            return None;
        };
        if enc.mode != EncryptionType::Deterministic || !canonical(&enc.sql_type) {
            return None;
        }
        let cells = literals
            .iter()
            .map(|literal| {
                if literal.is_null() {
                    return None;
                }
                let array = literal.to_array().ok()?;
                let value = array_to_sql_values(&enc.sql_type, &array).ok()?.pop()??;
                if let (SqlType::Char { len, .. } | SqlType::NChar { len }, SqlValue::String(s)) =
                    (&enc.sql_type, &value)
                {
                    let units = match enc.sql_type {
                        SqlType::NChar { .. } => s.encode_utf16().count(),
                        _ => s.len(),
                    };
                    if units != *len as usize || s.ends_with(' ') {
                        return None;
                    }
                }
                encrypt_value(
                    &enc.key,
                    &enc.sql_type,
                    &value,
                    EncryptionType::Deterministic,
                )
                .ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(PushedFilter {
            column: index,
            cells,
        })
    }

    fn select_sql(
        &self,
        backend: Backend,
        columns: &[usize],
        filters: &[PushedFilter],
        limit: Option<usize>,
    ) -> (String, Row) {
        let select = if columns.is_empty() {
            "1".to_owned()
        } else {
            columns
                .iter()
                .map(|&i| {
                    let c = &self.def.columns[i];
                    match (&c.kind, backend) {
                        (ColumnKind::Plain(PlainType::Text(_)), Backend::Postgres) => {
                            format!("{}::text", quote(&c.name))
                        }
                        _ => quote(&c.name),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!("SELECT {select} FROM {}", quote(&self.def.name));
        let mut params = Vec::new();
        let mut conditions = Vec::new();
        for filter in filters {
            let column = quote(&self.def.columns[filter.column].name);
            let mut placeholders = Vec::new();
            for cell in &filter.cells {
                params.push(Value::Bytes(cell.clone()));
                placeholders.push(format!("${}", params.len()));
            }
            conditions.push(if placeholders.len() == 1 {
                format!("{column} = {}", placeholders[0])
            } else {
                format!("{column} IN ({})", placeholders.join(", "))
            });
        }
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        (sql, params)
    }
}

/// Whether equal values of the type always have equal normalised bytes (so equality of
/// deterministic cells is equality of values). Floats (-0.0 = 0.0) and types shown as text
/// in a form other than the one written are excluded.
fn canonical(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Bit
            | SqlType::TinyInt
            | SqlType::SmallInt
            | SqlType::Int
            | SqlType::BigInt
            | SqlType::Decimal { .. }
            | SqlType::Numeric { .. }
            | SqlType::Money
            | SqlType::SmallMoney
            | SqlType::Char { .. }
            | SqlType::VarChar { .. }
            | SqlType::NChar { .. }
            | SqlType::NVarChar { .. }
            | SqlType::VarBinary { .. }
            | SqlType::Date
    )
}

#[async_trait]
impl TableProvider for SqlTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.pushed(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.def.columns.len()).collect(),
        };
        let pushed = filters
            .iter()
            .map(|f| {
                self.pushed(f).ok_or_else(|| {
                    DataFusionError::Internal(format!("filter {f} cannot be pushed down"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let backend = match self.url {
            DbUrl::Postgres(_) => Backend::Postgres,
            DbUrl::Sqlite(_) => Backend::Sqlite,
        };
        let (sql, params) = self.select_sql(backend, &columns, &pushed, limit);
        let schema = Arc::new(self.schema.project(&columns)?);
        let scan = SqlScan {
            url: self.url.clone(),
            def: self.def.clone(),
            columns,
            schema: schema.clone(),
            sql,
            params,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(scan)],
            None,
            Vec::new(),
            false,
            None,
        )?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} into database table {}: only INSERT INTO is supported",
                self.def.name
            )));
        }
        let sink = SqlSink {
            url: self.url.clone(),
            def: self.def.clone(),
            schema: self.schema.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// One scan of a table: a query whose rows are decrypted into record batches.
struct SqlScan {
    url: DbUrl,
    def: Arc<TableDef>,
    columns: Vec<usize>,
    schema: SchemaRef,
    sql: String,
    params: Row,
}

impl fmt::Debug for SqlScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlScan")
            .field("url", &self.url)
            .field("sql", &self.sql)
            .finish()
    }
}

impl SqlScan {
    fn batch(&self, rows: Vec<Row>) -> Result<RecordBatch, SqlDbError> {
        let count = rows.len();
        let mut cells: Vec<Vec<Value>> = (0..self.columns.len())
            .map(|_| Vec::with_capacity(count))
            .collect();
        for row in rows {
            for (target, value) in cells.iter_mut().zip(row) {
                target.push(value);
            }
        }
        let table = &self.def.name;
        let arrays = self
            .columns
            .iter()
            .zip(&cells)
            .map(|(&i, cells)| {
                let column: &Column = &self.def.columns[i];
                match &column.kind {
                    ColumnKind::Plain(ty) => plain_column(table, &column.name, ty, cells),
                    ColumnKind::Encrypted(enc) => {
                        decrypt_column(table, &column.name, &enc.sql_type, &enc.key, cells)
                    }
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(count)),
        )
        .map_err(|e| SqlDbError::database(format!("reading table {table}"), e))
    }
}

impl PartitionStream for SqlScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let scan = Arc::new(SqlScan {
            url: self.url.clone(),
            def: self.def.clone(),
            columns: self.columns.clone(),
            schema: self.schema.clone(),
            sql: self.sql.clone(),
            params: self.params.clone(),
        });
        builder.spawn(async move {
            let context = format!("reading table {}", scan.def.name);
            let conn = Conn::open(&scan.url).await?;
            // Rows arrive in order on one connection; batches are decrypted in parallel on
            // blocking threads and delivered in order.
            let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
            let (rows_tx, rows_rx) = mpsc::channel::<Vec<Row>>(parallelism + 1);
            let produce = conn.query_chunks(
                &scan.sql,
                scan.params.clone(),
                &context,
                BATCH_ROWS,
                rows_tx,
            );
            let consume = async {
                let chunks = futures::stream::unfold(rows_rx, |mut rx| async move {
                    rx.recv().await.map(|rows| (rows, rx))
                });
                let mut batches = std::pin::pin!(
                    chunks
                        .map(|rows| {
                            let scan = Arc::clone(&scan);
                            tokio::task::spawn_blocking(move || scan.batch(rows))
                        })
                        .buffered(parallelism)
                );
                while let Some(batch) = batches.next().await {
                    let batch = batch.map_err(|e| SqlDbError::database(&context, e))??;
                    if tx.send(Ok(batch)).await.is_err() {
                        break;
                    }
                }
                Ok::<(), SqlDbError>(())
            };
            let (produced, consumed) = tokio::join!(produce, consume);
            consumed?;
            produced?;
            Ok(())
        });
        builder.build()
    }
}

/// Writes inserted rows in one transaction.
struct SqlSink {
    url: DbUrl,
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSink")
            .field("url", &self.url)
            .field("table", &self.def.name)
            .finish()
    }
}

impl DisplayAs for SqlSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SqlSink: table={} url={}", self.def.name, self.url)
    }
}

impl SqlSink {
    fn insert_sql(&self, backend: Backend) -> String {
        let names: Vec<String> = self.def.columns.iter().map(|c| quote(&c.name)).collect();
        let values: Vec<String> = self
            .def
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match (&c.kind, backend) {
                (ColumnKind::Plain(PlainType::Text(_)), Backend::Postgres) => {
                    format!("${}::text::{}", i + 1, c.db_type)
                }
                _ => format!("${}", i + 1),
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&self.def.name),
            names.join(", "),
            values.join(", ")
        )
    }

    /// The rows of a batch as cells, encrypted columns encrypted.
    fn rows(&self, batch: &RecordBatch) -> Result<Vec<Row>, SqlDbError> {
        let table = &self.def.name;
        let columns = self
            .def
            .columns
            .iter()
            .zip(batch.columns())
            .map(|(c, array)| match &c.kind {
                ColumnKind::Plain(ty) => plain_cells(table, &c.name, ty, array),
                ColumnKind::Encrypted(enc) => {
                    encrypt_column(table, &c.name, &enc.sql_type, enc.mode, &enc.key, array)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows: Vec<Row> = (0..batch.num_rows())
            .map(|_| Vec::with_capacity(columns.len()))
            .collect();
        for column in columns {
            for (row, value) in rows.iter_mut().zip(column) {
                row.push(value);
            }
        }
        Ok(rows)
    }

    async fn write(
        &self,
        conn: &Conn,
        mut data: SendableRecordBatchStream,
    ) -> Result<u64, DataFusionError> {
        let sql = self.insert_sql(conn.backend());
        let context = format!("inserting into table {}", self.def.name);
        let mut count = 0;
        while let Some(batch) = data.next().await {
            let rows = self.rows(&batch?)?;
            count += conn.execute_many(&sql, rows, &context).await?;
        }
        Ok(count)
    }
}

#[async_trait]
impl DataSink for SqlSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let conn = Conn::open(&self.url).await?;
        let table = &self.def.name;
        conn.batch("BEGIN", &format!("starting a transaction on table {table}"))
            .await?;
        match self.write(&conn, data).await {
            Ok(count) => {
                conn.batch(
                    "COMMIT",
                    &format!("committing the insert into table {table}"),
                )
                .await?;
                Ok(count)
            }
            Err(e) => {
                // On a lost connection the server has rolled back already.
                let _ = conn.batch("ROLLBACK", "rolling back").await;
                Err(e)
            }
        }
    }
}
