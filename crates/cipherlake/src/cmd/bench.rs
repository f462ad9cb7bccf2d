//! `cipherlake bench taxi`: the taxi query suite over hot runs.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_engine::bench::{register_taxi, run_taxi_suite};
use cipherlake_engine::session::{SessionOptions, new_session};

/// Run benchmark suites.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, clap::Subcommand)]
enum Suite {
    /// The NYC taxi query suite (Q0a…Q7) over `datagen taxi` output: per query the median and
    /// minimum wall time of hot runs and the rows scanned per second per core.
    Taxi(TaxiArgs),
}

#[derive(Debug, clap::Args)]
struct TaxiArgs {
    /// Directory written by `cipherlake datagen taxi` (Parquet files and zones.csv).
    #[arg(long)]
    data: PathBuf,
    /// Timed runs per query, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only these queries (comma-separated ids, e.g. Q1,Q6).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Threads (DataFusion target partitions) [default: number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// The KMS for encrypted data; encrypted files need no other option.
    #[command(flatten)]
    kms: super::workload::KmsArgs,
}

/// Runs `cipherlake bench`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Suite::Taxi(args) = args.suite;
    let mut options = SessionOptions {
        kms: args.kms.open().await?,
        ..SessionOptions::default()
    };
    if let Some(threads) = args.threads {
        options.target_partitions = threads;
    }
    let ctx = new_session(&options);
    let rows = register_taxi(&ctx, &args.data).await?;
    println!(
        "taxi suite: {rows} trips, {} thread(s), {} hot run(s) per query",
        options.target_partitions, args.runs
    );
    println!(
        "{:<5} {:>12} {:>12} {:>18}",
        "query", "median ms", "min ms", "M rows/s/core"
    );
    let report = run_taxi_suite(&ctx, rows, args.runs, &args.queries, &mut |t| {
        println!(
            "{:<5} {:>12.1} {:>12.1} {:>18.1}",
            t.id,
            t.median_ms,
            t.min_ms,
            t.rows_per_sec_per_core / 1e6
        );
    })
    .await?;
    if let Some(path) = &args.json {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
