//! Interoperability with pyarrow (Arrow C++ `CryptoFactory`), both ways. The interpreter is
//! `$CIPHERLAKE_PYTHON` (default `python3`) and must have `pyarrow` and `cryptography`
//! (`scripts/test` makes such a venv); without them these tests fail.

use std::path::Path;
use std::process::Command;

use super::crypt::{
    copy_to, crypto_options, kms_session, plain_session, read_table, register_sample,
};

/// Runs `interop.py ACTION DIR` and returns its standard output; panics loudly on failure.
fn python(action: &str, dir: &Path) -> String {
    let interpreter = std::env::var("CIPHERLAKE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyarrow/interop.py");
    let output = Command::new(&interpreter)
        .arg(&script)
        .arg(action)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {interpreter} (set CIPHERLAKE_PYTHON): {e}"));
    assert!(
        output.status.success(),
        "{interpreter} {} {action} failed (pyarrow and cryptography must be installed; \
         scripts/test creates a venv and sets CIPHERLAKE_PYTHON):\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn cipherlake_reads_what_pyarrow_writes_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    python("write", dir.path());
    let ctx = kms_session();
    let expected = read_table(&plain_session(), &dir.path().join("plain.parquet"))
        .await
        .unwrap();
    let mut modes = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "plain.parquet" {
            continue;
        }
        let result = read_table(&ctx, &path).await;
        if name.starts_with("ctr_") {
            let err = result.unwrap_err();
            assert!(err.contains("AES_GCM_CTR_V1"), "{name}: {err}");
        } else {
            assert_eq!(
                result.unwrap_or_else(|e| panic!("{name}: {e}")),
                expected,
                "{name}"
            );
            modes += 1;
        }
    }
    assert_eq!(modes, 6);
}

#[tokio::test]
async fn pyarrow_reads_what_cipherlake_writes_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = kms_session();
    register_sample(&ctx, 1000);
    copy_to(&ctx, &dir.path().join("plain.parquet"), &[]).await;
    let mut files = 1;
    for double in [true, false] {
        for plaintext_footer in [false, true] {
            for column_keys in [None, Some("kc:id,city,amount;kl:note")] {
                for bits in ["128", "256"] {
                    let name = format!(
                        "d{}_p{}_c{}_{bits}.parquet",
                        double as u8,
                        plaintext_footer as u8,
                        column_keys.is_some() as u8
                    );
                    let options = crypto_options(column_keys, plaintext_footer, double, bits);
                    copy_to(&ctx, &dir.path().join(name), &options).await;
                    files += 1;
                }
            }
        }
    }
    let out = python("read", dir.path());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files, "{out}");
    let plain = lines
        .iter()
        .find(|l| l.starts_with("plain.parquet "))
        .expect("plain file read");
    let digest = plain.split_once(' ').unwrap().1;
    assert!(digest.starts_with("1000 "), "{plain}");
    for line in &lines {
        assert!(
            line.ends_with(digest),
            "pyarrow read a different table: {line} vs {plain}"
        );
    }
}
