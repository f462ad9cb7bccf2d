//! Shared helpers of the encryption, interop and spill tests: a local KMS, a sample table with
//! dictionary-encoded and nullable columns, sessions and result formatting.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use cipherlake_crypto::key_material::{KmsClient, LocalKms};
use cipherlake_engine::script::query;
use cipherlake_engine::session::{SessionOptions, new_session};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// The master keys of the tests (the same as in `tests/pyarrow/interop.py`):
/// `kf` = bytes 0..16, `kc` = bytes 32..64, `kl` = bytes 64..80.
pub fn key_list() -> String {
    let b64 = |range: std::ops::Range<u8>| {
        let bytes: Vec<u8> = range.collect();
        base64_encode(&bytes)
    };
    format!("kf:{},kc:{},kl:{}", b64(0..16), b64(32..64), b64(64..80))
}

/// The same ids with different key bytes.
pub fn wrong_key_list() -> String {
    let b64 = |fill: u8, len: usize| base64_encode(&vec![fill; len]);
    format!("kf:{},kc:{},kl:{}", b64(7, 16), b64(8, 32), b64(9, 16))
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A local KMS over `list`.
pub fn kms_from(list: &str) -> Arc<dyn KmsClient> {
    Arc::new(LocalKms::from_key_list(list).expect("valid key list"))
}

/// A session with the test KMS.
pub fn kms_session() -> SessionContext {
    new_session(&SessionOptions {
        kms: Some(kms_from(&key_list())),
        target_partitions: 2,
        ..SessionOptions::default()
    })
}

/// A session without a KMS.
pub fn plain_session() -> SessionContext {
    new_session(&SessionOptions {
        target_partitions: 2,
        ..SessionOptions::default()
    })
}

/// The canary stored in the `note` column.
pub const CANARY: &str = "CANARY-7f3a9c-SECRET";

/// `rows` rows: `id` int64, `city` nullable low-cardinality string (dictionary encoded),
/// `amount` nullable float64, `note` string carrying [`CANARY`].
pub fn sample_batch(rows: usize) -> RecordBatch {
    sample_rows(0..rows)
}

/// Rows `range` of the sample table (see [`sample_batch`]).
fn sample_rows(range: std::ops::Range<usize>) -> RecordBatch {
    let cities = ["Manhattan", "Queens", "Brooklyn", "Bronx"];
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("city", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("note", DataType::Utf8, false),
    ]));
    let id = Int64Array::from_iter_values(range.clone().map(|i| i as i64));
    let city = StringArray::from_iter(range.clone().map(|i| (i % 7 != 3).then(|| cities[i % 4])));
    let amount = Float64Array::from_iter(
        range
            .clone()
            .map(|i| (i % 5 != 0).then_some(i as f64 * 1.25)),
    );
    let note = StringArray::from_iter_values(range.map(|i| format!("{CANARY}-{i}")));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(id),
            Arc::new(city),
            Arc::new(amount),
            Arc::new(note),
        ],
    )
    .expect("valid batch")
}

/// Registers `sample_batch(rows)` as table `src` in `ctx`, in batches of 4096 rows.
pub fn register_sample(ctx: &SessionContext, rows: usize) {
    let batches = (0..rows)
        .step_by(4096)
        .map(|start| sample_rows(start..rows.min(start + 4096)))
        .collect();
    let table = MemTable::try_new(sample_batch(0).schema(), vec![batches]).expect("memory table");
    ctx.register_table("src", Arc::new(table))
        .expect("register table");
}

/// Writes `src` to the file `path` with `COPY` and the given extra options (`'k' 'v'` pairs),
/// in row groups of 300 rows.
pub async fn copy_to(ctx: &SessionContext, path: &Path, options: &[(&str, &str)]) {
    let mut opts = vec!["'format.max_row_group_size' '300'".to_owned()];
    opts.extend(options.iter().map(|(k, v)| format!("'{k}' '{v}'")));
    let sql = format!(
        "COPY (SELECT * FROM src ORDER BY id) TO '{}' STORED AS PARQUET OPTIONS ({})",
        path.display(),
        opts.join(", ")
    );
    query(ctx, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Factory options for writing: footer key and optional column keys plus mode flags.
pub fn crypto_options<'a>(
    column_keys: Option<&'a str>,
    plaintext_footer: bool,
    double_wrapping: bool,
    bits: &'a str,
) -> Vec<(&'static str, &'a str)> {
    let mut options = vec![
        ("format.crypto.factory_options.footer_key", "kf"),
        (
            "format.crypto.factory_options.plaintext_footer",
            if plaintext_footer { "true" } else { "false" },
        ),
        (
            "format.crypto.factory_options.double_wrapping",
            if double_wrapping { "true" } else { "false" },
        ),
        ("format.crypto.factory_options.data_key_bits", bits),
    ];
    if let Some(keys) = column_keys {
        options.push(("format.crypto.factory_options.column_keys", keys));
    }
    options
}

/// All rows of the Parquet file or directory at `path`, ordered by `id`, as a table.
pub async fn read_table(ctx: &SessionContext, path: &Path) -> Result<String, String> {
    let sql = format!(
        "SELECT id, city, amount, note FROM '{}' ORDER BY id",
        path.display()
    );
    let batches = query(ctx, &sql).await.map_err(|e| e.to_string())?;
    Ok(pretty_format_batches(&batches)
        .map_err(|e| e.to_string())?
        .to_string())
}

/// The test KMS, counting its calls.
pub struct CountingKms {
    inner: LocalKms,
    /// Keys wrapped so far.
    pub wraps: std::sync::atomic::AtomicUsize,
    /// Keys unwrapped so far.
    pub unwraps: std::sync::atomic::AtomicUsize,
}

impl CountingKms {
    /// Over [`key_list`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: LocalKms::from_key_list(&key_list()).expect("valid key list"),
            wraps: Default::default(),
            unwraps: Default::default(),
        })
    }
}

impl KmsClient for CountingKms {
    fn wrap_key(
        &self,
        key: &[u8],
        master_key_id: &str,
    ) -> Result<String, cipherlake_crypto::key_material::KmsError> {
        self.wraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.wrap_key(key, master_key_id)
    }

    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, cipherlake_crypto::key_material::KmsError> {
        self.unwraps
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.unwrap_key(wrapped_key, master_key_id)
    }
}
