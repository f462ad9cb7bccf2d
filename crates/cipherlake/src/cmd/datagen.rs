//! `cipherlake datagen taxi`: synthetic NYC Yellow Taxi trips.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_engine::datagen::{TaxiEncryption, TaxiOptions, generate_taxi};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::count::parse_count;

/// Generate synthetic data sets.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    dataset: Dataset,
}

#[derive(Debug, clap::Subcommand)]
enum Dataset {
    /// NYC Yellow Taxi trips (2024 schema, realistic distributions) as zstd Parquet files
    /// `part-00000.parquet`… plus `zones.csv`, the 265-row zone table.
    Taxi(TaxiArgs),
}

#[derive(Debug, clap::Args)]
struct TaxiArgs {
    /// Number of trips (accepts 1_000_000, 10M, 1.5B).
    #[arg(long, value_parser = parse_count, default_value = "1M")]
    rows: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Number of Parquet files [default: ~4 M rows each, at least one per thread].
    #[arg(long)]
    files: Option<usize>,
    /// Random seed: the same seed, rows and files give byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads [default: number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Replace an existing dataset in the output directory (the old files are removed only
    /// after the new ones are complete).
    #[arg(long)]
    overwrite: bool,
    /// Write encrypted Parquet (Parquet modular encryption with PKMT1 key material; fresh data
    /// keys per file) under --footer-key and --column-keys through --kms.
    #[arg(long, requires_all = ["kms", "footer_key"])]
    encrypt: bool,
    #[command(flatten)]
    keys: super::parquet::KeyArgs,
    #[command(flatten)]
    kms: super::encrypt::EncryptKmsArgs,
}

/// Runs `cipherlake datagen`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Dataset::Taxi(args) = args.dataset;
    let encryption = if args.encrypt {
        let spec = args.keys.spec()?;
        Some(TaxiEncryption {
            kms: args.kms.require("--encrypt").await?,
            spec,
        })
    } else if args.keys.footer_key.is_some() || !args.keys.column_keys.is_empty() {
        anyhow::bail!("--footer-key and --column-keys need --encrypt")
    } else {
        None
    };
    let options = TaxiOptions {
        rows: args.rows,
        files: args.files,
        seed: args.seed,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        overwrite: args.overwrite,
        encryption,
    };
    let bar = ProgressBar::with_draw_target(Some(args.rows), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {percent:>3}% {human_pos}/{human_len} rows, {per_sec}, eta {eta}",
        )
        .context("progress bar template")?,
    );
    let out = args.out.clone();
    let progress_bar = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        generate_taxi(&out, &options, &|n| progress_bar.inc(n))
    })
    .await
    .context("the generator thread failed")??;
    bar.finish_and_clear();
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "wrote {} trips in {} file(s) to {} ({:.1} MB, {:.2} bytes/row) in {:.2} s ({:.2} M rows/s); zones: {}",
        report.rows,
        report.files.len(),
        args.out.display(),
        report.parquet_bytes as f64 / 1e6,
        report.parquet_bytes as f64 / report.rows.max(1) as f64,
        seconds,
        report.rows as f64 / seconds.max(1e-9) / 1e6,
        report.zones.display(),
    );
    Ok(())
}
