//! Encrypted Parquet through the session's encryption factory: round trips in every mode,
//! missing and wrong keys, tampering, unsupported variants.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::util::pretty::pretty_format_batches;
use cipherlake_crypto::key_material::{
    FileKeyUnwrapper, FileKeyWrapper, KeyWrappingOptions, WriterKeks,
};
use cipherlake_engine::encryption::{EncryptionSpec, decryption_properties, open_kms};
use cipherlake_engine::session::{SessionOptions, new_session};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;

use super::canary_watch::walk;
use super::crypt::{
    CountingKms, copy_to, crypto_options, key_list, kms_from, kms_session, plain_session,
    read_table, register_sample, sample_batch, wrong_key_list,
};

const ROWS: usize = 1000;

/// The plaintext result every encrypted read must equal.
async fn expected() -> String {
    let dir = tempfile::tempdir().unwrap();
    let ctx = plain_session();
    register_sample(&ctx, ROWS);
    let path = dir.path().join("plain.parquet");
    copy_to(&ctx, &path, &[]).await;
    read_table(&ctx, &path).await.unwrap()
}

fn is_encrypted_file(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.ends_with(b"PARE") || !bytes.windows(12).any(|w| w == b"CANARY-7f3a9")
}

#[tokio::test]
async fn round_trip_in_every_mode() {
    let expected = expected().await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, ROWS);
    let reader = kms_session();
    for double in [true, false] {
        for plaintext_footer in [false, true] {
            for column_keys in [None, Some("kc:city,amount;kl:note")] {
                for bits in ["128", "256"] {
                    let name = format!(
                        "d{}_p{}_c{}_{bits}.parquet",
                        double as u8,
                        plaintext_footer as u8,
                        column_keys.is_some() as u8
                    );
                    let path = dir.path().join(&name);
                    let options = crypto_options(column_keys, plaintext_footer, double, bits);
                    copy_to(&ctx, &path, &options).await;
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(bytes.ends_with(b"PARE"), !plaintext_footer, "{name}");
                    assert!(is_encrypted_file(&path), "{name}: canary in plaintext");
                    let metadata = String::from_utf8_lossy(&bytes).to_string();
                    assert!(metadata.contains("PKMT1"), "{name}: no key material");
                    assert_eq!(
                        metadata.contains("\"doubleWrapping\":true"),
                        double,
                        "{name}: wrapping mode"
                    );
                    let got = read_table(&reader, &path).await.unwrap();
                    assert_eq!(got, expected, "{name}");
                }
            }
        }
    }
    // The directory of all sixteen files reads as one table with no per-file options.
    let count = cipherlake_engine::script::query(
        &reader,
        &format!("SELECT count(*) FROM '{}/'", dir.path().display()),
    )
    .await
    .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&count)
        .unwrap()
        .to_string();
    assert!(text.contains(&(16 * ROWS).to_string()), "{text}");
}

#[tokio::test]
async fn several_row_groups_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, ROWS);
    let path = dir.path().join("rg.parquet");
    copy_to(
        &ctx,
        &path,
        &crypto_options(Some("kc:amount"), true, true, "128"),
    )
    .await;
    let unwrapper = Arc::new(FileKeyUnwrapper::new(kms_from(&key_list())));
    let props = decryption_properties(Some(unwrapper), "rg.parquet").unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        File::open(&path).unwrap(),
        ArrowReaderOptions::new().with_file_decryption_properties(props),
    )
    .unwrap();
    assert!(builder.metadata().num_row_groups() >= 3);
}

#[tokio::test]
async fn plaintext_copy_stays_plaintext_and_needs_no_kms() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 50);
    let path = dir.path().join("plain.parquet");
    copy_to(&ctx, &path, &[]).await;
    assert!(std::fs::read(&path).unwrap().ends_with(b"PAR1"));
    assert!(read_table(&plain_session(), &path).await.is_ok());
}

#[tokio::test]
async fn reading_without_a_kms_names_the_file_and_says_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 100);
    for plaintext_footer in [false, true] {
        let path = dir.path().join(format!("f{plaintext_footer}.parquet"));
        copy_to(
            &ctx,
            &path,
            &crypto_options(None, plaintext_footer, true, "128"),
        )
        .await;
        let err = read_table(&plain_session(), &path).await.unwrap_err();
        assert!(err.contains("encrypted"), "{err}");
        assert!(
            err.contains(&format!("f{plaintext_footer}.parquet")),
            "{err}"
        );
        assert!(err.contains("--kms"), "{err}");
    }
}

#[tokio::test]
async fn writing_encrypted_without_a_kms_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = plain_session();
    register_sample(&ctx, 10);
    let sql = format!(
        "COPY src TO '{}' STORED AS PARQUET OPTIONS ('format.crypto.factory_options.footer_key' 'kf')",
        dir.path().join("x.parquet").display()
    );
    let err = cipherlake_engine::script::query(&ctx, &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no KMS is configured"), "{err}");
}

#[tokio::test]
async fn bad_write_options_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 10);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("format.crypto.factory_options.footer_key", "nope")],
            "\"nope\" is not known",
        ),
        (
            &[
                ("format.crypto.factory_options.footer_key", "kf"),
                ("format.crypto.factory_options.column_keys", "kc:missing"),
            ],
            "column 'missing'",
        ),
        (
            &[
                ("format.crypto.factory_options.footer_key", "kf"),
                ("format.crypto.factory_options.data_key_bits", "192"),
            ],
            "'192' is not supported",
        ),
        (
            &[("format.crypto.factory_options.column_keys", "kc:id")],
            "requires footer_key",
        ),
    ];
    for (i, (options, message)) in cases.into_iter().enumerate() {
        let opts = options
            .iter()
            .map(|(k, v)| format!("'{k}' '{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "COPY src TO '{}' STORED AS PARQUET OPTIONS ({opts})",
            dir.path().join(format!("bad{i}.parquet")).display()
        );
        let err = cipherlake_engine::script::query(&ctx, &sql)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "case {i}: {err}");
    }
}

#[tokio::test]
async fn wrong_master_key_fails_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 100);
    let wrong = new_session(&SessionOptions {
        kms: Some(kms_from(&wrong_key_list())),
        ..SessionOptions::default()
    });
    for double in [true, false] {
        let path = dir.path().join(format!("w{double}.parquet"));
        copy_to(
            &ctx,
            &path,
            &crypto_options(Some("kc:amount"), false, double, "128"),
        )
        .await;
        let err = read_table(&wrong, &path).await.unwrap_err();
        assert!(
            err.contains("does not authenticate under master key \"kf\""),
            "{err}"
        );
        assert!(err.contains(&format!("w{double}.parquet")), "{err}");
    }
}

/// Reads `bytes` as a Parquet file with the test KMS through the parquet reader; `Ok` only if
/// every row decodes.
fn read_bytes(bytes: Vec<u8>) -> Result<Vec<arrow::array::RecordBatch>, String> {
    let unwrapper = Arc::new(FileKeyUnwrapper::new(kms_from(&key_list())));
    let props =
        decryption_properties(Some(unwrapper), "tampered.parquet").map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        bytes::Bytes::from(bytes),
        ArrowReaderOptions::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .with_file_decryption_properties(props),
    )
    .map_err(|e| e.to_string())?;
    builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn flipping_any_byte_fails_or_changes_nothing_never_a_wrong_result() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 200);
    for (plaintext_footer, column_keys) in
        [(false, None), (true, Some("kc:id,city,amount;kl:note"))]
    {
        let path = dir.path().join(format!("t{plaintext_footer}.parquet"));
        copy_to(
            &ctx,
            &path,
            &crypto_options(column_keys, plaintext_footer, true, "128"),
        )
        .await;
        let original = std::fs::read(&path).unwrap();
        let good = read_bytes(original.clone()).expect("untampered file reads");
        let mut failures = 0;
        for position in 0..original.len() {
            let mut bytes = original.clone();
            bytes[position] ^= 0x01;
            match read_bytes(bytes) {
                Err(_) => failures += 1,
                Ok(batches) => assert_eq!(
                    batches,
                    good,
                    "flipping byte {position} of {} gave a different result",
                    path.display()
                ),
            }
        }
        // Every column is encrypted, so only bytes that take no part in decryption (the
        // kmsInstanceID/URL text of the key material, unused Thrift padding) may go unnoticed.
        eprintln!(
            "{}: {failures} of {} flips detected",
            path.display(),
            original.len()
        );
        assert!(
            failures * 10 >= original.len() * 9,
            "only {failures} of {} flips detected",
            original.len()
        );
    }
}

#[tokio::test]
async fn tampering_each_module_kind_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 200);
    let path = dir.path().join("m.parquet");
    copy_to(&ctx, &path, &crypto_options(None, false, true, "128")).await;
    let original = std::fs::read(&path).unwrap();
    let len = original.len();
    let footer_len = u32::from_le_bytes(original[len - 8..len - 4].try_into().unwrap()) as usize;
    let footer_start = len - 8 - footer_len;
    let key_material = find(&original, b"\"wrappedDEK\":\"").expect("footer key material") + 14;
    let cases = [
        ("first page header", 4 + 10),
        ("page data", footer_start / 3),
        ("encrypted footer", len - 8 - 20),
        ("footer key metadata", key_material + 2),
        ("footer crypto metadata", footer_start + 2),
    ];
    for (what, position) in cases {
        let mut bytes = original.clone();
        bytes[position] ^= 0x40;
        let err = read_bytes(bytes).expect_err(what);
        assert!(!err.is_empty(), "{what}");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `sample_batch` with the given raw keys and key metadata.
fn write_raw(path: &Path, footer_key: Vec<u8>, footer_key_metadata: Vec<u8>) {
    let batch = sample_batch(20);
    let encryption = FileEncryptionProperties::builder(footer_key)
        .with_footer_key_metadata(footer_key_metadata)
        .build()
        .unwrap();
    let props = WriterProperties::builder()
        .with_file_encryption_properties(encryption)
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn unsupported_variants_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let kms = kms_from(&key_list());
    // Key metadata wrapping a 192-bit data key (the file itself uses a 128-bit key, as the
    // Parquet writer cannot use 192-bit keys).
    let metadata = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default())
        .wrap_data_key(&[3u8; 24], "kf", true)
        .unwrap();
    let path = dir.path().join("k192.parquet");
    write_raw(&path, vec![3u8; 16], metadata);
    let err = read_table(&kms_session(), &path).await.unwrap_err();
    assert!(err.contains("192 bits"), "{err}");
    // External key material.
    let external = br#"{"keyMaterialType":"PKMT1","internalStorage":false,"keyReference":"ref-1"}"#;
    let path = dir.path().join("external.parquet");
    write_raw(&path, vec![4u8; 16], external.to_vec());
    let err = read_table(&kms_session(), &path).await.unwrap_err();
    assert!(
        err.contains("external key material is not supported"),
        "{err}"
    );
}

#[test]
fn kms_selection_strings() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("keys");
    std::fs::write(&list, key_list()).unwrap();
    assert!(open_kms(&format!("local:{}", list.display())).is_ok());
    let err = open_kms("cas:https://cas:8081").err().unwrap().to_string();
    assert!(err.contains("needs an attested identity"), "{err}");
    assert!(open_kms("vault:x").is_err());
    let err = open_kms(&format!("local:{}", dir.path().join("missing").display()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::write(&list, "kf:AAAA").unwrap();
    let err = open_kms(&format!("local:{}", list.display()))
        .err()
        .unwrap()
        .to_string();
    assert!(!err.contains("AAAA"), "{err}");
}

#[test]
fn spec_builds_properties_for_the_writer() {
    let spec = EncryptionSpec::new("kf");
    let batch = sample_batch(5);
    assert!(
        spec.file_encryption_properties(
            kms_from(&key_list()),
            &WriterKeks::default(),
            &batch.schema(),
            "x"
        )
        .is_ok()
    );
}

#[tokio::test]
async fn only_encrypted_files_get_decryption_properties() {
    use cipherlake_engine::encryption::KmsEncryptionFactory;
    use datafusion::execution::parquet_encryption::EncryptionFactory;

    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 50);
    let files = [
        ("plain.parquet", vec![], false),
        (
            "enc.parquet",
            crypto_options(None, false, true, "128"),
            true,
        ),
        (
            "pf.parquet",
            crypto_options(Some("kc:amount"), true, true, "128"),
            true,
        ),
    ];
    let factory = KmsEncryptionFactory::new(Some(kms_from(&key_list())));
    for (name, options, encrypted) in files {
        let path = dir.path().join(name);
        copy_to(&ctx, &path, &options).await;
        let object_path = object_store::path::Path::from_absolute_path(&path).unwrap();
        for _ in 0..2 {
            let props = factory
                .get_file_decryption_properties(&Default::default(), &object_path)
                .await
                .unwrap();
            // Plaintext files get none, so DataFusion caches their metadata.
            assert_eq!(props.is_some(), encrypted, "{name}");
        }
    }
    // Files that are not local (another object store) are treated as possibly encrypted.
    let remote = object_store::path::Path::from("no/such/bucket/file.parquet");
    assert!(
        factory
            .get_file_decryption_properties(&Default::default(), &remote)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn create_external_table_with_key_options_writes_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 100);
    let location = dir.path().join("t");
    std::fs::create_dir(&location).unwrap();
    let statements = [
        format!(
            "CREATE EXTERNAL TABLE enc (id BIGINT NOT NULL, city VARCHAR, amount DOUBLE, note VARCHAR NOT NULL) \
             STORED AS PARQUET LOCATION '{}/' OPTIONS (\
             'format.crypto.factory_options.footer_key' 'kf', \
             'format.crypto.factory_options.column_keys' 'kc:amount;kl:note')",
            location.display()
        ),
        "INSERT INTO enc SELECT * FROM src".to_owned(),
    ];
    for sql in &statements {
        cipherlake_engine::script::query(&ctx, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let files: Vec<_> = std::fs::read_dir(&location)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for file in &files {
        assert!(
            std::fs::read(file).unwrap().ends_with(b"PARE"),
            "{}",
            file.display()
        );
    }
    let expected = {
        let plain = tempfile::tempdir().unwrap();
        let path = plain.path().join("p.parquet");
        copy_to(&ctx, &path, &[]).await;
        read_table(&ctx, &path).await.unwrap()
    };
    assert_eq!(
        read_table(&kms_session(), &location).await.unwrap(),
        expected
    );
}

/// The files of one write share a KEK per master key, as parquet-java's writers do: writing
/// several files makes one KMS call per master key, and reading them all back unwraps one KEK
/// per master key.
#[tokio::test]
async fn the_files_of_a_write_share_one_kek_per_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let writer_kms = CountingKms::new();
    let ctx = new_session(&SessionOptions {
        kms: Some(writer_kms.clone()),
        target_partitions: 2,
        ..SessionOptions::default()
    });
    register_sample(&ctx, 1_000);
    let out = dir.path().join("by_city");
    let sql = format!(
        "COPY src TO '{}/' STORED AS PARQUET PARTITIONED BY (city) OPTIONS (\
         'format.crypto.factory_options.footer_key' 'kf', \
         'format.crypto.factory_options.column_keys' 'kc:amount;kl:note')",
        out.display()
    );
    cipherlake_engine::script::query(&ctx, &sql).await.unwrap();
    let files: Vec<_> = walk(&out)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(
        writer_kms.wraps.load(Ordering::SeqCst),
        3,
        "one wrap per master key (kf, kc, kl) for {} files",
        files.len()
    );

    let reader_kms = CountingKms::new();
    let reader = new_session(&SessionOptions {
        kms: Some(reader_kms.clone()),
        target_partitions: 2,
        ..SessionOptions::default()
    });
    let read = format!(
        "SELECT count(*) AS n, sum(length(note)) AS notes, sum(amount) AS amount FROM '{}/'",
        out.display()
    );
    let batches = cipherlake_engine::script::query(&reader, &read)
        .await
        .unwrap();
    let original = cipherlake_engine::script::query(
        &ctx,
        "SELECT count(*) AS n, sum(length(note)) AS notes, sum(amount) AS amount FROM src",
    )
    .await
    .unwrap();
    let text = |b: &[arrow::array::RecordBatch]| pretty_format_batches(b).unwrap().to_string();
    assert_eq!(text(&batches), text(&original));
    assert_eq!(
        reader_kms.unwraps.load(Ordering::SeqCst),
        3,
        "one KEK unwrapped per master key for {} files",
        files.len()
    );
}
