//! Secrets shared between policies: the exporter must export to the importer, kinds must agree.

use cipherlake_policy::{ImportError, Policy, check_import};

use super::common::{example, replace};

/// The example's owner, which the export pins as owner of taxi-reporting.
const PINNED_OWNER: &str =
    "ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12";
/// Someone else's key.
const SQUATTER: &str = "ed25519:ee93a4f66f8d16b819bb9beb9ffccdfcdc1412e87fee6a324c2a99a1e0e67148";

fn reporting_owned_by(owner: &str, import: &str) -> Policy {
    let text = format!(
        "apiVersion: cipherlake/v1
name: taxi-reporting
owners: [{owner}]
attestation: {{ tees: [sim] }}
services:
  report: {{ operation: worker, measurements: [sha384:{}], kms_keys: {{ cmk: [unwrap] }} }}
secrets:
  cmk: {import}
",
        "ab".repeat(48)
    );
    Policy::parse(&text).expect("valid")
}

fn reporting(import: &str) -> Policy {
    reporting_owned_by(PINNED_OWNER, import)
}

const IMPORT_CMK: &str =
    "{ kind: rsa-2048, import_from: { policy: taxi-analytics, secret: results-cmk } }";

#[test]
fn a_policy_squatting_the_importers_name_gets_nothing() {
    // Same name, other owners: whether created before or after the export, it is not the
    // policy the exporter pinned.
    let squatter = reporting_owned_by(SQUATTER, IMPORT_CMK);
    let refused = check_import(&squatter, "cmk", &example());
    assert!(
        matches!(refused, Err(ImportError::NotPinned { .. })),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("pinned to other owners"),
        "names the cause"
    );
}

#[test]
fn listing_the_pinned_owner_beside_ones_own_key_gets_nothing() {
    // Public keys are public: a squatter names the exporter's trusted key as a co-owner of its
    // own policy (which it can sign alone). Every owner of the importer must be pinned.
    let squatter = reporting_owned_by(&format!("{PINNED_OWNER}, {SQUATTER}"), IMPORT_CMK);
    assert!(matches!(
        check_import(&squatter, "cmk", &example()),
        Err(ImportError::NotPinned { .. })
    ));
}

#[test]
fn an_export_pinned_by_hash_admits_that_version_only() {
    let importer = reporting(IMPORT_CMK);
    let pinned = replace(
        &super::common::example_text(),
        "        owners: [ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12]\n",
        &format!("        hash: {}\n", importer.hash()),
    );
    let exporter = Policy::parse(&pinned).expect("valid");
    check_import(&importer, "cmk", &exporter).expect("the pinned version imports");
    // Another version of the importer (same owners, one more service field) does not.
    let changed = reporting(
        "{ kind: rsa-2048, import_from: { policy: taxi-analytics, secret: results-cmk }, export_to: [] }",
    );
    assert_eq!(
        changed.hash(),
        importer.hash(),
        "defaults do not change the hash"
    );
    let other = reporting_owned_by(&format!("{PINNED_OWNER}, {SQUATTER}"), IMPORT_CMK);
    assert!(matches!(
        check_import(&other, "cmk", &exporter),
        Err(ImportError::NotPinned { .. })
    ));
}

#[test]
fn an_export_pinning_nothing_is_invalid() {
    let text = replace(
        &super::common::example_text(),
        "        owners: [ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12]\n",
        "",
    );
    let e = super::common::refused(&text).to_string();
    assert!(
        e.contains("secrets.results-cmk.export_to[0]") && e.contains("pin the importing policy"),
        "{e}"
    );
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
