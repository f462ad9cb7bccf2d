//! Encrypted spill files: sorts and aggregations under a small memory limit spill, and no
//! spill file ever holds the data in plaintext; the file format detects tampering.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cipherlake_engine::session::{SessionOptions, new_session};
use cipherlake_engine::spill::EncryptedTempFileFactory;
use datafusion::execution::TempFileFactory;
use datafusion::physical_plan::{ExecutionPlan, collect};
use futures::StreamExt;

use super::canary_watch::watch;
use super::crypt::{CANARY, register_sample};

/// Spills counted in the metrics of `plan` and its children.
fn spill_count(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.spill_count())
        .unwrap_or_default();
    own + plan.children().into_iter().map(spill_count).sum::<usize>()
}

async fn run_spilling(sql: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = new_session(&SessionOptions {
        target_partitions: 1,
        memory_limit: Some(8 * 1024 * 1024),
        spill_dir: Some(dir.path().to_owned()),
        ..SessionOptions::default()
    });
    register_sample(&ctx, 150_000);
    ctx.sql("SET datafusion.execution.sort_spill_reservation_bytes = 524288")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let watcher = watch(
        dir.path().to_owned(),
        &CANARY.as_bytes()[..12],
        Arc::clone(&stop),
        Arc::clone(&seen),
    );
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await;
    stop.store(true, Ordering::Release);
    watcher.join().expect("no spill file holds the canary");
    let batches = batches.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 150_000, "{sql}");
    assert!(spill_count(&plan) > 0, "{sql}: nothing spilled");
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "{sql}: no spill file observed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_spills_only_ciphertext() {
    run_spilling("SELECT note, city, amount FROM src ORDER BY note DESC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_spills_only_ciphertext() {
    run_spilling("SELECT note, count(*) AS n, sum(amount) FROM src GROUP BY note").await;
}

#[tokio::test]
async fn spill_file_round_trips_while_written_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let factory = EncryptedTempFileFactory::new(Some(dir.path().to_owned()));
    let file = factory.create_temp_file("test").unwrap();
    let mut writer = file.open_writer().unwrap();
    assert!(file.open_writer().is_err(), "a second writer is refused");
    let first = CANARY.repeat(20_000);
    writer.write_all(first.as_bytes()).unwrap();
    writer.flush().unwrap();
    // A reader opened now sees exactly what was flushed (the repartition spill pool does this).
    let read = |file: &Arc<dyn datafusion::execution::SpillFile>| {
        let stream = file.read_stream().unwrap();
        async move {
            let chunks: Vec<_> = stream.collect().await;
            chunks
                .into_iter()
                .map(|c| c.map(|b| b.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.concat())
        }
    };
    assert_eq!(read(&file).await.unwrap(), first.as_bytes());
    writer.write_all(b"tail").unwrap();
    writer.finish().unwrap();
    let mut all = first.clone().into_bytes();
    all.extend_from_slice(b"tail");
    assert_eq!(read(&file).await.unwrap(), all);
    let path = file.path().unwrap().to_owned();
    let on_disk = std::fs::read(&path).unwrap();
    assert!(!on_disk.windows(12).any(|w| w == &CANARY.as_bytes()[..12]));
    assert_eq!(file.size(), Some(on_disk.len() as u64));
    // Flip one byte: authentication fails, naming the file.
    let mut tampered = on_disk.clone();
    tampered[on_disk.len() / 2] ^= 1;
    std::fs::write(&path, &tampered).unwrap();
    let err = read(&file).await.unwrap_err().to_string();
    assert!(err.contains("failed authentication"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    // Truncate: the frames known to be written are missing.
    std::fs::write(&path, &on_disk[..on_disk.len() - 10]).unwrap();
    let err = read(&file).await.unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    drop(writer);
    drop(file);
    assert!(!path.exists(), "spill file deleted when dropped");
}
