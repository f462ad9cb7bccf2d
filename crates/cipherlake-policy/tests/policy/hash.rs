//! Canonical hashes: stable under formatting, key order, comments and equivalent spellings;
//! different under any semantic change.

use cipherlake_policy::Policy;

use super::common::{DRIVER, example, example_text, replace};

/// The example's hash. Changing it means the canonical form changed, which invalidates every
/// stored signature: do not update it casually.
const EXAMPLE_HASH: &str =
    "sha256:d5a7f4cff591b2e51c871de304b1f7a66345f5da46b92239a9e53594ffe980ed";

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
  results-cmk: {{ export_to: [{{ owners: [ed25519:2152F8D19B791D24453242E15F2EAB6CB7CFFA7B6A5ED30097960E069881DB12], policy: taxi-reporting }}], generate: true, kind: "rsa-2048" }}
  taxi-pii:
    generate: true
    kind: aes-256
  taxi-footer:
    kind: aes-256
    generate: true
  sql_url: {{ value: 'postgres://analytics@db.internal:5432/taxi?sslmode=require', kind: ascii }}
services:
  worker: {{ kms_keys: {{ taxi-pii: [unwrap], taxi-footer: [unwrap] }}, operation: worker, measurements: ["{worker}"] }}
  driver:
    console: row-counts
    kms_keys:
      results-cmk: [unwrap]
      taxi-pii: [unwrap]
      taxi-footer:
        - unwrap
    operation: run
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
users:
  auditor: {{ read_audit: true, key: "ed25519:ee93a4f66f8d16b819bb9beb9ffccdfcdc1412e87fee6a324c2a99a1e0e67148" }}
  ingest:
    kms_keys: {{ taxi-pii: [wrap], taxi-footer: [wrap] }}
    key: 6355691c178a8ff91007a7478afb955ef7352c63e7b25703984cf78b26e21a56
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
    let text = replace(&example_text(), "tees: [sim]", "tees: [sim, sgx]");
    let reordered = replace(&example_text(), "tees: [sim]", "tees: [sgx, sim]");
    assert_ne!(
        Policy::parse(&text).expect("valid").hash(),
        Policy::parse(&reordered).expect("valid").hash()
    );
    assert_ne!(
        Policy::parse(&text).expect("valid").hash().to_string(),
        EXAMPLE_HASH
    );
}
