//! `cipherlake datagen taxi`: synthetic NYC Yellow Taxi trips as Parquet, fast enough for
//! billions of rows, byte-for-byte reproducible from a seed.
//!
//! Output: `part-00000.parquet` … (zstd, ~1 M-row row groups) plus `zones.csv`. Every file is
//! written under a hidden temporary name and renamed only when complete, so an interrupted run
//! never leaves a file that looks finished.

mod calendar;
mod categorical;
mod trips;
mod zones;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cipherlake_crypto::key_material::WriterKeks;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

pub use trips::{TripModel, generate_batch, schema};
pub use zones::{ZONES_CSV, zones};

/// Rows generated and handed to the Parquet writer at a time.
const BATCH_ROWS: usize = 64 * 1024;
/// Rows per row group: 16 batches, 1 Mi rows, as pyarrow writes the TLC files.
const ROW_GROUP_ROWS: usize = 16 * BATCH_ROWS;
/// Rows per file when `--files` is not given.
const DEFAULT_ROWS_PER_FILE: u64 = 4 * ROW_GROUP_ROWS as u64;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TaxiOptions {
    /// Total number of trips.
    pub rows: u64,
    /// Number of Parquet files; by default about 4 M rows each, and at least one per thread
    /// when there are enough rows to keep every thread busy.
    pub files: Option<usize>,
    /// RNG seed: the same seed, rows and files give the same bytes.
    pub seed: u64,
    /// Worker threads (files are written in parallel).
    pub threads: usize,
    /// Replace existing `part-*.parquet` files in the output directory.
    pub overwrite: bool,
    /// Write encrypted Parquet (fresh data keys per file); plaintext when `None`.
    pub encryption: Option<TaxiEncryption>,
}

/// How `generate_taxi` encrypts its output.
#[derive(Clone)]
pub struct TaxiEncryption {
    /// The KMS wrapping the data keys.
    pub kms: std::sync::Arc<dyn cipherlake_crypto::key_material::KmsClient>,
    /// Master keys and modes.
    pub spec: crate::encryption::EncryptionSpec,
}

impl std::fmt::Debug for TaxiEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaxiEncryption")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct TaxiReport {
    /// The Parquet files, in order.
    pub files: Vec<PathBuf>,
    /// The zone table written beside them.
    pub zones: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Bytes of Parquet written.
    pub parquet_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatagenError {
    /// A file or directory could not be created, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("writing {path}: {source}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// The output directory already holds a dataset.
    #[error("{dir} already contains part-*.parquet files; pass --overwrite to replace them")]
    Exists {
        /// The output directory.
        dir: PathBuf,
    },
    /// Nonsensical options.
    #[error("{0}")]
    Invalid(String),
    /// The encryption keys of a file could not be made.
    #[error(transparent)]
    Encryption(#[from] crate::encryption::EncryptionError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatagenError + '_ {
    move |source| DatagenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TaxiOptions {
    /// The number of files this run writes.
    pub fn file_count(&self) -> usize {
        if let Some(files) = self.files {
            return files;
        }
        let by_size = self.rows.div_ceil(DEFAULT_ROWS_PER_FILE);
        let by_threads = (self.threads as u64).min(self.rows.div_ceil(ROW_GROUP_ROWS as u64));
        by_size.max(by_threads).max(1) as usize
    }
}

/// Writer settings for generated trips: zstd, 1 Mi-row row groups, page statistics; no
/// dictionary for the timestamps (nearly every value is distinct, so the writer would build a
/// dictionary only to fall back to plain encoding). With `encryption`, the file at `path` gets
/// fresh data keys wrapped through its KMS under the run's KEKs (`keks`).
pub fn writer_properties(
    encryption: Option<&TaxiEncryption>,
    keks: &WriterKeks,
    path: &Path,
) -> Result<WriterProperties, DatagenError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for column in ["tpep_pickup_datetime", "tpep_dropoff_datetime"] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    if let Some(encryption) = encryption {
        let properties = encryption.spec.file_encryption_properties(
            std::sync::Arc::clone(&encryption.kms),
            keks,
            &schema(),
            &path.display().to_string(),
        )?;
        builder = builder.with_file_encryption_properties(properties);
    }
    Ok(builder.build())
}

/// The name of file `index`.
fn part_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

/// Existing dataset files in `dir`.
fn existing_parts(dir: &Path) -> Result<Vec<PathBuf>, DatagenError> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("part-") && name.ends_with(".parquet") {
            parts.push(path);
        }
    }
    Ok(parts)
}

/// Writes the zone table to `path` (temporary name, then rename).
pub fn write_zones(path: &Path) -> Result<(), DatagenError> {
    let tmp = temporary(path);
    fs::write(&tmp, ZONES_CSV).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The hidden temporary name a file is written under before it is renamed into place.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.tmp"))
}

/// Generates the dataset into `out`, calling `progress` with the number of rows just written.
pub fn generate_taxi(
    out: &Path,
    options: &TaxiOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<TaxiReport, DatagenError> {
    let files = options.file_count();
    if files == 0 || options.rows < files as u64 {
        return Err(DatagenError::Invalid(format!(
            "--files {files} needs at least one row per file (got --rows {})",
            options.rows
        )));
    }
    let started = Instant::now();
    fs::create_dir_all(out).map_err(io_err(out))?;
    let old_parts = existing_parts(out)?;
    if !old_parts.is_empty() && !options.overwrite {
        return Err(DatagenError::Exists {
            dir: out.to_path_buf(),
        });
    }

    let model = TripModel::new();
    // One KEK per master key for the whole run, as parquet-java shares them across a write.
    let keks = WriterKeks::default();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let written = Mutex::new(vec![0u64; files]);
    let workers = options.threads.clamp(1, files);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= files || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = temporary(&out.join(part_name(index)));
                    let part = Part {
                        path: &path,
                        index,
                        files,
                    };
                    match write_part(&part, &model, &keks, options, progress, &failed) {
                        Ok(bytes) => written.lock().expect("no panics while locked")[index] = bytes,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .expect("no panics while locked")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("no panics while locked") {
        for index in 0..files {
            let _ = fs::remove_file(temporary(&out.join(part_name(index))));
        }
        return Err(e);
    }

    // All parts complete: retire the old dataset, then move the new one into place.
    for old in old_parts {
        fs::remove_file(&old).map_err(io_err(&old))?;
    }
    let mut paths = Vec::with_capacity(files);
    for index in 0..files {
        let path = out.join(part_name(index));
        fs::rename(temporary(&path), &path).map_err(io_err(&path))?;
        paths.push(path);
    }
    let zones = out.join("zones.csv");
    write_zones(&zones)?;
    Ok(TaxiReport {
        files: paths,
        zones,
        rows: options.rows,
        parquet_bytes: written
            .into_inner()
            .expect("no panics while locked")
            .iter()
            .sum(),
        elapsed: started.elapsed(),
    })
}

/// File `index` of `files`, written at `path`.
struct Part<'a> {
    path: &'a Path,
    index: usize,
    files: usize,
}

/// Writes `part` with keys under the run's `keks`; returns its size in bytes.
fn write_part(
    part: &Part<'_>,
    model: &TripModel,
    keks: &WriterKeks,
    options: &TaxiOptions,
    progress: &(dyn Fn(u64) + Sync),
    cancelled: &AtomicBool,
) -> Result<u64, DatagenError> {
    let &Part { path, index, files } = part;
    let first = options.rows * index as u64 / files as u64;
    let end = options.rows * (index as u64 + 1) / files as u64;
    let schema = schema();
    let file = File::create(path).map_err(io_err(path))?;
    let parquet_err = |source| DatagenError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = ArrowWriter::try_new(
        file,
        schema.clone(),
        Some(writer_properties(options.encryption.as_ref(), keks, path)?),
    )
    .map_err(parquet_err)?;
    let mut row = first;
    let mut batch_index = 0u64;
    while row < end && !cancelled.load(Ordering::Relaxed) {
        let n = (end - row).min(BATCH_ROWS as u64) as usize;
        let stream = ((index as u64) << 32) | batch_index;
        let batch = generate_batch(
            model,
            schema.clone(),
            options.seed,
            stream,
            row,
            n,
            options.rows,
        );
        writer.write(&batch).map_err(parquet_err)?;
        progress(n as u64);
        row += n as u64;
        batch_index += 1;
    }
    writer.close().map_err(parquet_err)?;
    fs::metadata(path).map(|m| m.len()).map_err(io_err(path))
}
