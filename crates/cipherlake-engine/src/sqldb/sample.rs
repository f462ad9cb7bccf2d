//! A ContosoHR-like sample database: an `Employees` table whose `SSN` (char(11),
//! deterministic) and `Salary` (money, randomized) columns are Always Encrypted, filled with
//! reproducible synthetic rows through the engine's encrypting insert.

use std::sync::Arc;

use datafusion::arrow::array::{Decimal128Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::catalog;
use super::conn::{Backend, Conn, Value};
use super::error::SqlDbError;
use super::keystore::KeyStores;
use super::provider::{DatabaseSpec, register_database};
use super::url::DbUrl;

/// The sample table's name.
pub const TABLE: &str = "Employees";

const FIRST: [&str; 12] = [
    "Catherine",
    "Kim",
    "Frances",
    "Jay",
    "Kyle",
    "Kaylee",
    "Ken",
    "Terri",
    "Rob",
    "Gail",
    "Jossef",
    "Dylan",
];
const LAST: [&str; 12] = [
    "Abel",
    "Abercrombie",
    "Adams",
    "Adams",
    "Goldberg",
    "Walters",
    "Sanchez",
    "Duffy",
    "Tamburello",
    "Erickson",
    "Goldberg",
    "Miller",
];
const DEPARTMENTS: [&str; 6] = [
    "Engineering",
    "Finance",
    "Human Resources",
    "Marketing",
    "Sales",
    "Support",
];

/// Creates the `Employees` table with `rows` synthetic employees, encrypting `SSN`
/// (deterministic, char(11)) and `Salary` (randomized, money) under the existing column
/// encryption key `cek`. Returns the number of rows inserted.
pub async fn create_contoso(
    url: &DbUrl,
    stores: &KeyStores,
    cek: &str,
    rows: usize,
) -> Result<u64, SqlDbError> {
    let conn = Conn::open(url).await?;
    catalog::ensure(&conn).await?;
    // Fail before creating anything if the key is unusable.
    catalog::load(&conn).await?.unwrap(cek, stores).await?;
    let (int, bytes, text) = match conn.backend() {
        Backend::Postgres => ("integer", "bytea", "varchar(50)"),
        Backend::Sqlite => ("INTEGER", "BLOB", "TEXT"),
    };
    let context = "creating the sample table Employees";
    conn.batch("BEGIN", context).await?;
    let created = async {
        conn.batch(
            &format!(
                "CREATE TABLE \"{TABLE}\" (\"EmployeeID\" {int} PRIMARY KEY, \"SSN\" {bytes} NOT NULL, \
                 \"FirstName\" {text} NOT NULL, \"LastName\" {text} NOT NULL, \
                 \"Salary\" {bytes} NOT NULL, \"Department\" {text} NOT NULL)"
            ),
            context,
        )
        .await?;
        conn.execute_many(
            "INSERT INTO cipherlake_encrypted_columns (table_name, column_name, column_encryption_key, encryption_type, sql_type) VALUES ($1, $2, $3, $4, $5)",
            [("SSN", "deterministic", "char(11)"), ("Salary", "randomized", "money")]
                .iter()
                .map(|(column, mode, ty)| {
                    [TABLE, column, cek, mode, ty]
                        .iter()
                        .map(|s| Value::Text((*s).to_owned()))
                        .collect()
                })
                .collect(),
            context,
        )
        .await?;
        conn.batch("COMMIT", context).await
    }
    .await;
    if let Err(e) = created {
        let _ = conn.batch("ROLLBACK", context).await;
        return Err(e);
    }
    drop(conn);

    let ctx = SessionContext::new();
    let spec = DatabaseSpec {
        name: "contoso".to_owned(),
        url: url.clone(),
    };
    register_database(&ctx, &spec, stores).await?;
    ctx.register_batch("contoso_rows", employees(rows)?)
        .map_err(|e| SqlDbError::Invalid(e.to_string()))?;
    let insert = format!("INSERT INTO contoso.\"{TABLE}\" SELECT * FROM contoso_rows");
    let fail = |e: datafusion::error::DataFusionError| SqlDbError::database(context, e);
    let batches = ctx
        .sql(&insert)
        .await
        .map_err(fail)?
        .collect()
        .await
        .map_err(fail)?;
    Ok(batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0))
}

/// `rows` reproducible employees.
fn employees(rows: usize) -> Result<RecordBatch, SqlDbError> {
    let mut rng = StdRng::seed_from_u64(20_240_229);
    let ids: Int64Array = (1..=rows as i64).collect();
    let ssn: StringArray = (0..rows)
        .map(|i| {
            let n = 100_000_000 + i as u64 * 7;
            Some(format!(
                "{:03}-{:02}-{:04}",
                n / 1_000_000,
                n / 10_000 % 100,
                n % 10_000
            ))
        })
        .collect();
    let first: StringArray = (0..rows)
        .map(|_| Some(FIRST[rng.random_range(0..FIRST.len())]))
        .collect();
    let last: StringArray = (0..rows)
        .map(|_| Some(LAST[rng.random_range(0..LAST.len())]))
        .collect();
    let salary = (0..rows)
        .map(|_| Some(i128::from(rng.random_range(4_000_000_i64..16_000_000)) * 100))
        .collect::<Decimal128Array>()
        .with_precision_and_scale(19, 4)
        .map_err(|e| SqlDbError::Invalid(e.to_string()))?;
    let department: StringArray = (0..rows)
        .map(|_| Some(DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())]))
        .collect();
    let schema = Schema::new(vec![
        Field::new("EmployeeID", DataType::Int64, false),
        Field::new("SSN", DataType::Utf8, false),
        Field::new("FirstName", DataType::Utf8, false),
        Field::new("LastName", DataType::Utf8, false),
        Field::new("Salary", DataType::Decimal128(19, 4), false),
        Field::new("Department", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(ids),
            Arc::new(ssn),
            Arc::new(first),
            Arc::new(last),
            Arc::new(salary),
            Arc::new(department),
        ],
    )
    .map_err(|e| SqlDbError::Invalid(e.to_string()))
}
