//! Encrypted spill files: sorts and aggregations under a small memory limit spill, and no
//! spill file ever holds the data in plaintext; the file format detects tampering.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cipherlake_engine::script::run_script;
use cipherlake_engine::session::{SessionOptions, new_session};
use cipherlake_engine::spill::{EncryptedTempFileFactory, SpillLimit};
use datafusion::execution::TempFileFactory;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::canary_watch::{walk, watch};
use super::crypt::{CANARY, register_sample};

/// Spills counted in the metrics of `plan` and its children.
fn spill_count(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.spill_count())
        .unwrap_or_default();
    own + plan.children().into_iter().map(spill_count).sum::<usize>()
}

/// A session over 150,000 sample rows whose 8 MiB memory limit makes sorts and aggregations
/// spill into `dir`, after running `setup` as a job's script would.
async fn spilling_session(dir: &std::path::Path, setup: &str) -> SessionContext {
    let ctx = new_session(&SessionOptions {
        target_partitions: 1,
        memory_limit: Some(8 * 1024 * 1024),
        spill_dir: Some(dir.to_owned()),
        ..SessionOptions::default()
    });
    register_sample(&ctx, 150_000);
    let script = format!("SET datafusion.execution.sort_spill_reservation_bytes = 524288; {setup}");
    run_script(&ctx, &script, &mut |_| Ok(()))
        .await
        .unwrap_or_else(|e| panic!("{setup}: {e}"));
    ctx
}

/// Runs `sql` after `setup`: it must spill, into the session's spill directory, and never the
/// canary in plaintext.
async fn run_spilling_after(setup: &str, sql: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_session(dir.path(), setup).await;
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
        "{sql}: no spill file observed in the encrypted spill directory"
    );
}

async fn run_spilling(sql: &str) {
    run_spilling_after("", sql).await;
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
    let factory = EncryptedTempFileFactory::new(Some(dir.path().to_owned()), Arc::default());
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

/// DataFusion applies `SET`/`RESET datafusion.runtime.max_temp_directory_size` by rebuilding
/// the disk manager from defaults, which would spill in plaintext to the system's temporary
/// directory. In a cipherlake session it sets the encrypted spill limit instead, and spills
/// stay encrypted where the operator put them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_spill_limit_keeps_spills_encrypted() {
    let sort = "SELECT note, city, amount FROM src ORDER BY note DESC";
    run_spilling_after(
        "SET datafusion.runtime.max_temp_directory_size = '10G'",
        sort,
    )
    .await;
    run_spilling_after("RESET datafusion.runtime.max_temp_directory_size", sort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_spilling_beyond_the_limit_fails_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_session(
        dir.path(),
        "SET datafusion.runtime.max_temp_directory_size = '64K'",
    )
    .await;
    let err = run_script(
        &ctx,
        "SELECT note, city, amount FROM src ORDER BY note DESC",
        &mut |_| Ok(()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("would exceed the session's limit of 64.0 KB"),
        "{err}"
    );
    assert!(
        err.contains("datafusion.runtime.max_temp_directory_size"),
        "{err}"
    );
    assert_eq!(walk(dir.path()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn sql_cannot_move_spills_or_lift_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_session(dir.path(), "").await;
    for (statement, reason) in [
        (
            "SET datafusion.runtime.temp_directory = '/tmp'",
            "--spill-dir",
        ),
        ("RESET datafusion.runtime.temp_directory", "--spill-dir"),
        (
            "SET DataFusion.Runtime.Temp_Directory = '/tmp'",
            "--spill-dir",
        ),
        (
            "SET datafusion.runtime.memory_limit = '100G'",
            "--memory-limit",
        ),
        ("RESET datafusion.runtime.memory_limit", "--memory-limit"),
        (
            "SET datafusion.runtime.no_such_setting = '1'",
            "not a runtime setting",
        ),
    ] {
        let err = run_script(&ctx, statement, &mut |_| Ok(()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot be changed from SQL"),
            "{statement}: {err}"
        );
        assert!(err.contains(reason), "{statement}: {err}");
    }
}

/// The cache limits keep the disk manager and the memory pool: DataFusion applies them, and
/// the session still spills, encrypted, into its own directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_settings_keep_spills_encrypted() {
    run_spilling_after(
        "SET datafusion.runtime.metadata_cache_limit = '10M'",
        "SELECT note, city, amount FROM src ORDER BY note DESC",
    )
    .await;
}

#[tokio::test]
async fn the_limit_counts_every_file_and_frees_deleted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let limit = Arc::new(SpillLimit::new(600 * 1024));
    let factory = EncryptedTempFileFactory::new(Some(dir.path().to_owned()), Arc::clone(&limit));
    let first = factory.create_temp_file("first").unwrap();
    let second = factory.create_temp_file("second").unwrap();
    let frame = vec![7u8; 256 * 1024];
    let mut a = first.open_writer().unwrap();
    a.write_all(&frame).unwrap();
    a.finish().unwrap();
    let mut b = second.open_writer().unwrap();
    b.write_all(&frame).unwrap();
    b.finish().unwrap();
    assert_eq!(limit.used(), first.size().unwrap() + second.size().unwrap());
    // A third frame would pass 600 KiB in total, though each file alone is below it.
    let err = b.write_all(&frame).unwrap_err().to_string();
    assert!(err.contains("would exceed the session's limit"), "{err}");
    drop(a);
    drop(first);
    assert_eq!(
        limit.used(),
        second.size().unwrap(),
        "a deleted file's bytes are freed"
    );
    b.write_all(&frame).unwrap();
    b.finish().unwrap();
    drop(b);
    drop(second);
    assert_eq!(limit.used(), 0);
}
