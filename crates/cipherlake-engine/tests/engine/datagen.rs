//! The taxi generator: schema, determinism, crash safety and value distributions.

use std::sync::OnceLock;

use cipherlake_engine::bench::register_taxi;
use cipherlake_engine::datagen::{DatagenError, TaxiOptions, generate_taxi, schema, zones};
use cipherlake_engine::session::{SessionOptions, new_session};
use datafusion::prelude::SessionContext;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::support::{generate, scalar};

const ROWS: u64 = 300_000;

/// One shared 300k-row dataset for the distribution tests.
fn dataset() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), ROWS, 2, 7);
        dir
    })
    .path()
}

async fn taxi() -> SessionContext {
    let ctx = new_session(&SessionOptions::default());
    let rows = register_taxi(&ctx, dataset()).await.unwrap();
    assert_eq!(rows, ROWS);
    ctx
}

/// Share of trips matching `predicate`.
async fn share(ctx: &SessionContext, predicate: &str) -> f64 {
    let sql = format!("SELECT avg(CASE WHEN {predicate} THEN 1.0 ELSE 0.0 END) FROM trips");
    scalar(ctx, &sql, 0).await
}

fn assert_near(name: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{name}: {actual:.4}, expected {expected} ± {tolerance}"
    );
}

#[test]
fn same_seed_gives_same_bytes_and_other_seeds_do_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate(a.path(), 70_000, 2, 1);
    generate(b.path(), 70_000, 2, 1);
    generate(c.path(), 70_000, 2, 2);
    for name in ["part-00000.parquet", "part-00001.parquet", "zones.csv"] {
        let bytes = |d: &tempfile::TempDir| std::fs::read(d.path().join(name)).unwrap();
        assert_eq!(
            bytes(&a),
            bytes(&b),
            "{name} differs between identical runs"
        );
        if name != "zones.csv" {
            assert_ne!(bytes(&a), bytes(&c), "{name} ignores the seed");
        }
    }
}

#[test]
fn files_have_the_tlc_schema_and_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let report = generate(dir.path(), 10_000, 1, 3);
    assert_eq!(report.files.len(), 1);
    let reader = SerializedFileReader::new(std::fs::File::open(&report.files[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 10_000);
    let arrow_schema =
        parquet::arrow::parquet_to_arrow_schema(meta.file_metadata().schema_descr(), None).unwrap();
    assert_eq!(arrow_schema.fields(), schema().fields());

    let column = meta.row_group(0).column(0);
    assert!(matches!(
        column.compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    let schema = schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names[0], "VendorID");
    assert_eq!(names[18], "Airport_fee");
    assert_eq!(zones().len(), 265);
    assert_eq!(
        std::fs::read_to_string(&report.zones)
            .unwrap()
            .lines()
            .count(),
        266
    );
}

#[test]
fn existing_dataset_needs_overwrite_and_no_temporary_files_remain() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5_000, 1, 3);
    let again = TaxiOptions {
        rows: 5_000,
        files: Some(3),
        seed: 3,
        threads: 2,
        overwrite: false,
        encryption: None,
    };
    assert!(matches!(
        generate_taxi(dir.path(), &again, &|_| {}),
        Err(DatagenError::Exists { .. })
    ));
    let overwrite = TaxiOptions {
        overwrite: true,
        ..again
    };
    generate_taxi(dir.path(), &overwrite, &|_| {}).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet",
            "zones.csv"
        ]
    );
}

#[test]
fn more_files_than_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = TaxiOptions {
        rows: 2,
        files: Some(3),
        seed: 1,
        threads: 1,
        overwrite: false,
        encryption: None,
    };
    assert!(matches!(
        generate_taxi(dir.path(), &options, &|_| {}),
        Err(DatagenError::Invalid(_))
    ));
}

#[test]
fn an_unwritable_output_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let options = TaxiOptions {
        rows: 10,
        files: Some(1),
        seed: 1,
        threads: 1,
        overwrite: false,
        encryption: None,
    };
    let err = generate_taxi(&file, &options, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

#[tokio::test]
async fn vendor_passenger_ratecode_and_payment_shares() {
    let ctx = taxi().await;
    assert_near("vendor 2", share(&ctx, "VendorID = 2").await, 0.75, 0.01);
    assert_near(
        "passenger_count 1",
        share(&ctx, "passenger_count = 1").await,
        0.73,
        0.01,
    );
    let nulls = share(&ctx, "passenger_count IS NULL").await;
    assert!(
        (0.03..=0.10).contains(&nulls),
        "passenger_count NULL share {nulls}"
    );
    let standard = scalar(&ctx, "SELECT avg(CASE WHEN RatecodeID = 1 THEN 1.0 ELSE 0.0 END) FROM trips WHERE RatecodeID IS NOT NULL", 0).await;
    assert_near("RatecodeID 1 (non-null)", standard, 0.94, 0.01);
    assert_near(
        "payment 1",
        share(&ctx, "payment_type = 1").await,
        0.78,
        0.01,
    );
    assert_near(
        "payment 2",
        share(&ctx, "payment_type = 2").await,
        0.16,
        0.01,
    );
}

#[tokio::test]
async fn nulls_are_correlated() {
    let ctx = taxi().await;
    let inconsistent = scalar(
        &ctx,
        "SELECT count(*) FROM trips WHERE (passenger_count IS NULL) <> (RatecodeID IS NULL) \
         OR (passenger_count IS NULL) <> (store_and_fwd_flag IS NULL) \
         OR (passenger_count IS NULL) <> (congestion_surcharge IS NULL) \
         OR (passenger_count IS NULL) <> (Airport_fee IS NULL) \
         OR (passenger_count IS NULL) <> (payment_type = 0)",
        0,
    )
    .await;
    assert_eq!(inconsistent, 0.0);
}

#[tokio::test]
async fn total_is_the_sum_of_its_parts() {
    let ctx = taxi().await;
    let off = scalar(
        &ctx,
        "SELECT count(*) FROM trips WHERE abs(total_amount - (fare_amount + extra + mta_tax + tip_amount \
         + tolls_amount + improvement_surcharge + coalesce(congestion_surcharge, 0) + coalesce(Airport_fee, 0))) > 0.005",
        0,
    )
    .await;
    assert_eq!(off, 0.0);
}

#[tokio::test]
async fn zones_distance_fares_and_tips() {
    let ctx = taxi().await;
    let manhattan = scalar(
        &ctx,
        "SELECT avg(CASE WHEN z.Borough = 'Manhattan' THEN 1.0 ELSE 0.0 END) FROM trips t JOIN zones z ON t.PULocationID = z.LocationID",
        0,
    )
    .await;
    assert_near("Manhattan pickups", manhattan, 0.90, 0.02);
    let median = scalar(&ctx, "SELECT median(trip_distance) FROM trips", 0).await;
    assert_near("median distance", median, 1.75, 0.15);
    let jfk_flat = scalar(&ctx, "SELECT avg(CASE WHEN abs(fare_amount) = 70 THEN 1.0 ELSE 0.0 END) FROM trips WHERE RatecodeID = 2", 0).await;
    assert!(jfk_flat > 0.99, "JFK flat fare share {jfk_flat}");
    let meter_ok = share(
        &ctx,
        "coalesce(RatecodeID, 0) <> 1 OR round((abs(fare_amount) - 3.0) * 100) % 70 = 0",
    )
    .await;
    assert_eq!(
        meter_ok, 1.0,
        "standard fares follow the meter ($3 + $0.70 units)"
    );
    let cash_tips = scalar(
        &ctx,
        "SELECT sum(abs(tip_amount)) FROM trips WHERE payment_type = 2",
        0,
    )
    .await;
    assert_eq!(cash_tips, 0.0);
    let card_tip = scalar(
        &ctx,
        "SELECT sum(tip_amount) / sum(fare_amount) FROM trips WHERE payment_type = 1",
        0,
    )
    .await;
    assert_near("card tip / fare", card_tip, 0.22, 0.03);
    let airport_fee = share(&ctx, "PULocationID IN (132, 138) AND Airport_fee = 0").await;
    assert_eq!(airport_fee, 0.0, "airport pickups pay the airport fee");
}

#[tokio::test]
async fn pickups_follow_the_day_and_the_year() {
    let ctx = taxi().await;
    let in_2024 = share(&ctx, "extract(year FROM tpep_pickup_datetime) = 2024").await;
    assert!(in_2024 > 0.995, "2024 share {in_2024}");
    let evening = share(&ctx, "extract(hour FROM tpep_pickup_datetime) = 18").await;
    let early = share(&ctx, "extract(hour FROM tpep_pickup_datetime) = 4").await;
    assert!(evening > 4.0 * early, "18h {evening} vs 4h {early}");
    let june = share(
        &ctx,
        "tpep_pickup_datetime >= '2024-06-01' AND tpep_pickup_datetime < '2024-07-01'",
    )
    .await;
    assert_near("June", june, 0.083, 0.01);
    let forward = share(&ctx, "tpep_dropoff_datetime > tpep_pickup_datetime").await;
    assert_eq!(forward, 1.0);
}
