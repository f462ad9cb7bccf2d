//! Differential tests against tedious (the Node.js SQL Server driver), an Always Encrypted
//! implementation we did not write: its `lib/always-encrypted` cell cipher and, where the TDS
//! wire encoding of a type equals the Always Encrypted normalisation, its data-type encoders.
//!
//! Needs Node.js and `crates/cipherlake-crypto/tests/tedious/setup` (which fetches tedious into
//! `$CIPHERLAKE_TEDIOUS_DIR` or `~/.cache/cipherlake-tedious`). Fails, never skips, without them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cipherlake_crypto::always_encrypted::{
    CellKey, EncryptionType, SqlType, SqlValue, decrypt_value, encrypt_value, normalize,
};
use serde_json::{Value, json};

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tedious/harness.js");
const SETUP: &str = "crates/cipherlake-crypto/tests/tedious/setup";

fn tedious_dir() -> PathBuf {
    let dir = match std::env::var_os("CIPHERLAKE_TEDIOUS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/cipherlake-tedious"),
    };
    let probe = dir.join("package/lib/always-encrypted/aead-aes-256-cbc-hmac-algorithm.js");
    assert!(
        probe.is_file() && dir.join("node_modules/@js-joda/core").is_dir(),
        "tedious is not installed in {}: run {SETUP} first",
        dir.display()
    );
    dir
}

fn run_tedious(requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new("node")
        .arg(HARNESS)
        .env("TEDIOUS_DIR", tedious_dir())
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (Node.js 20 is required for this test): {e}"));
    let input = serde_json::to_vec(requests).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tedious harness failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("harness output is JSON");
    assert_eq!(results.len(), requests.len());
    for (req, res) in requests.iter().zip(&results) {
        assert!(res.get("error").is_none(), "tedious rejected {req}: {res}");
    }
    results
}

fn field(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {v}")),
    )
    .unwrap()
}

/// A temporal value for tedious: an ISO instant with milliseconds plus the rest of the
/// fraction in seconds (tedious' `nanosecondDelta`).
fn instant(ty: &str, iso_ms: &str, sub_ms: &str, scale: u8) -> Value {
    json!({ "type": ty, "value": iso_ms, "sub_ms": sub_ms, "scale": scale })
}

fn cases() -> Vec<(&'static str, String, Option<Value>)> {
    let int = |v: &str| Some(json!({ "type": "BigInt", "value": v }));
    let dec = |v: &str, scale: u8| {
        Some(json!({ "type": "Decimal", "value": v, "precision": 38, "scale": scale }))
    };
    let money = |v: &str| Some(json!({ "type": "Money", "value": v }));
    let varchar =
        |v: &str, cp: &str| Some(json!({ "type": "VarChar", "value": v, "codepage": cp }));
    let nvarchar = |v: &str| Some(json!({ "type": "NVarChar", "value": v }));
    let bin = |v: &str| Some(json!({ "type": "VarBinary", "value": v }));
    let long_hex = "ab".repeat(1000);
    vec![
        ("bit", "1".into(), int("1")),
        ("bit", "0".into(), int("0")),
        ("tinyint", "200".into(), int("200")),
        ("smallint", "-300".into(), int("-300")),
        ("int", "-123456".into(), int("-123456")),
        ("int", "2147483647".into(), int("2147483647")),
        (
            "bigint",
            "-9223372036854775808".into(),
            int("-9223372036854775808"),
        ),
        (
            "bigint",
            "9223372036854775807".into(),
            int("9223372036854775807"),
        ),
        (
            "real",
            "3.25".into(),
            Some(json!({ "type": "Real", "value": "3.25" })),
        ),
        (
            "real",
            "-0.1".into(),
            Some(json!({ "type": "Real", "value": "-0.1" })),
        ),
        (
            "float",
            "0.1".into(),
            Some(json!({ "type": "Float", "value": "0.1" })),
        ),
        (
            "float",
            "-1.5e300".into(),
            Some(json!({ "type": "Float", "value": "-1.5e300" })),
        ),
        (
            "decimal(38,4)",
            "12345678.9012".into(),
            dec("12345678.9012", 4),
        ),
        ("decimal(10,2)", "-12.34".into(), dec("-12.34", 2)),
        (
            "numeric(38,0)",
            "-9007199254740991".into(),
            dec("-9007199254740991", 0),
        ),
        ("decimal(18,2)", "0".into(), dec("0", 2)),
        ("money", "-123456.7891".into(), money("-123456.7891")),
        ("money", "214748.3648".into(), money("214748.3648")),
        ("money", "0.0001".into(), money("0.0001")),
        ("smallmoney", "-214748.3648".into(), money("-214748.3648")),
        ("smallmoney", "12.5".into(), money("12.5")),
        (
            "nvarchar(50)",
            "Grüße 世界 🎉".into(),
            nvarchar("Grüße 世界 🎉"),
        ),
        ("nvarchar(max)", "".into(), nvarchar("")),
        ("nchar(10)", "12345".into(), nvarchar("12345")),
        ("nchar(10)", "12345     ".into(), nvarchar("12345     ")),
        (
            "varchar(50)",
            "café ‰ Œ €".into(),
            varchar("café ‰ Œ €", "CP1252"),
        ),
        ("char(10)", "abc".into(), varchar("abc", "CP1252")),
        (
            "varchar(50) COLLATE Latin1_General_100_BIN2_UTF8",
            "世界 é €".into(),
            varchar("世界 é €", "utf-8"),
        ),
        ("varbinary(10)", "0xdeadbeef".into(), bin("deadbeef")),
        (
            "binary(16)",
            "0x000102030405060708090a0b0c0d0e0f".into(),
            bin("000102030405060708090a0b0c0d0e0f"),
        ),
        ("varbinary(max)", format!("0x{long_hex}"), bin(&long_hex)),
        (
            "uniqueidentifier",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF".into(),
            Some(
                json!({ "type": "UniqueIdentifier", "value": "6F9619FF-8B86-D011-B42D-00C04FC964FF" }),
            ),
        ),
        (
            "date",
            "2024-02-29".into(),
            Some(json!({ "type": "Date", "value": "2024-02-29T00:00:00.000Z" })),
        ),
        (
            "date",
            "0001-01-01".into(),
            Some(json!({ "type": "Date", "value": "0001-01-01T00:00:00.000Z" })),
        ),
        (
            "date",
            "9999-12-31".into(),
            Some(json!({ "type": "Date", "value": "9999-12-31T00:00:00.000Z" })),
        ),
        (
            "time(7)",
            "13:45:10.1234567".into(),
            Some(instant("Time", "1970-01-01T13:45:10.123Z", "0.0004567", 7)),
        ),
        // time(n) is normalised to 100 ns ticks in 5 bytes, like TDS time(7).
        (
            "time(3)",
            "23:59:59.999".into(),
            Some(instant("Time", "1970-01-01T23:59:59.999Z", "0", 7)),
        ),
        (
            "time(0)",
            "00:00:00".into(),
            Some(instant("Time", "1970-01-01T00:00:00.000Z", "0", 7)),
        ),
        (
            "datetime2(7)",
            "2024-02-29 13:45:10.1234567".into(),
            Some(instant(
                "DateTime2",
                "2024-02-29T13:45:10.123Z",
                "0.0004567",
                7,
            )),
        ),
        (
            "datetime2(2)",
            "0001-01-01 00:00:00.99".into(),
            Some(instant("DateTime2", "0001-01-01T00:00:00.990Z", "0", 7)),
        ),
        (
            "datetimeoffset(7)",
            "2024-02-29 13:45:10.1234567 +00:00".into(),
            Some(instant(
                "DateTimeOffset",
                "2024-02-29T13:45:10.123Z",
                "0.0004567",
                7,
            )),
        ),
        // tedious' encoder takes the offset from the process time zone: cipher-only here.
        (
            "datetimeoffset(7)",
            "2024-02-29 13:45:10.1234567 -05:30".into(),
            None,
        ),
        (
            "datetimeoffset(0)",
            "9999-12-31 23:59:59 +14:00".into(),
            None,
        ),
        (
            "datetime",
            "2024-02-29 13:45:10.123".into(),
            Some(json!({ "type": "DateTime", "value": "2024-02-29T13:45:10.123Z" })),
        ),
        (
            "datetime",
            "1753-01-01 00:00:00.997".into(),
            Some(json!({ "type": "DateTime", "value": "1753-01-01T00:00:00.997Z" })),
        ),
        (
            "datetime",
            "9999-12-31 23:59:59.997".into(),
            Some(json!({ "type": "DateTime", "value": "9999-12-31T23:59:59.997Z" })),
        ),
        (
            "smalldatetime",
            "2079-06-06 23:59".into(),
            Some(json!({ "type": "SmallDateTime", "value": "2079-06-06T23:59:00.000Z" })),
        ),
        (
            "smalldatetime",
            "1900-01-01 00:00".into(),
            Some(json!({ "type": "SmallDateTime", "value": "1900-01-01T00:00:00.000Z" })),
        ),
    ]
}

#[test]
fn tedious_agrees_on_every_type() {
    let cek = [
        0x0fu8, 0xf9, 0xe4, 0x53, 0x35, 0xdf, 0x3d, 0xec, 0x7b, 0xe0, 0x64, 0x9f, 0x74, 0x1e, 0x6e,
        0xa8, 0x70, 0xe9, 0xd4, 0x9d, 0x16, 0xfe, 0x4b, 0xe7, 0x43, 0x7c, 0xe2, 0x24, 0x89, 0xf4,
        0x8e, 0xad,
    ];
    let cek_hex = hex::encode(cek);
    let key = CellKey::new(&cek).unwrap();

    struct Case {
        ty: SqlType,
        label: String,
        plain: Vec<u8>,
        det: Vec<u8>,
        typed: bool,
    }
    let mut prepared = Vec::new();
    let mut requests = Vec::new();
    for (t, text, spec) in cases() {
        let ty: SqlType = t.parse().unwrap();
        let value = SqlValue::parse(&ty, &text).unwrap_or_else(|e| panic!("{t} {text}: {e}"));
        let plain = normalize(&ty, &value).unwrap();
        let det = encrypt_value(&key, &ty, &value, EncryptionType::Deterministic).unwrap();
        let rand = encrypt_value(&key, &ty, &value, EncryptionType::Randomized).unwrap();
        let p = hex::encode(&plain);
        requests.push(
            json!({ "op": "encrypt", "cek": cek_hex, "mode": "deterministic", "plaintext": p }),
        );
        requests.push(json!({ "op": "decrypt", "cek": cek_hex, "mode": "deterministic", "cell": hex::encode(&det) }));
        requests.push(json!({ "op": "decrypt", "cek": cek_hex, "mode": "randomized", "cell": hex::encode(&rand) }));
        requests
            .push(json!({ "op": "encrypt", "cek": cek_hex, "mode": "randomized", "plaintext": p }));
        let typed = spec.is_some();
        if let Some(spec) = spec {
            requests.push(json!({ "op": "encrypt_typed", "cek": cek_hex, "mode": "deterministic", "tedious": spec }));
        }
        prepared.push(Case {
            ty,
            label: format!("{t} {text:.40}"),
            plain,
            det,
            typed,
        });
    }

    let results = run_tedious(&requests);
    let mut results = results.iter();
    let mut typed_count = 0;
    for case in &prepared {
        let label = &case.label;
        let theirs_det = results.next().unwrap();
        assert_eq!(
            field(theirs_det, "cell"),
            case.det,
            "{label}: deterministic cells differ"
        );
        assert_eq!(
            field(results.next().unwrap(), "plaintext"),
            case.plain,
            "{label}: tedious decrypting our deterministic cell"
        );
        assert_eq!(
            field(results.next().unwrap(), "plaintext"),
            case.plain,
            "{label}: tedious decrypting our randomized cell"
        );
        let their_rand = field(results.next().unwrap(), "cell");
        assert_ne!(
            their_rand, case.det,
            "{label}: randomized equals deterministic"
        );
        assert_eq!(
            key.decrypt(&their_rand).unwrap(),
            case.plain,
            "{label}: decrypting tedious' randomized cell"
        );
        let theirs = decrypt_value(&key, &case.ty, &their_rand).unwrap();
        let ours = decrypt_value(&key, &case.ty, &case.det).unwrap();
        assert_eq!(theirs, ours, "{label}");
        if case.typed {
            typed_count += 1;
            let typed = results.next().unwrap();
            assert_eq!(
                hex::encode(field(typed, "plaintext")),
                hex::encode(&case.plain),
                "{label}: tedious' encoding differs from our normalisation"
            );
            assert_eq!(
                field(typed, "cell"),
                case.det,
                "{label}: tedious' typed deterministic cell differs"
            );
        }
    }
    assert!(results.next().is_none());
    assert!(typed_count >= 40, "only {typed_count} typed cases");
}

#[test]
fn tedious_rejects_our_tampered_cell_and_we_reject_theirs() {
    let cek_hex = "11".repeat(32);
    let key = CellKey::new(&[0x11; 32]).unwrap();
    let mut ours = key.encrypt(b"secret", EncryptionType::Randomized).unwrap();
    ours[60] ^= 1;
    let mut child_req = vec![
        json!({ "op": "encrypt", "cek": cek_hex, "mode": "randomized", "plaintext": hex::encode(b"secret") }),
    ];
    let theirs = field(&run_tedious(&child_req)[0], "cell");
    assert_eq!(key.decrypt(&theirs).unwrap(), b"secret");
    let mut tampered = theirs.clone();
    tampered[40] ^= 1;
    assert!(key.decrypt(&tampered).is_err());
    // tedious must refuse our tampered cell too (it reports an error, not a plaintext).
    child_req = vec![
        json!({ "op": "decrypt", "cek": cek_hex, "mode": "randomized", "cell": hex::encode(&ours) }),
    ];
    let out = Command::new("node")
        .arg(HARNESS)
        .env("TEDIOUS_DIR", tedious_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(&serde_json::to_vec(&child_req).unwrap())?;
            c.wait_with_output()
        })
        .expect("node runs");
    let res: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        res[0]["error"]
            .as_str()
            .unwrap()
            .contains("authentication tag"),
        "{res:?}"
    );
}
