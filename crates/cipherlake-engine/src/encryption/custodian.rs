//! The custodian's tools: encrypt, decrypt and inspect Parquet files outside a query.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherlake_crypto::key_material::{
    FileKeyUnwrapper, KeyMaterial, KmsClient, Wrapping, WriterKeks,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::column_crypto_metadata::ColumnCryptoMetaData;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use super::{EncryptionError, EncryptionSpec, decryption_properties};

/// What [`rewrite`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteReport {
    /// Parquet files rewritten.
    pub files: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Row groups rewritten.
    pub row_groups: usize,
    /// Other files copied unchanged (directory input).
    pub copied: usize,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> EncryptionError {
    EncryptionError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Rewrites the Parquet file or directory `input` to `output`: decrypting with keys from
/// `kms` where the input is encrypted, and encrypting under `spec` with fresh data keys (or
/// writing plaintext when `spec` is `None`). Batches are streamed; row group boundaries and
/// per-column compression are kept. Each output file is written to a temporary name in its
/// directory and renamed when complete. For a directory, `*.parquet` files are rewritten and
/// other regular files (such as the taxi `zones.csv`) are copied unchanged.
pub fn rewrite(
    input: &Path,
    output: &Path,
    kms: Option<Arc<dyn KmsClient>>,
    spec: Option<&EncryptionSpec>,
) -> Result<RewriteReport, EncryptionError> {
    let unwrapper = kms.clone().map(|kms| Arc::new(FileKeyUnwrapper::new(kms)));
    let mut report = RewriteReport::default();
    if input.is_dir() {
        std::fs::create_dir_all(output).map_err(|e| io_error(output, e))?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| io_error(input, e))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| io_error(input, e))?;
        entries.sort();
        for path in entries.into_iter().filter(|p| p.is_file()) {
            let Some(name) = path.file_name() else {
                continue;
            };
            let target = output.join(name);
            if path.extension().is_some_and(|e| e == "parquet") {
                rewrite_file(&path, &target, &unwrapper, kms.clone(), spec, &mut report)?;
            } else {
                std::fs::copy(&path, &target).map_err(|e| io_error(&target, e))?;
                report.copied += 1;
            }
        }
    } else {
        rewrite_file(input, output, &unwrapper, kms, spec, &mut report)?;
    }
    Ok(report)
}

fn reader_options(
    unwrapper: &Option<Arc<FileKeyUnwrapper>>,
    path: &Path,
) -> Result<ArrowReaderOptions, EncryptionError> {
    let props = decryption_properties(unwrapper.clone(), &path.display().to_string())
        .map_err(|e| io_error(path, e))?;
    Ok(ArrowReaderOptions::new().with_file_decryption_properties(props))
}

fn rewrite_file(
    input: &Path,
    output: &Path,
    unwrapper: &Option<Arc<FileKeyUnwrapper>>,
    kms: Option<Arc<dyn KmsClient>>,
    spec: Option<&EncryptionSpec>,
    report: &mut RewriteReport,
) -> Result<(), EncryptionError> {
    let open = || File::open(input).map_err(|e| io_error(input, e));
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        open()?,
        reader_options(unwrapper, input)?,
    )
    .map_err(|e| io_error(input, e))?;
    let metadata = Arc::clone(builder.metadata());
    let schema = Arc::clone(builder.schema());
    let mut props = WriterProperties::builder().set_max_row_group_row_count(None);
    if let Some(row_group) = metadata.row_groups().first() {
        for column in row_group.columns() {
            props =
                props.set_column_compression(column.column_path().clone(), column.compression());
        }
    }
    if let Some(spec) = spec {
        let Some(kms) = kms else {
            return Err(EncryptionError::NoKmsForWrite {
                path: output.display().to_string(),
            });
        };
        let encryption = spec.file_encryption_properties(
            kms,
            &WriterKeks::default(),
            &schema,
            &output.display().to_string(),
        )?;
        props = props.with_file_encryption_properties(encryption);
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".cipherlake-")
        .suffix(".parquet.tmp")
        .tempfile_in(parent)
        .map_err(|e| io_error(output, e))?;
    let file = temp.reopen().map_err(|e| io_error(output, e))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props.build()))
        .map_err(|e| io_error(output, e))?;
    for row_group in 0..metadata.num_row_groups() {
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            open()?,
            reader_options(unwrapper, input)?,
        )
        .and_then(|b| b.with_row_groups(vec![row_group]).build())
        .map_err(|e| io_error(input, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| io_error(input, e))?;
            report.rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(|e| io_error(output, e))?;
        }
        writer.flush().map_err(|e| io_error(output, e))?;
        report.row_groups += 1;
    }
    writer.close().map_err(|e| io_error(output, e))?;
    temp.persist(output)
        .map_err(|e| io_error(output, e.error))?;
    report.files += 1;
    Ok(())
}

/// Describes key metadata without key bytes: master key id and wrapping mode.
fn describe_key(key_metadata: &[u8]) -> String {
    match KeyMaterial::parse(key_metadata) {
        Ok(material) => {
            let wrapping = match material.wrapping {
                Wrapping::Single => "single wrapping",
                Wrapping::Double { .. } => "double wrapping",
            };
            format!(
                "master key {:?} (PKMT1, {wrapping})",
                material.master_key_id
            )
        }
        Err(e) => format!("unreadable key metadata ({e})"),
    }
}

/// A report on the Parquet file at `path`: footer mode, algorithm, row groups and rows, and
/// for each column whether it is encrypted and under which master key. Never prints keys.
/// Files with a plaintext footer are described without a KMS; for an encrypted footer,
/// without a KMS only the footer key material is shown.
pub fn inspect(path: &Path, kms: Option<Arc<dyn KmsClient>>) -> Result<String, EncryptionError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let mut out = String::new();
    let encrypted_footer = bytes.ends_with(b"PARE");
    let _ = writeln!(out, "file: {}", path.display());
    if encrypted_footer {
        let footer = footer_bytes(&bytes).ok_or_else(|| io_error(path, "truncated footer"))?;
        let algorithm = match footer.get(1) {
            Some(0x1c) => "AES_GCM_V1",
            Some(0x2c) => "AES_GCM_CTR_V1 (not supported)",
            _ => "unknown",
        };
        let _ = writeln!(out, "footer: encrypted ({algorithm})");
        if let Some(material) = first_key_material(footer) {
            let _ = writeln!(out, "footer key: {}", describe_key(material));
        }
    } else if bytes.ends_with(b"PAR1") {
        let _ = writeln!(out, "footer: plaintext");
    } else {
        return Err(io_error(path, "not a Parquet file (no PAR1 or PARE magic)"));
    }
    let has_kms = kms.is_some();
    let metadata = match read_metadata(bytes, kms, path) {
        Ok(metadata) => metadata,
        Err(e) if !has_kms => {
            let _ = writeln!(out, "details need the keys (use --kms): {e}");
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    write_metadata(&mut out, &metadata);
    Ok(out)
}

/// Parses the footer of a file, with keys from `kms` when given.
fn read_metadata(
    bytes: Vec<u8>,
    kms: Option<Arc<dyn KmsClient>>,
    path: &Path,
) -> Result<ParquetMetaData, EncryptionError> {
    let reader = match kms {
        Some(kms) => {
            let props = decryption_properties(
                Some(Arc::new(FileKeyUnwrapper::new(kms))),
                &path.display().to_string(),
            )
            .map_err(|e| io_error(path, e))?;
            ParquetMetaDataReader::new().with_decryption_properties(Some(props))
        }
        // A plaintext footer parses without keys; its signature and the metadata of encrypted
        // columns (except their key metadata) stay unchecked and unread.
        None => ParquetMetaDataReader::new(),
    };
    reader
        .parse_and_finish(&bytes::Bytes::from(bytes))
        .map_err(|e| io_error(path, e))
}

fn write_metadata(out: &mut String, metadata: &ParquetMetaData) {
    let rows: i64 = metadata.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let _ = writeln!(out, "row groups: {}", metadata.num_row_groups());
    let _ = writeln!(out, "rows: {rows}");
    let _ = writeln!(out, "columns:");
    if let Some(row_group) = metadata.row_groups().first() {
        for column in row_group.columns() {
            let how = match column.crypto_metadata() {
                None => "plaintext".to_owned(),
                Some(ColumnCryptoMetaData::ENCRYPTION_WITH_FOOTER_KEY) => {
                    "encrypted with the footer key".to_owned()
                }
                Some(ColumnCryptoMetaData::ENCRYPTION_WITH_COLUMN_KEY(key)) => {
                    match &key.key_metadata {
                        Some(km) => format!("encrypted, {}", describe_key(km)),
                        None => "encrypted with a column key (no key metadata)".to_owned(),
                    }
                }
            };
            let _ = writeln!(
                out,
                "  {} ({:?}): {how}",
                column.column_path().string(),
                column.compression()
            );
        }
    }
}

/// The footer bytes (before the 8-byte tail) of a Parquet file.
fn footer_bytes(bytes: &[u8]) -> Option<&[u8]> {
    let len = bytes.len();
    let tail = bytes.get(len.checked_sub(8)?..len - 4)?;
    let footer_len = u32::from_le_bytes(tail.try_into().ok()?) as usize;
    bytes.get(len.checked_sub(8 + footer_len)?..len - 8)
}

/// The first PKMT1 JSON object in `bytes` (the footer key metadata of FileCryptoMetaData).
fn first_key_material(bytes: &[u8]) -> Option<&[u8]> {
    let start = bytes
        .windows(18)
        .position(|w| w == b"{\"keyMaterialType\"")?;
    let end = bytes[start..].iter().position(|&b| b == b'}')?;
    Some(&bytes[start..=start + end])
}
