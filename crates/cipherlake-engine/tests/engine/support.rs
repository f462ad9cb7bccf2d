//! Shared helpers: generated datasets and scalar query results.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use cipherlake_engine::datagen::{TaxiOptions, TaxiReport, generate_taxi};
use cipherlake_engine::script::query;
use datafusion::prelude::SessionContext;

/// Generates `rows` trips into `dir` with `files` files and `seed`.
pub fn generate(dir: &Path, rows: u64, files: usize, seed: u64) -> TaxiReport {
    let options = TaxiOptions {
        rows,
        files: Some(files),
        seed,
        threads: 2,
        overwrite: false,
        encryption: None,
    };
    generate_taxi(dir, &options, &|_| {}).expect("generation succeeds")
}

/// Runs `sql` and returns column `col` of the single result row as f64 (ints widened).
pub async fn scalar(ctx: &SessionContext, sql: &str, col: usize) -> f64 {
    let batches = query(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    let column = batch.column(col);
    assert!(!column.is_null(0), "{sql}: NULL result");
    if let Some(a) = column.as_primitive_opt::<Int64Type>() {
        a.value(0) as f64
    } else {
        column.as_primitive::<Float64Type>().value(0)
    }
}
