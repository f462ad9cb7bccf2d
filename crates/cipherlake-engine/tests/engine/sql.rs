//! SQL over Parquet, CSV and Delta tables, scripts, and the error cases users hit first.

use std::sync::Arc;

use arrow::array::{Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cipherlake_engine::EngineError;
use cipherlake_engine::script::query;
use cipherlake_engine::session::{SessionOptions, new_session};
use cipherlake_engine::tables::{TableFormat, TableSpec, register_table};
use datafusion::prelude::SessionContext;

use super::support::{generate, scalar};

fn session() -> SessionContext {
    new_session(&SessionOptions::default())
}

async fn register(ctx: &SessionContext, arg: &str) -> Result<TableFormat, EngineError> {
    register_table(ctx, &arg.parse()?).await
}

#[tokio::test]
async fn parquet_file_directory_and_file_url_with_mixed_case_columns() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 20_000, 2, 5);
    let ctx = session();
    assert_eq!(
        register(&ctx, &format!("trips={}", dir.path().display()))
            .await
            .unwrap(),
        TableFormat::Parquet
    );
    let url = format!(
        "one=file://{}",
        dir.path().join("part-00001.parquet").display()
    );
    register(&ctx, &url).await.unwrap();
    assert_eq!(
        scalar(&ctx, "SELECT count(*) FROM trips", 0).await,
        20_000.0
    );
    assert_eq!(scalar(&ctx, "SELECT count(*) FROM one", 0).await, 10_000.0);
    // Unquoted mixed-case identifiers, as Spark and DuckDB users write them.
    let vendors = scalar(
        &ctx,
        "SELECT count(DISTINCT VendorID) FROM trips WHERE PULocationID > 0 AND Airport_fee >= 0",
        0,
    )
    .await;
    assert!(vendors >= 2.0);
}

#[tokio::test]
async fn csv_tables_are_in_memory_and_join_with_parquet() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 20_000, 1, 5);
    let ctx = session();
    register(&ctx, &format!("trips={}", dir.path().display()))
        .await
        .unwrap();
    assert_eq!(
        register(
            &ctx,
            &format!("zones={}", dir.path().join("zones.csv").display())
        )
        .await
        .unwrap(),
        TableFormat::Csv
    );
    assert_eq!(scalar(&ctx, "SELECT count(*) FROM zones", 0).await, 265.0);
    let joined = scalar(
        &ctx,
        "SELECT count(*) FROM trips t JOIN zones z ON t.PULocationID = z.LocationID",
        0,
    )
    .await;
    assert_eq!(joined, 20_000.0);
    // The planner knows the CSV table's size, so the zone table is the hash join's build side.
    let plan = query(
        &ctx,
        "EXPLAIN SELECT count(*) FROM trips t JOIN zones z ON t.PULocationID = z.LocationID",
    )
    .await
    .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    let join = text
        .lines()
        .position(|l| l.contains("HashJoinExec"))
        .expect("hash join");
    let build = text
        .lines()
        .skip(join + 1)
        .find(|l| l.contains("DataSourceExec") || l.contains("MemoryExec"))
        .unwrap();
    assert!(
        !build.contains(".parquet"),
        "the trips side should not be the build side:\n{text}"
    );
}

fn small_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("Name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            Arc::new(Float64Array::from(vec![1.5, 2.5, 3.0])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn delta_tables_by_path_and_by_create_external_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(vec![small_batch()])
        .await
        .unwrap();
    let ctx = session();
    assert_eq!(
        register(&ctx, &format!("d={}", dir.path().display()))
            .await
            .unwrap(),
        TableFormat::Delta
    );
    assert_eq!(
        scalar(&ctx, "SELECT sum(amount) FROM d WHERE Name IS NOT NULL", 0).await,
        4.5
    );
    let script = format!(
        "CREATE EXTERNAL TABLE d2 STORED AS DELTATABLE LOCATION '{}'; SELECT count(*) FROM d2",
        dir.path().display()
    );
    assert_eq!(scalar(&ctx, &script, 0).await, 3.0);
}

#[tokio::test]
async fn scripts_create_query_and_copy() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 10_000, 1, 9);
    let out = dir.path().join("out");
    let ctx = session();
    let script = format!(
        "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{data}/part-00000.parquet';\n\
         CREATE EXTERNAL TABLE zones STORED AS CSV LOCATION '{data}/zones.csv' OPTIONS ('format.has_header' 'true');\n\
         COPY (SELECT z.Borough, count(*) AS trips FROM trips t JOIN zones z ON t.PULocationID = z.LocationID GROUP BY 1)\n\
           TO '{out}/' STORED AS PARQUET;\n\
         SELECT sum(trips) FROM '{out}/'",
        data = dir.path().display(),
        out = out.display()
    );
    assert_eq!(scalar(&ctx, &script, 0).await, 10_000.0);
}

#[tokio::test]
async fn a_missing_table_is_named() {
    let err = query(&session(), "SELECT 1;\nSELECT * FROM nowhere")
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Statement { index: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn a_bad_path_is_named() {
    let err = register(&session(), "trips=/no/such/dir")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::Table { .. }));
    assert!(
        text.contains("trips") && text.contains("/no/such/dir"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let err = register(&session(), &format!("t={}", dir.path().display()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no .parquet or .csv files"),
        "{err}"
    );
    let err = register(
        &session(),
        &format!("t={}", dir.path().join("notes.txt").display()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unknown file type"), "{err}");
}

#[tokio::test]
async fn a_corrupt_parquet_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.parquet"), b"PAR1 this is not parquet").unwrap();
    let ctx = session();
    let result = match register(
        &ctx,
        &format!("t={}", dir.path().join("bad.parquet").display()),
    )
    .await
    {
        Ok(_) => query(&ctx, "SELECT count(*) FROM t").await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = result.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("parquet"), "{err}");
}

#[tokio::test]
async fn a_syntax_error_gives_line_and_column() {
    let err = query(&session(), "SELECT 1;\nSELECT count(* FROM t")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("Line: 2"), "{err}");
}

#[test]
fn table_arguments_are_checked() {
    let err = "trips".parse::<TableSpec>().unwrap_err();
    assert!(err.to_string().contains("NAME=PATH_OR_URL"), "{err}");
}
