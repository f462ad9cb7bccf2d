//! `cipherlake parquet encrypt|decrypt|inspect` and `sql --kms`.

use super::support::{fails, ok};

/// Master keys `kf` (bytes 0..16) and `kc` (bytes 32..64).
const KEYS: &str = "kf:AAECAwQFBgcICQoLDA0ODw==,kc:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

#[test]
fn encrypt_inspect_query_and_decrypt_a_taxi_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("keys"), KEYS).unwrap();
    let kms = format!("local:{}", path("keys"));
    ok(&[
        "datagen",
        "taxi",
        "--rows",
        "5k",
        "--out",
        &path("plain"),
        "--files",
        "2",
    ]);
    let out = ok(&[
        "parquet",
        "encrypt",
        "--in",
        &path("plain"),
        "--out",
        &path("enc"),
        "--footer-key",
        "kf",
        "--column-keys",
        "kc:fare_amount,tip_amount",
        "--column-keys",
        "kc:PULocationID",
        "--kms",
        &kms,
    ]);
    assert!(out.contains("encrypted 2 file(s)"), "{out}");
    assert!(out.contains("5000 rows"), "{out}");
    let part = format!("{}/part-00000.parquet", path("enc"));
    // Encrypted footer: without keys only the footer key is named.
    let out = ok(&["parquet", "inspect", &part]);
    assert!(out.contains("footer: encrypted (AES_GCM_V1)"), "{out}");
    assert!(
        out.contains("master key \"kf\" (PKMT1, double wrapping)"),
        "{out}"
    );
    assert!(out.contains("use --kms"), "{out}");
    let out = ok(&["parquet", "inspect", &part, "--kms", &kms]);
    assert!(out.contains("fare_amount (ZSTD"), "{out}");
    assert!(
        out.contains("PULocationID (ZSTD(ZstdLevel(1))): encrypted, master key \"kc\""),
        "{out}"
    );
    assert!(
        out.contains("VendorID (ZSTD(ZstdLevel(1))): plaintext"),
        "{out}"
    );
    assert!(!out.contains("wrappedDEK"), "{out}");
    let sql = "SELECT count(*) AS n, round(sum(fare_amount), 2) AS fares FROM t";
    let expected = ok(&["sql", "--table", &format!("t={}", path("plain")), sql]);
    let got = ok(&[
        "sql",
        "--kms",
        &kms,
        "--table",
        &format!("t={}", path("enc")),
        sql,
    ]);
    assert_eq!(got, expected);
    let err = fails(&["sql", "--table", &format!("t={}", path("enc")), sql]);
    assert!(
        err.contains("is encrypted") && err.contains("part-0000"),
        "{err}"
    );
    // COPY … TO with column keys through --kms, read back.
    let copy = format!(
        "COPY (SELECT * FROM t) TO '{}' STORED AS PARQUET OPTIONS (\
         'format.crypto.factory_options.footer_key' 'kf', \
         'format.crypto.factory_options.column_keys' 'kc:fare_amount', \
         'format.crypto.factory_options.plaintext_footer' 'true')",
        path("copy.parquet")
    );
    ok(&[
        "sql",
        "--kms",
        &kms,
        "--table",
        &format!("t={}", path("enc")),
        &copy,
    ]);
    let out = ok(&["parquet", "inspect", &path("copy.parquet")]);
    assert!(out.contains("footer: plaintext"), "{out}");
    let fare = out
        .lines()
        .find(|l| l.contains("fare_amount"))
        .expect("fare_amount line");
    assert!(
        fare.ends_with("encrypted, master key \"kc\" (PKMT1, double wrapping)"),
        "{out}"
    );
    let got = ok(&[
        "sql",
        "--kms",
        &kms,
        "--table",
        &format!("t={}", path("copy.parquet")),
        sql,
    ]);
    assert_eq!(got, expected);
    // Decrypt back to plaintext.
    let out = ok(&[
        "parquet",
        "decrypt",
        "--in",
        &path("enc"),
        "--out",
        &path("dec"),
        "--kms",
        &kms,
    ]);
    assert!(out.contains("decrypted 2 file(s)"), "{out}");
    let got = ok(&["sql", "--table", &format!("t={}", path("dec")), sql]);
    assert_eq!(got, expected);
}

#[test]
fn kms_and_key_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, KEYS).unwrap();
    let kms = format!("local:{}", keys.display());
    let err = fails(&["sql", "--kms", "cas:https://cas.example:8081", "SELECT 1"]);
    assert!(err.contains("--kms cas:URL needs --cas-cert FILE"), "{err}");
    let err = fails(&["sql", "--kms", "vault:x", "SELECT 1"]);
    assert!(err.contains("expected local:FILE or cas:URL"), "{err}");
    let err = fails(&[
        "parquet",
        "encrypt",
        "--in",
        "/nonexistent.parquet",
        "--out",
        "/tmp/x.parquet",
        "--footer-key",
        "kf",
        "--kms",
        &kms,
    ]);
    assert!(err.contains("/nonexistent.parquet"), "{err}");
    let err = fails(&[
        "parquet",
        "encrypt",
        "--in",
        "/nonexistent.parquet",
        "--out",
        "/tmp/x.parquet",
        "--kms",
        &kms,
    ]);
    assert!(err.contains("--footer-key"), "{err}");
    assert!(!err.contains("AAEC"), "{err}");
}

#[test]
fn datagen_writes_encrypted_taxi_data_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("keys"), KEYS).unwrap();
    let kms = format!("local:{}", path("keys"));
    ok(&[
        "datagen",
        "taxi",
        "--rows",
        "4k",
        "--out",
        &path("plain"),
        "--files",
        "1",
    ]);
    ok(&[
        "datagen",
        "taxi",
        "--rows",
        "4k",
        "--out",
        &path("enc"),
        "--files",
        "1",
        "--encrypt",
        "--footer-key",
        "kf",
        "--column-keys",
        "kc:total_amount",
        "--data-key-bits",
        "256",
        "--single-wrapping",
        "--kms",
        &kms,
    ]);
    let out = ok(&[
        "parquet",
        "inspect",
        &format!("{}/part-00000.parquet", path("enc")),
        "--kms",
        &kms,
    ]);
    assert!(
        out.contains("footer key: master key \"kf\" (PKMT1, single wrapping)"),
        "{out}"
    );
    let sql = "SELECT count(*), round(sum(total_amount), 2) FROM t";
    let expected = ok(&["sql", "--table", &format!("t={}", path("plain")), sql]);
    let got = ok(&[
        "sql",
        "--kms",
        &kms,
        "--table",
        &format!("t={}", path("enc")),
        sql,
    ]);
    assert_eq!(got, expected);
    let err = fails(&[
        "datagen",
        "taxi",
        "--rows",
        "1k",
        "--out",
        &path("x"),
        "--footer-key",
        "kf",
    ]);
    assert!(err.contains("need --encrypt"), "{err}");
}
