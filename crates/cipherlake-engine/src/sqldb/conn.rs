//! One connection to PostgreSQL (tokio-postgres) or SQLite (rusqlite, run on blocking threads)
//! behind one small interface: statements with positional parameters, rows as [`Value`]s.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};

use super::error::SqlDbError;
use super::url::DbUrl;

/// Statements in flight at once on a PostgreSQL connection when inserting many rows.
const PIPELINE_DEPTH: usize = 64;

/// A cell read from or written to a database.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (encrypted cells are bytes).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for Value {
    /// Only the kind: values may be confidential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Value::Null => "Null",
            Value::Bool(_) => "Bool",
            Value::Int(_) => "Int",
            Value::Float(_) => "Float",
            Value::Text(_) => "Text",
            Value::Bytes(_) => "Bytes",
        })
    }
}

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// An open connection.
pub enum Conn {
    /// A PostgreSQL session (its connection task runs on the Tokio runtime).
    Postgres(tokio_postgres::Client),
    /// A SQLite database; statements run on blocking threads.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({:?})", self.backend())
    }
}

/// A row of values.
pub type Row = Vec<Value>;

impl Conn {
    /// Connects to the database at `url`. Errors show the URL without its password.
    pub async fn open(url: &DbUrl) -> Result<Conn, SqlDbError> {
        let fail = |reason: String| SqlDbError::Connect {
            url: url.redacted(),
            reason,
        };
        match url {
            DbUrl::Postgres(text) => {
                let config: tokio_postgres::Config = text
                    .parse()
                    .map_err(|e: tokio_postgres::Error| fail(pg_reason(&e)))?;
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|e| fail(pg_reason(&e)))?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %pg_reason(&e), "PostgreSQL connection ended");
                    }
                });
                Ok(Conn::Postgres(client))
            }
            DbUrl::Sqlite(path) => {
                let path = path.clone();
                let conn = tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(std::time::Duration::from_secs(30))?;
                    Ok::<_, rusqlite::Error>(conn)
                })
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
                Ok(Conn::Sqlite(Arc::new(Mutex::new(conn))))
            }
        }
    }

    /// The kind of database.
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs one or more statements without parameters or results.
    pub async fn batch(&self, sql: &str, context: &str) -> Result<(), SqlDbError> {
        match self {
            Conn::Postgres(client) => client
                .batch_execute(sql)
                .await
                .map_err(|e| SqlDbError::database(context, pg_reason(&e))),
            Conn::Sqlite(conn) => {
                let sql = sql.to_owned();
                sqlite(conn, context, move |c| c.execute_batch(&sql)).await
            }
        }
    }

    /// Runs a statement with parameters `$1, $2, …` once per row of `rows`; returns the
    /// number of rows affected.
    pub async fn execute_many(
        &self,
        sql: &str,
        rows: Vec<Row>,
        context: &str,
    ) -> Result<u64, SqlDbError> {
        match self {
            Conn::Postgres(client) => {
                let fail = |e: tokio_postgres::Error| SqlDbError::database(context, pg_reason(&e));
                let statement = client.prepare(sql).await.map_err(fail)?;
                // Statements sent without waiting for each reply are pipelined on the
                // connection and run in order.
                let statement = &statement;
                futures::stream::iter(rows.into_iter().map(|row| async move {
                    let params = pg_params(&row, statement.params(), context)?;
                    client
                        .execute_raw(
                            statement,
                            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
                        )
                        .await
                        .map_err(fail)
                }))
                .buffered(PIPELINE_DEPTH)
                .try_fold(0, |count, n| async move { Ok(count + n) })
                .await
            }
            Conn::Sqlite(conn) => {
                let sql = sqlite_sql(sql);
                sqlite(conn, context, move |c| {
                    let mut statement = c.prepare_cached(&sql)?;
                    let mut count = 0;
                    for row in &rows {
                        count += statement.execute(rusqlite::params_from_iter(row.iter()))? as u64;
                    }
                    Ok(count)
                })
                .await
            }
        }
    }

    /// Runs a statement with parameters; returns the number of rows affected.
    pub async fn execute(&self, sql: &str, params: Row, context: &str) -> Result<u64, SqlDbError> {
        self.execute_many(sql, vec![params], context).await
    }

    /// Runs a query and collects its rows (for small results such as the key catalog).
    pub async fn query(
        &self,
        sql: &str,
        params: Row,
        context: &str,
    ) -> Result<Vec<Row>, SqlDbError> {
        let (tx, mut rx) = mpsc::channel(4);
        let collect = async move {
            let mut rows = Vec::new();
            while let Some(chunk) = rx.recv().await {
                rows.extend(chunk);
            }
            rows
        };
        let (done, rows) = tokio::join!(self.query_chunks(sql, params, context, 1024, tx), collect);
        done.map(|()| rows)
    }

    /// Runs a query with parameters `$1, $2, …` and sends its rows to `tx` in chunks of up
    /// to `chunk` rows as they arrive. Stops early, without error, when `tx` is closed.
    pub async fn query_chunks(
        &self,
        sql: &str,
        params: Row,
        context: &str,
        chunk: usize,
        tx: mpsc::Sender<Vec<Row>>,
    ) -> Result<(), SqlDbError> {
        let chunk = chunk.max(1);
        match self {
            Conn::Postgres(client) => {
                let fail = |e: tokio_postgres::Error| SqlDbError::database(context, pg_reason(&e));
                let statement = client.prepare(sql).await.map_err(fail)?;
                let params = pg_params(&params, statement.params(), context)?;
                let stream = client
                    .query_raw(
                        &statement,
                        params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
                    )
                    .await
                    .map_err(fail)?;
                let mut stream = std::pin::pin!(stream);
                let mut rows = Vec::with_capacity(chunk);
                while let Some(row) = stream.next().await {
                    rows.push(pg_row(&row.map_err(fail)?, context)?);
                    if rows.len() == chunk
                        && tx
                            .send(std::mem::replace(&mut rows, Vec::with_capacity(chunk)))
                            .await
                            .is_err()
                    {
                        return Ok(());
                    }
                }
                if !rows.is_empty() {
                    let _ = tx.send(rows).await;
                }
                Ok(())
            }
            Conn::Sqlite(conn) => {
                let sql = sqlite_sql(sql);
                let context_owned = context.to_owned();
                let conn = Arc::clone(conn);
                tokio::task::spawn_blocking(move || {
                    let fail = |e: rusqlite::Error| SqlDbError::database(&context_owned, e);
                    let conn = conn.lock().map_err(|_| {
                        SqlDbError::database(&context_owned, "connection poisoned by a panic")
                    })?;
                    let mut statement = conn.prepare(&sql).map_err(fail)?;
                    let columns = statement.column_count();
                    let mut cursor = statement
                        .query(rusqlite::params_from_iter(params.iter()))
                        .map_err(fail)?;
                    let mut rows = Vec::with_capacity(chunk);
                    while let Some(row) = cursor.next().map_err(fail)? {
                        let values = (0..columns)
                            .map(|i| row.get_ref(i).map(sqlite_value))
                            .collect::<Result<Row, _>>()
                            .map_err(fail)?;
                        rows.push(values);
                        if rows.len() == chunk
                            && tx
                                .blocking_send(std::mem::replace(
                                    &mut rows,
                                    Vec::with_capacity(chunk),
                                ))
                                .is_err()
                        {
                            return Ok(());
                        }
                    }
                    if !rows.is_empty() {
                        let _ = tx.blocking_send(rows);
                    }
                    Ok(())
                })
                .await
                .map_err(|e| SqlDbError::database(context, e))?
            }
        }
    }
}

/// Runs `f` with the SQLite connection on a blocking thread.
async fn sqlite<T: Send + 'static>(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    context: &str,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
) -> Result<T, SqlDbError> {
    let conn = Arc::clone(conn);
    let result = tokio::task::spawn_blocking(move || match conn.lock() {
        Ok(mut c) => f(&mut c).map_err(|e| e.to_string()),
        Err(_) => Err("connection poisoned by a panic".to_owned()),
    })
    .await
    .map_err(|e| SqlDbError::database(context, e))?;
    result.map_err(|e| SqlDbError::database(context, e))
}

/// PostgreSQL placeholders (`$1`) as SQLite's numbered parameters (`?1`).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A driver error's message: severity and message for errors the server reported.
pub fn pg_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

/// A PostgreSQL parameter of type `ty` holding `v`, if `v` fits the type.
fn pg_param(v: &Value, ty: &Type) -> Option<Box<dyn ToSql + Sync + Send>> {
    fn boxed<T: ToSql + Sync + Send + 'static>(v: Option<T>) -> Box<dyn ToSql + Sync + Send> {
        Box::new(v)
    }
    /// `Ok(None)` for NULL, `Ok(Some(x))` when `get` converts, `Err(())` otherwise.
    fn cell<T>(v: &Value, get: impl FnOnce(&Value) -> Option<T>) -> Result<Option<T>, ()> {
        match v {
            Value::Null => Ok(None),
            other => get(other).map(Some).ok_or(()),
        }
    }
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    };
    let float = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    };
    let param = match *ty {
        Type::BOOL => cell(v, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
        .map(boxed),
        Type::INT2 => cell(v, |v| i16::try_from(int(v)?).ok()).map(boxed),
        Type::INT4 => cell(v, |v| i32::try_from(int(v)?).ok()).map(boxed),
        Type::INT8 => cell(v, int).map(boxed),
        Type::FLOAT4 => cell(v, |v| float(v).map(|f| f as f32)).map(boxed),
        Type::FLOAT8 => cell(v, float).map(boxed),
        Type::BYTEA => cell(v, |v| match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        })
        .map(boxed),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            cell(v, |v| match v {
                Value::Text(t) => Some(t.clone()),
                Value::Int(i) => Some(i.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .map(boxed)
        }
        _ => Err(()),
    };
    param.ok()
}

fn pg_params(
    row: &[Value],
    types: &[Type],
    context: &str,
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, SqlDbError> {
    row.iter()
        .zip(types)
        .enumerate()
        .map(|(i, (v, ty))| {
            pg_param(v, ty).ok_or_else(|| {
                SqlDbError::database(
                    context,
                    format!(
                        "parameter {} of type {ty}: cannot bind a {v:?} value",
                        i + 1
                    ),
                )
            })
        })
        .collect()
}

fn pg_row(row: &tokio_postgres::Row, context: &str) -> Result<Row, SqlDbError> {
    let fail = |e: tokio_postgres::Error| SqlDbError::database(context, pg_reason(&e));
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match *column.type_() {
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)
                    .map(|v| v.map(Value::Bool)),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)
                    .map(|v| v.map(|x| Value::Int(x.into()))),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)
                    .map(|v| v.map(|x| Value::Int(x.into()))),
                Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
                Type::FLOAT4 => row
                    .try_get::<_, Option<f32>>(i)
                    .map(|v| v.map(|x| Value::Float(x.into()))),
                Type::FLOAT8 => row
                    .try_get::<_, Option<f64>>(i)
                    .map(|v| v.map(Value::Float)),
                Type::BYTEA => row
                    .try_get::<_, Option<Vec<u8>>>(i)
                    .map(|v| v.map(Value::Bytes)),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                    .try_get::<_, Option<String>>(i)
                    .map(|v| v.map(Value::Text)),
                ref other => {
                    return Err(SqlDbError::database(
                        context,
                        format!("column {}: unsupported type {other}", column.name()),
                    ));
                }
            };
            Ok(value.map_err(fail)?.unwrap_or(Value::Null))
        })
        .collect()
}
