//! `cipherlake ae cell` against a cell written by a real SQL Server.

use super::support::{fails, ok};

const CEK: &str = "0ff9e45335df3dec7be0649f741e6ea870e9d49d16fe4be7437ce22489f48ead";

fn real_cell() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/always-encrypted/column_value.enc"
    );
    hex::encode(std::fs::read(path).expect("fixture"))
}

#[test]
fn decrypts_a_real_server_cell_and_round_trips_deterministic_cells() {
    let value = ok(&[
        "ae",
        "cell",
        "decrypt",
        "--cek",
        CEK,
        "--type",
        "nchar(10)",
        "--mode",
        "randomized",
        &real_cell(),
    ]);
    assert_eq!(value.trim_end_matches('\n'), "12345     ");
    let cell = ok(&[
        "ae",
        "cell",
        "encrypt",
        "--cek",
        CEK,
        "--type",
        "bigint",
        "--mode",
        "deterministic",
        "42",
    ]);
    let again = ok(&[
        "ae",
        "cell",
        "encrypt",
        "--cek",
        CEK,
        "--type",
        "bigint",
        "--mode",
        "deterministic",
        "42",
    ]);
    assert_eq!(cell, again, "deterministic encryption repeats");
    let back = ok(&[
        "ae",
        "cell",
        "decrypt",
        "--cek",
        CEK,
        "--type",
        "bigint",
        "--mode",
        "deterministic",
        cell.trim(),
    ]);
    assert_eq!(back.trim(), "42");
}

#[test]
fn a_tampered_cell_or_wrong_key_is_refused() {
    let mut cell = real_cell();
    let flipped = if cell.ends_with('0') { '1' } else { '0' };
    cell.pop();
    cell.push(flipped);
    let err = fails(&[
        "ae",
        "cell",
        "decrypt",
        "--cek",
        CEK,
        "--type",
        "nchar(10)",
        "--mode",
        "randomized",
        &cell,
    ]);
    assert!(err.to_lowercase().contains("authentication"), "{err}");
    let wrong = "00".repeat(32);
    let err = fails(&[
        "ae",
        "cell",
        "decrypt",
        "--cek",
        &wrong,
        "--type",
        "nchar(10)",
        "--mode",
        "randomized",
        &real_cell(),
    ]);
    assert!(
        !err.contains(CEK) && !err.contains(&wrong),
        "keys never appear in errors: {err}"
    );
}
