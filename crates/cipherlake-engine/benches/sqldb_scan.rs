//! Scan of a SQLite table with two Always Encrypted columns (deterministic bigint and
//! nvarchar(50)) against the same table in plaintext, through the engine: rows/s of each and
//! their ratio. Rows: CIPHERLAKE_BENCH_ROWS (default 1 000 000); runs: CIPHERLAKE_BENCH_RUNS
//! (default 5, the median is reported).
//!
//! `cargo bench -p cipherlake-engine --bench sqldb_scan`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cipherlake_engine::sqldb::conn::Conn;
use cipherlake_engine::sqldb::custodian::{create_cek, create_cmk};
use cipherlake_engine::sqldb::keystore::LOCAL_PROVIDER;
use cipherlake_engine::sqldb::{DatabaseSpec, KeyStores, register_database};
use datafusion::prelude::SessionContext;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn sql(ctx: &SessionContext, sql: &str) {
    let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn median_scan(ctx: &SessionContext, table: &str, runs: usize) -> Duration {
    let query =
        format!("SELECT count(*), sum(amount), max(character_length(name)) FROM db.{table}");
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let batches = ctx
            .sql(&query)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("scans");
        times.push(start.elapsed());
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }
    times.sort();
    times[runs / 2]
}

fn main() {
    let rows = env_or("CIPHERLAKE_BENCH_ROWS", 1_000_000);
    let runs = env_or("CIPHERLAKE_BENCH_RUNS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite:{}", dir.path().join("bench.db").display());
        let spec: DatabaseSpec = format!("db={url}").parse().expect("spec");
        let conn = Conn::open(&spec.url).await.expect("opens");
        let stores = KeyStores::default();
        let pem = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/always-encrypted/always-encrypted.pem");
        create_cmk(
            &conn,
            &stores,
            "cmk",
            LOCAL_PROVIDER,
            &pem.display().to_string(),
        )
        .await
        .expect("CMK");
        create_cek(&conn, &stores, "cek", "cmk").await.expect("CEK");
        conn.batch(
            "CREATE TABLE plain (id INTEGER, amount INTEGER, name TEXT);
             CREATE TABLE enc (id INTEGER, amount BLOB, name BLOB);
             INSERT INTO cipherlake_encrypted_columns VALUES
               ('enc', 'amount', 'cek', 'deterministic', 'bigint'),
               ('enc', 'name', 'cek', 'deterministic', 'nvarchar(50)');",
            "creating the tables",
        )
        .await
        .expect("tables");
        drop(conn);
        let ctx = SessionContext::new();
        register_database(&ctx, &spec, &stores)
            .await
            .expect("registers");
        for table in ["plain", "enc"] {
            let start = Instant::now();
            sql(
                &ctx,
                &format!(
                    "INSERT INTO db.{table} SELECT value AS id, value * 7 % 100000 AS amount, \
                     concat('customer-', value % 5000) AS name FROM range(0, {rows})"
                ),
            )
            .await;
            eprintln!("loaded {rows} rows into {table} in {:.2?}", start.elapsed());
        }
        let plain = median_scan(&ctx, "plain", runs).await;
        let encrypted = median_scan(&ctx, "enc", runs).await;
        let rate = |d: Duration| rows as f64 / d.as_secs_f64();
        println!("rows: {rows}, runs: {runs} (median)");
        println!(
            "plaintext scan:           {:>8.3} s  {:>12.0} rows/s",
            plain.as_secs_f64(),
            rate(plain)
        );
        println!(
            "two encrypted columns:    {:>8.3} s  {:>12.0} rows/s  ({:.0} cells/s decrypted)",
            encrypted.as_secs_f64(),
            rate(encrypted),
            2.0 * rate(encrypted)
        );
        println!(
            "ratio encrypted/plaintext: {:.2}x",
            encrypted.as_secs_f64() / plain.as_secs_f64()
        );
    });
}
