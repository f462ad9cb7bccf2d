//! Distributed queries return what a single process returns: the taxi suite over plaintext
//! and encrypted Parquet, stages spread over two loopback workers; each worker reads
//! encrypted files only through its own KMS; spills on workers are ciphertext.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow::util::pretty::pretty_format_batches;
use cipherlake_cluster::driver::distributed_session;
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::datagen::{TaxiEncryption, TaxiOptions, generate_taxi, write_zones};
use cipherlake_engine::encryption::{EncryptionSpec, KmsSpec};
use cipherlake_engine::script::query;
use cipherlake_engine::session::{SessionOptions, new_session};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use datafusion_distributed::display_plan_ascii;

use crate::canary_watch::watch;
use crate::support::{PolicyCa, driver, start_worker, start_worker_with};

/// The taxi suite, float aggregates rounded (summation order differs between plans).
const SUITE: &[&str] = &[
    "SELECT count(*) FROM trips",
    "SELECT count(*) FROM trips WHERE total_amount >= 0",
    "SELECT VendorID, count(*) FROM trips GROUP BY 1",
    "SELECT passenger_count, round(avg(total_amount), 6) FROM trips GROUP BY 1",
    "SELECT passenger_count, extract(year FROM tpep_pickup_datetime) AS y, count(*) FROM trips GROUP BY 1, 2",
    "SELECT passenger_count, extract(year FROM tpep_pickup_datetime) AS y, CAST(round(trip_distance) AS INT) AS d, count(*) AS c FROM trips GROUP BY 1, 2, 3 ORDER BY y, c DESC",
    "SELECT count(*), round(sum(fare_amount), 4) FROM trips WHERE tpep_pickup_datetime >= '2024-06-01' AND tpep_pickup_datetime < '2024-07-01' AND trip_distance > 5",
    "SELECT z.Borough, count(*), round(avg(t.tip_amount), 6) FROM trips t JOIN zones z ON t.PULocationID = z.LocationID GROUP BY 1 ORDER BY 2 DESC",
    "SELECT PULocationID, DOLocationID, count(*) AS c, round(avg(total_amount), 6) FROM trips GROUP BY 1, 2 ORDER BY c DESC, 1, 2 LIMIT 10",
];

/// Result rows as sorted text lines (row order is only defined where the query orders).
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = query(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

async fn register(ctx: &SessionContext, data: &Path) {
    ctx.register_parquet(
        "trips",
        data.join("trips").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx.register_csv(
        "zones",
        data.join("zones.csv").to_str().unwrap(),
        CsvReadOptions::new().has_header(true),
    )
    .await
    .unwrap();
}

fn generate(data: &Path, encryption: Option<TaxiEncryption>) {
    let options = TaxiOptions {
        rows: 120_000,
        files: Some(4),
        seed: 7,
        threads: 2,
        overwrite: false,
        encryption,
    };
    generate_taxi(&data.join("trips"), &options, &|_| {}).unwrap();
    write_zones(&data.join("zones.csv")).unwrap();
}

fn local_kms(dir: &Path) -> Arc<dyn KmsClient> {
    let keys = dir.join("keys.txt");
    std::fs::write(
        &keys,
        "kf:AAECAwQFBgcICQoLDA0ODw==\nkc:EBESExQVFhcYGRobHB0eHw==\n",
    )
    .unwrap();
    KmsSpec::Local(keys).open().unwrap()
}

/// Runs the suite single-process and on two workers; asserts equal results and that the
/// plans really are distributed.
async fn suite_matches(
    data: &Path,
    driver_kms: Option<Arc<dyn KmsClient>>,
    worker_kms: Option<Arc<dyn KmsClient>>,
) {
    let ca = PolicyCa::new("analytics");
    let w1 = start_worker(&ca, worker_kms.clone()).await;
    let w2 = start_worker(&ca, worker_kms).await;
    let session = SessionOptions {
        kms: driver_kms,
        ..SessionOptions::default()
    };
    let single = new_session(&session);
    register(&single, data).await;
    let distributed = distributed_session(&session, &driver(&ca, &[&w1, &w2])).unwrap();
    register(&distributed, data).await;
    for sql in SUITE {
        let plan = distributed
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = display_plan_ascii(plan.as_ref(), false);
        // A count answered from file statistics scans nothing and stays on the driver.
        let scans = shown.contains("DataSourceExec");
        assert!(
            !scans || shown.contains("Stage"),
            "{sql} is not distributed:\n{shown}"
        );
        assert_eq!(
            rows(&single, sql).await,
            rows(&distributed, sql).await,
            "{sql}"
        );
    }
    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_taxi_suite_on_two_workers_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), None);
    suite_matches(dir.path(), None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_parquet_is_read_by_each_worker_through_its_own_kms() {
    let dir = tempfile::tempdir().unwrap();
    let kms = local_kms(dir.path());
    let mut spec = EncryptionSpec::new("kf");
    spec.column_keys = vec![(
        "kc".to_owned(),
        vec!["total_amount".to_owned(), "tip_amount".to_owned()],
    )];
    generate(
        dir.path(),
        Some(TaxiEncryption {
            kms: Arc::clone(&kms),
            spec,
        }),
    );
    suite_matches(dir.path(), Some(Arc::clone(&kms)), Some(kms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_kms_grants_cannot_read_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let kms = local_kms(dir.path());
    generate(
        dir.path(),
        Some(TaxiEncryption {
            kms: Arc::clone(&kms),
            spec: EncryptionSpec::new("kf"),
        }),
    );
    let ca = PolicyCa::new("analytics");
    let w1 = start_worker(&ca, None).await;
    let w2 = start_worker(&ca, None).await;
    let session = SessionOptions {
        kms: Some(kms),
        ..SessionOptions::default()
    };
    let ctx = distributed_session(&session, &driver(&ca, &[&w1, &w2])).unwrap();
    register(&ctx, dir.path()).await;
    let err = query(&ctx, "SELECT sum(total_amount) FROM trips")
        .await
        .expect_err("the driver's keys never reach the workers");
    let err = err.to_string();
    assert!(err.contains("worker https://127.0.0.1:"), "{err}");
    assert!(err.contains("KMS"), "{err}");
    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
}

const CANARY: &str = "CANARY-5d1e-DISTRIBUTED";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_spill_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("notes");
    std::fs::create_dir(&data).unwrap();
    let writer = new_session(&SessionOptions::default());
    for part in 0..4 {
        query(
            &writer,
            &format!(
                "COPY (SELECT '{CANARY}-' || CAST(i AS VARCHAR) AS note, i FROM generate_series({}, {}) AS t(i)) TO '{}' STORED AS PARQUET",
                part * 100_000,
                part * 100_000 + 99_999,
                data.join(format!("part-{part}.parquet")).display()
            ),
        )
        .await
        .unwrap();
    }
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let ca = PolicyCa::new("analytics");
    let workers: Vec<_> = (0..2)
        .map(|_| {
            start_worker_with(
                ca.identity("worker"),
                None,
                Some(16 * 1024 * 1024),
                Some(spill.clone()),
            )
        })
        .collect();
    let ctx = distributed_session(
        &SessionOptions::default(),
        &driver(&ca, &workers.iter().collect::<Vec<_>>()),
    )
    .unwrap();
    ctx.register_parquet(
        "notes",
        data.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let watcher = watch(
        spill.clone(),
        CANARY.as_bytes(),
        Arc::clone(&stop),
        Arc::clone(&seen),
    );
    let result = query(
        &ctx,
        "SELECT count(*), sum(n) FROM (SELECT note, count(*) AS n, sum(i) FROM notes GROUP BY note)",
    )
    .await;
    stop.store(true, Ordering::Release);
    watcher.join().expect("no spill file holds the canary");
    let text = pretty_format_batches(&result.unwrap()).unwrap().to_string();
    assert!(text.contains("| 400000   | 400000 |"), "{text}");
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the workers did not spill"
    );
    for worker in workers {
        worker.stop().await.unwrap();
    }
}
