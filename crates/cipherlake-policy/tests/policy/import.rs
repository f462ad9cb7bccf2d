//! Secrets shared between policies: the exporter must export to the importer, kinds must agree.

use cipherlake_policy::{ImportError, Policy, check_import};

use super::common::{example, replace};

fn reporting(import: &str) -> Policy {
    let text = format!(
        "apiVersion: cipherlake/v1
name: taxi-reporting
owners: [ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12]
attestation: {{ tees: [sim] }}
services:
  report: {{ measurements: [sha384:{}], kms_keys: [cmk] }}
secrets:
  cmk: {import}
",
        "ab".repeat(48)
    );
    Policy::parse(&text).expect("valid")
}

#[test]
fn exported_secret_can_be_imported() {
    let importer = reporting(
        "{ kind: rsa-2048, import_from: { policy: taxi-analytics, secret: results-cmk } }",
    );
    let import = check_import(&importer, "cmk", &example()).expect("allowed");
    assert_eq!(import.secret, "results-cmk");
}

#[test]
fn import_of_a_secret_not_exported_to_the_importer_is_refused() {
    let importer =
        reporting("{ kind: aes-256, import_from: { policy: taxi-analytics, secret: taxi-pii } }");
    assert!(matches!(
        check_import(&importer, "cmk", &example()),
        Err(ImportError::NotExported { .. })
    ));
}

#[test]
fn kinds_must_agree_and_exporter_must_match() {
    let importer = reporting(
        "{ kind: rsa-3072, import_from: { policy: taxi-analytics, secret: results-cmk } }",
    );
    assert!(matches!(
        check_import(&importer, "cmk", &example()),
        Err(ImportError::KindMismatch { .. })
    ));
    let importer =
        reporting("{ kind: rsa-2048, import_from: { policy: key-vault, secret: results-cmk } }");
    assert!(matches!(
        check_import(&importer, "cmk", &example()),
        Err(ImportError::WrongExporter { .. })
    ));
    let importer =
        reporting("{ kind: rsa-2048, import_from: { policy: taxi-analytics, secret: gone } }");
    assert!(matches!(
        check_import(&importer, "cmk", &example()),
        Err(ImportError::NoSuchSecret { .. })
    ));
    assert!(matches!(
        check_import(&importer, "other", &example()),
        Err(ImportError::NotAnImport { .. })
    ));
}

#[test]
fn export_pinned_to_another_secret_name_is_refused() {
    let text = replace(
        &super::common::example_text(),
        "      - policy: taxi-reporting",
        "      - policy: taxi-reporting\n        secret: results-key",
    );
    let exporter = Policy::parse(&text).expect("valid");
    let importer = reporting(
        "{ kind: rsa-2048, import_from: { policy: taxi-analytics, secret: results-cmk } }",
    );
    assert!(matches!(
        check_import(&importer, "cmk", &exporter),
        Err(ImportError::NotExported { .. })
    ));
}
