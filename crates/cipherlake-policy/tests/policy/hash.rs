//! Canonical hashes: stable under formatting, key order, comments and equivalent spellings;
//! different under any semantic change.

use cipherlake_policy::Policy;

use super::common::{DRIVER, example, example_text, replace};

/// The example's hash. Changing it means the canonical form changed, which invalidates every
/// stored signature: do not update it casually.
const EXAMPLE_HASH: &str =
    "sha256:834154c5ca207d8eed85012b2610fe2c560e05ed42b3a027dab082e2768dbd03";

#[test]
fn the_example_hash_is_pinned() {
    assert_eq!(example().hash().to_string(), EXAMPLE_HASH);
}

#[test]
fn same_hash_when_rewritten_as_json() {
    // JSON is YAML: the same policy with struct fields in declaration order, no comments, flow
    // style everywhere, every default spelled out.
    let json = serde_json::to_string_pretty(example().spec()).expect("serialises");
    let reparsed = Policy::parse(&json).expect("JSON is valid YAML");
    assert_eq!(reparsed.hash().to_string(), EXAMPLE_HASH);
}

#[test]
fn same_hash_when_reordered_reformatted_and_commented() {
    let text = format!(
        r#"# the same policy, written differently
secrets:
  results-cmk: {{ export_to: [{{ policy: taxi-reporting }}], generate: true, kind: "rsa-2048" }}
  taxi-pii:
    generate: true
    kind: aes-256
  taxi-footer:
    kind: aes-256
    generate: true
  sql_url: {{ value: 'postgres://analytics@db.internal:5432/taxi?sslmode=require', kind: ascii }}
services:
  worker: {{ kms_keys: [taxi-footer, taxi-pii], measurements: ["{worker}"] }}
  driver:
    console: row-counts
    kms_keys:
      - taxi-footer
      - taxi-pii
      - results-cmk
    files: {{ "/etc/cipherlake/results-cmk.pub.pem": "{{{{ secret.results-cmk.public | pem }}}}" }}
    args:
      - --policy
      - "{{{{ policy.name }}}}"
      - --service
      - "{{{{ service.name }}}}"
    env:
      SQL_URL: "{{{{ secret.sql_url }}}}"
      TAXI_URI: "file:///data/taxi"
    jobs: [sha256:{job}]
    measurements: [{driver_upper}]
attestation: {{ tolerate: [], tees: [sim] }}
owners: [ "ed25519:2152F8D19B791D24453242E15F2EAB6CB7CFFA7B6A5ED30097960E069881DB12" ]
name: "taxi-analytics"
apiVersion: cipherlake/v1
"#,
        worker = super::common::WORKER,
        job = super::common::JOB.to_uppercase(),
        // Plain hex: the algorithm follows from the length.
        driver_upper = DRIVER.to_uppercase(),
    );
    let policy = Policy::parse(&text).expect("valid");
    assert_eq!(policy.hash().to_string(), EXAMPLE_HASH);
}

#[test]
fn omitted_defaults_hash_like_explicit_ones() {
    let text = replace(&example_text(), "predecessor: null ", "");
    let text = replace(&text, "  tolerate: []", "");
    let text = replace(
        &text,
        "taxi-footer: { kind: aes-256, generate: true }",
        "taxi-footer: { kind: aes-256, generate: true, export_to: [], value: null }",
    );
    assert_eq!(
        Policy::parse(&text).expect("valid").hash().to_string(),
        EXAMPLE_HASH
    );
}

#[test]
fn any_one_character_change_changes_the_hash() {
    let text = example_text();
    let changes = [
        ("name: taxi-analytics", "name: taxi-analytica"),
        (
            &format!("sha384:{}", &DRIVER[..10])[..],
            &format!("sha384:{}{}", &DRIVER[..9], "0")[..],
        ),
        ("TAXI_URI: file:///data/taxi", "TAXI_URI: file:///data/tax1"),
        ("console: row-counts", "console: full"),
        ("sslmode=require", "sslmode=requirE"),
        ("\"--service\"", "\"--servicE\""),
        ("tolerate: []", "tolerate: [debug]"),
        ("policy: taxi-reporting", "policy: taxi-reportinG"),
    ];
    let mut seen = std::collections::HashSet::new();
    seen.insert(EXAMPLE_HASH.to_string());
    for (from, to) in changes {
        let changed =
            Policy::parse(&replace(&text, from, to)).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert!(
            seen.insert(changed.hash().to_string()),
            "{from} -> {to} kept a hash"
        );
    }
}

#[test]
fn template_text_is_hashed_as_written() {
    // Templates are text: spacing inside the braces is a (harmless) change of the text.
    let text = replace(&example_text(), "{{ service.name }}", "{{service.name}}");
    assert_ne!(
        Policy::parse(&text).expect("valid").hash().to_string(),
        EXAMPLE_HASH
    );
}

#[test]
fn list_order_is_significant() {
    let text = replace(
        &example_text(),
        "kms_keys: [taxi-footer, taxi-pii]",
        "kms_keys: [taxi-pii, taxi-footer]",
    );
    assert_ne!(
        Policy::parse(&text).expect("valid").hash().to_string(),
        EXAMPLE_HASH
    );
}
