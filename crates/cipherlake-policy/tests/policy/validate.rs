//! Semantic validation: each rule refused alone with its path and line, and all problems of a
//! policy reported together.

use cipherlake_policy::{Invalid, IssueKind, Policy, PolicyError, SecretKind};

use super::common::{example_text, line_of, refused, replace};

fn invalid(text: &str) -> Invalid {
    match refused(text) {
        PolicyError::Invalid(invalid) => invalid,
        other => panic!("expected validation issues, got {other}"),
    }
}

/// Asserts the text has exactly one issue, at `path`, on the line containing `needle`, and
/// returns its kind.
fn single(text: &str, path: &str, needle: &str) -> IssueKind {
    let invalid = invalid(text);
    assert_eq!(invalid.issues.len(), 1, "{invalid}");
    let issue = &invalid.issues[0];
    assert_eq!(issue.path.to_string(), path, "{invalid}");
    let location = issue.location.expect("located");
    assert_eq!(location.line, line_of(text, needle), "{invalid}");
    issue.kind.clone()
}

#[test]
fn the_example_is_valid() {
    let policy = Policy::parse(&example_text()).expect("valid");
    assert_eq!(policy.name(), "taxi-analytics");
    assert_eq!(policy.spec().services.len(), 2);
}

#[test]
fn at_least_one_tee() {
    let text = replace(&example_text(), "tees: [sim]", "tees: []");
    assert_eq!(
        single(&text, "attestation.tees", "tees: []"),
        IssueKind::NoTee
    );
}

#[test]
fn unknown_tee_and_tolerance_names() {
    let text = replace(&example_text(), "tees: [sim]", "tees: [sim, sgx2]");
    let kind = single(&text, "attestation.tees[1]", "tees: [sim, sgx2]");
    assert!(
        matches!(kind, IssueKind::UnknownKeyword { field: "TEE", ref word, .. } if word == "sgx2")
    );
    let text = replace(
        &example_text(),
        "tolerate: []",
        "tolerate: [debug, outdated_tcb]",
    );
    let kind = single(&text, "attestation.tolerate[1]", "tolerate:");
    assert!(matches!(
        kind,
        IssueKind::UnknownKeyword {
            field: "tolerance",
            ..
        }
    ));
}

#[test]
fn duplicate_tee_is_reported() {
    let text = replace(&example_text(), "tees: [sim]", "tees: [sim, sim]");
    let kind = single(&text, "attestation.tees[1]", "tees:");
    assert!(matches!(kind, IssueKind::Duplicate { what: "TEE", .. }));
}

#[test]
fn measurement_length_per_algorithm() {
    // A SHA-256-sized digest labelled sha384.
    let short = "sha384:".to_string() + &"ab".repeat(32);
    let text = replace(
        &example_text(),
        &format!("sha384:{}", super::common::WORKER),
        &short,
    );
    let kind = single(&text, "services.worker.measurements[0]", &short);
    assert!(matches!(kind, IssueKind::DigestLength { .. }), "{kind}");
    assert!(kind.to_string().contains("48 bytes"), "{kind}");
    // Plain hex must be 32 or 48 bytes.
    let odd = "ab".repeat(40);
    let text = replace(
        &example_text(),
        &format!("sha384:{}", super::common::WORKER),
        &odd,
    );
    assert!(matches!(
        single(&text, "services.worker.measurements[0]", &odd),
        IssueKind::DigestLength { .. }
    ));
    // Job hashes are SHA-256.
    let job384 = format!("sha384:{}", "cd".repeat(48));
    let text = replace(
        &example_text(),
        &format!("sha256:{}", super::common::JOB),
        &job384,
    );
    assert!(matches!(
        single(&text, "services.driver.jobs[0]", &job384),
        IssueKind::JobNotSha256(_)
    ));
}

#[test]
fn template_referencing_an_undefined_secret() {
    let text = replace(
        &example_text(),
        "{{ secret.sql_url }}",
        "{{ secret.sql_ur }}",
    );
    let kind = single(&text, "services.driver.env.SQL_URL", "SQL_URL:");
    assert_eq!(kind, IssueKind::UndefinedSecret("sql_ur".into()));
    assert_eq!(kind.to_string(), "references undefined secret \"sql_ur\"");
}

#[test]
fn template_rendering_a_key_as_text_is_refused() {
    let text = replace(
        &example_text(),
        "{{ secret.sql_url }}",
        "{{ secret.taxi-footer }}",
    );
    let kind = single(&text, "services.driver.env.SQL_URL", "SQL_URL:");
    assert!(matches!(kind, IssueKind::NotRenderable { ref name, .. } if name == "taxi-footer"));
    let text = replace(
        &example_text(),
        "{{ secret.sql_url }}",
        "{{ secret.taxi-footer | base64 }}",
    );
    Policy::parse(&text).expect("with a filter it renders");
    let text = replace(
        &example_text(),
        "results-cmk.public | pem",
        "results-cmk.key | pem",
    );
    let kind = single(
        &text,
        "services.driver.files[\"/etc/cipherlake/results-cmk.pub.pem\"]",
        "/etc/cipherlake/results-cmk.pub.pem",
    );
    assert!(matches!(kind, IssueKind::NotRenderable { .. }));
}

#[test]
fn malformed_template() {
    let text = replace(&example_text(), "{{ service.name }}", "{{ service.name ");
    assert!(matches!(
        single(&text, "services.driver.args[3]", "args:"),
        IssueKind::Template(_)
    ));
}

#[test]
fn kms_keys_must_name_key_secrets() {
    const WORKER_KEYS: &str = "kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }";
    let text = replace(
        &example_text(),
        WORKER_KEYS,
        "kms_keys: { taxi-footer: [unwrap], sql_url: [unwrap] }",
    );
    let kind = single(
        &text,
        "services.worker.kms_keys.sql_url",
        "sql_url: [unwrap]",
    );
    assert_eq!(
        kind,
        IssueKind::NotAKmsKey {
            name: "sql_url".into(),
            kind: SecretKind::Ascii
        }
    );
    let text = replace(
        &example_text(),
        WORKER_KEYS,
        "kms_keys: { taxi-footer: [unwrap], nope: [unwrap] }",
    );
    assert_eq!(
        single(&text, "services.worker.kms_keys.nope", "nope"),
        IssueKind::UndefinedSecret("nope".into())
    );
    let text = replace(
        &example_text(),
        WORKER_KEYS,
        "kms_keys: { taxi-footer: [unwrap], taxi-pii: [] }",
    );
    assert_eq!(
        single(&text, "services.worker.kms_keys.taxi-pii", "taxi-pii: []"),
        IssueKind::NoRights("taxi-pii".into())
    );
    let text = replace(
        &example_text(),
        WORKER_KEYS,
        "kms_keys: { taxi-footer: [unwrap], taxi-pii: [decrypt] }",
    );
    assert!(matches!(
        single(&text, "services.worker.kms_keys.taxi-pii[0]", "decrypt"),
        IssueKind::UnknownKeyword { .. }
    ));
}

const WORKER_OPERATION: &str =
    "    operation: worker              # serves plan fragments of the driver's jobs\n";

#[test]
fn a_service_without_operation_names_the_new_field() {
    let text = replace(&example_text(), WORKER_OPERATION, "");
    let invalid = invalid(&text);
    assert_eq!(invalid.issues.len(), 1, "{invalid}");
    assert_eq!(
        invalid.issues[0].path.to_string(),
        "services.worker.operation"
    );
    assert_eq!(invalid.issues[0].kind, IssueKind::MissingOperation);
    assert!(
        invalid.to_string().contains("`operation: run`"),
        "{invalid}"
    );
    let text = replace(&example_text(), "operation: worker ", "operation: decrypt ");
    assert!(matches!(
        single(&text, "services.worker.operation", "operation: decrypt"),
        IssueKind::UnknownKeyword { .. }
    ));
}

#[test]
fn operations_decide_jobs_console_and_grants() {
    // run needs allow-listed jobs.
    let text = replace(
        &example_text(),
        "      - sha256:9625ed6f258439ec40d4b47c45866b7287d5ad850483ea7698d1e299543401ce\n",
        "",
    );
    let text = replace(
        &text,
        "    jobs:                          # the only job files the driver may run\n",
        "",
    );
    let found = invalid(&text);
    assert_eq!(found.issues.len(), 1, "{found}");
    assert_eq!(found.issues[0].kind, IssueKind::RunWithoutJobs);
    // Only run has jobs and prints.
    let text = replace(
        &example_text(),
        WORKER_OPERATION,
        "    operation: worker\n    console: full\n    jobs: [sha256:9625ed6f258439ec40d4b47c45866b7287d5ad850483ea7698d1e299543401ce]\n",
    );
    let found = invalid(&text);
    let paths: Vec<String> = found.issues.iter().map(|i| i.path.to_string()).collect();
    assert_eq!(
        paths,
        ["services.worker.console", "services.worker.jobs"],
        "{found}"
    );
    // An encrypt service only wraps.
    let text = replace(&example_text(), "operation: worker ", "operation: encrypt ");
    let found = invalid(&text);
    let kinds: Vec<IssueKind> = found.issues.iter().map(|i| i.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            IssueKind::EncryptUnwraps("taxi-footer".into()),
            IssueKind::EncryptUnwraps("taxi-pii".into())
        ],
        "{found}"
    );
    let text = replace(
        &text,
        "kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }",
        "kms_keys: { taxi-footer: [wrap], taxi-pii: [wrap] }",
    );
    Policy::parse(&text).expect("a wrap-only encrypt service is valid");
}

#[test]
fn debug_printing_needs_a_sim_policy() {
    let text = replace(
        &example_text(),
        WORKER_OPERATION,
        "    operation: worker\n    debug: true\n",
    );
    Policy::parse(&text).expect("debug is allowed in a sim policy");
    let text = replace(&text, "tees: [sim]", "tees: [sgx]");
    assert_eq!(
        single(&text, "services.worker.debug", "debug: true"),
        IssueKind::DebugWithoutSim
    );
}

#[test]
fn services_the_cas_cannot_tell_apart_must_hold_the_same_grants() {
    // A second worker with the worker's measurement and operation but more keys: whoever runs
    // the worker code could attest as either and take both.
    let text = replace(
        &example_text(),
        "users:",
        "  worker2:\n    operation: worker\n    measurements: [sha384:3146f0f69c333bbe3f5f39a1b4685df0d16d9b9da760470bf4f080a8df3338bacf30cdb720eb9b99f436145f649bda1d]\n    kms_keys: { results-cmk: [unwrap] }\nusers:",
    );
    let found = invalid(&text);
    assert_eq!(found.issues.len(), 1, "{found}");
    assert_eq!(found.issues[0].path.to_string(), "services.worker2");
    assert!(matches!(
        found.issues[0].kind,
        IssueKind::IndistinguishableServices { .. }
    ));
    // The same grants are fine (the CAS need not tell them apart), and so is other code.
    let same = replace(
        &text,
        "kms_keys: { results-cmk: [unwrap] }",
        "kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }",
    );
    Policy::parse(&same).expect("same grants");
    let other_code = replace(
        &text,
        "    measurements: [sha384:3146",
        "    measurements: [sha384:4146",
    );
    Policy::parse(&other_code).expect("other code");
    // Spelling the same measurement without its prefix is the same code; so is a service
    // that pins signers where the other pins none; other configuration counts as well.
    let plain_hex = replace(
        &text,
        "    measurements: [sha384:3146",
        "    measurements: [3146",
    );
    assert!(matches!(
        invalid(&plain_hex).issues[0].kind,
        IssueKind::IndistinguishableServices { .. }
    ));
    let with_env = replace(
        &same,
        "    kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }\nusers:",
        "    kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }\n    env: { DB: \"{{ secret.sql_url }}\" }\nusers:",
    );
    assert!(matches!(
        invalid(&with_env).issues[0].kind,
        IssueKind::IndistinguishableServices { .. }
    ));
}

#[test]
fn users_need_usable_keys_and_key_grants() {
    let text = replace(
        &example_text(),
        "kms_keys: { taxi-footer: [wrap], taxi-pii: [wrap] }",
        "kms_keys: { taxi-footer: [wrap], sql_url: [wrap] }",
    );
    assert!(matches!(
        single(&text, "users.ingest.kms_keys.sql_url", "sql_url: [wrap]"),
        IssueKind::NotAKmsKey { .. }
    ));
}

#[test]
fn value_together_with_generate() {
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        "taxi-pii: { kind: aes-256, generate: true, value: AAAA }",
    );
    // Two problems: both sources, and a value that is not a 32-byte key.
    let invalid = invalid(&text);
    let kinds: Vec<_> = invalid.issues.iter().map(|i| i.kind.clone()).collect();
    assert!(
        kinds.contains(&IssueKind::Conflict("value", "generate")),
        "{invalid}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, IssueKind::BadInlineValue(_))),
        "{invalid}"
    );
    assert!(
        invalid
            .issues
            .iter()
            .all(|i| i.location.map(|l| l.line) == Some(line_of(&text, "taxi-pii: { kind")))
    );
}

#[test]
fn inline_values_are_checked_and_never_echoed() {
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA=="; // 19 bytes, not an AES-256 key
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        &format!("taxi-pii: {{ kind: aes-256, value: \"{secret}\" }}"),
    );
    let invalid = invalid(&text);
    assert!(matches!(&invalid.issues[0].kind, IssueKind::BadInlineValue(m) if m.contains("19")));
    assert!(!invalid.to_string().contains(secret));
    let text = replace(
        &example_text(),
        "kind: rsa-2048\n    generate: true",
        "kind: rsa-2048\n    value: MIIB",
    );
    assert!(matches!(
        single(&text, "secrets.results-cmk.value", "value: MIIB"),
        IssueKind::InlineValueNotAllowed(SecretKind::Rsa2048)
    ));
}

#[test]
fn owners_duplicate_ill_formed_and_missing() {
    let owner = "ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12";
    let text = replace(
        &example_text(),
        &format!("  - {owner}\n"),
        &format!(
            "  - {owner}\n  - {}\n",
            owner.to_uppercase().replace("ED25519", "ed25519")
        ),
    );
    assert!(
        matches!(single(&text, "owners[1]", "2152F8").to_string(), s if s.contains("duplicate owner"))
    );
    // The identity point: a weak key that would accept forged signatures.
    let weak = format!("ed25519:01{}", "00".repeat(31));
    let text = replace(&example_text(), owner, &weak);
    assert!(matches!(
        single(&text, "owners[0]", &weak),
        IssueKind::UnusableOwnerKey(_)
    ));
    let text = replace(
        &example_text(),
        &format!(
            "owners:\n  # Replace with the key printed by `cipherlake policy keygen`.\n  - {owner}\n"
        ),
        "owners: []\n",
    );
    assert_eq!(single(&text, "owners", "owners: []"), IssueKind::NoOwner);
}

#[test]
fn names_of_policy_services_and_secrets() {
    let text = replace(
        &example_text(),
        "name: taxi-analytics",
        "name: taxi analytics",
    );
    assert!(matches!(
        single(&text, "name", "name: taxi analytics"),
        IssueKind::InvalidName(_)
    ));
    let text = replace(&example_text(), "  worker:\n", "  work.er:\n");
    assert!(matches!(
        single(&text, "services[\"work.er\"]", "work.er:"),
        IssueKind::InvalidName(_)
    ));
    let text = replace(&example_text(), "TAXI_URI:", "TAXI-URI:");
    assert!(matches!(
        single(&text, "services.driver.env.TAXI-URI", "TAXI-URI:"),
        IssueKind::InvalidEnvName(_)
    ));
    let text = replace(
        &example_text(),
        "/etc/cipherlake/results-cmk.pub.pem",
        "/etc/../shadow",
    );
    assert!(matches!(
        single(
            &text,
            "services.driver.files[\"/etc/../shadow\"]",
            "/etc/../shadow"
        ),
        IssueKind::InvalidFilePath { .. }
    ));
}

#[test]
fn a_service_must_pin_code() {
    let text = replace(
        &example_text(),
        &format!(
            "    measurements:\n      - sha384:{}\n",
            super::common::WORKER
        ),
        "",
    );
    assert_eq!(
        single(&text, "services.worker", "  worker:"),
        IssueKind::NoCodeIdentity
    );
}

#[test]
fn platforms_need_sim() {
    let text = replace(&example_text(), "tees: [sim]", "tees: [sgx]");
    let text = replace(
        &text,
        "  # platforms: [ed25519:<key printed by `cipherlake las init-key`>]",
        &format!("  platforms: [{}]", hex::encode([0x5a; 32])),
    );
    assert_eq!(
        single(&text, "attestation.platforms", "platforms:"),
        IssueKind::PlatformsWithoutSim
    );
}

#[test]
fn import_and_export_consistency() {
    let text = replace(
        &example_text(),
        "      - policy: taxi-reporting",
        "      - policy: taxi-analytics",
    );
    assert_eq!(
        single(
            &text,
            "secrets.results-cmk.export_to[0].policy",
            "policy: taxi-analytics"
        ),
        IssueKind::SelfReference
    );
    let text = replace(
        &example_text(),
        "generate: true\n    export_to:",
        "import_from: { policy: key-vault, secret: cmk }\n    export_to:",
    );
    assert_eq!(
        single(&text, "secrets.results-cmk.export_to", "export_to:"),
        IssueKind::ReExport
    );
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        "taxi-pii: { kind: aes-256, generate: true, import_from: { policy: upstream, secret: pii } }",
    );
    assert_eq!(
        single(&text, "secrets.taxi-pii.import_from", "taxi-pii: { kind"),
        IssueKind::Conflict("generate", "import_from")
    );
}

#[test]
fn certificates_need_a_ca_of_the_right_kind() {
    let base = example_text()
        + "  tls:\n    kind: x509\n    common_name: driver\n    dns: [driver.taxi.svc]\n";
    assert_eq!(single(&base, "secrets.tls", "  tls:"), IssueKind::MissingCa);
    let text = base.clone() + "    ca: sql_url\n";
    assert!(matches!(
        single(&text, "secrets.tls.ca", "ca: sql_url"),
        IssueKind::NotACa { .. }
    ));
    let text = base.clone()
        + "    ca: taxi-ca\n  taxi-ca: { kind: x509-ca, generate: true, common_name: Taxi CA }\n";
    Policy::parse(&text).expect("an x509 issued by an x509-ca is valid");
    let text = replace(&text, "dns: [driver.taxi.svc]", "dns: [driver_taxi]");
    assert!(matches!(
        single(&text, "secrets.tls.dns[0]", "dns:"),
        IssueKind::InvalidDnsName(_)
    ));
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        "taxi-pii: { kind: aes-256, generate: true, ca: x }",
    );
    assert!(matches!(
        single(&text, "secrets.taxi-pii.ca", "taxi-pii: { kind"),
        IssueKind::NotApplicable { field: "ca", .. }
    ));
}

#[test]
fn every_problem_is_reported_together_in_text_order() {
    let mut text = example_text();
    for (from, to) in [
        ("tees: [sim]", "tees: []"),
        ("tolerate: []", "tolerate: [debugging]"),
        ("{{ secret.sql_url }}", "{{ secret.missing }}"),
        (
            "kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }",
            "kms_keys: { taxi-footer: [unwrap], sql_url: [unwrap] }",
        ),
        (
            "taxi-pii: { kind: aes-256, generate: true }",
            "taxi-pii: { kind: aes-257, generate: true }",
        ),
        (
            "      - policy: taxi-reporting",
            "      - policy: taxi-analytics",
        ),
    ] {
        text = replace(&text, from, to);
    }
    let invalid = invalid(&text);
    let lines: Vec<u64> = invalid
        .issues
        .iter()
        .map(|i| i.location.expect("located").line)
        .collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "sorted by line: {lines:?}"
    );
    let paths: Vec<String> = invalid.issues.iter().map(|i| i.path.to_string()).collect();
    // taxi-pii's unknown kind makes driver's kms_keys entry unknown-kind too (not reported twice).
    assert_eq!(
        paths,
        [
            "attestation.tees",
            "attestation.tolerate[0]",
            "services.driver.env.SQL_URL",
            "services.worker.kms_keys.sql_url",
            "secrets.taxi-pii.kind",
            "secrets.results-cmk.export_to[0].policy",
        ],
        "{invalid}"
    );
    let shown = invalid.to_string();
    assert!(shown.starts_with("the policy has 6 problems:"), "{shown}");
    assert!(
        shown.contains(&format!(
            "services.driver.env.SQL_URL (line {}, column",
            line_of(&text, "SQL_URL")
        )),
        "{shown}"
    );
}

#[test]
fn ranges_console_modes_and_misplaced_fields() {
    let text = replace(
        &example_text(),
        "tolerate: []",
        "tolerate: []\n  max_evidence_age: 0",
    );
    assert_eq!(
        single(&text, "attestation.max_evidence_age", "max_evidence_age"),
        IssueKind::Zero
    );
    let text = replace(
        &example_text(),
        "console: row-counts",
        "console: everything",
    );
    let kind = single(&text, "services.driver.console", "console: everything");
    assert!(matches!(
        kind,
        IssueKind::UnknownKeyword {
            field: "console mode",
            ..
        }
    ));
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        "taxi-pii: { kind: aes-256, generate: true, size: 16 }",
    );
    let kind = single(&text, "secrets.taxi-pii.size", "taxi-pii: { kind");
    assert!(matches!(
        kind,
        IssueKind::NotApplicable { field: "size", .. }
    ));
    let text = example_text() + "  random: { kind: binary, generate: true, size: 0 }\n";
    assert!(matches!(
        single(&text, "secrets.random.size", "random:"),
        IssueKind::OutOfRange(_)
    ));
    let text = replace(
        &example_text(),
        "taxi-pii: { kind: aes-256, generate: true }",
        "taxi-pii: { kind: aes-256, generate: true, common_name: x }",
    );
    assert!(matches!(
        single(&text, "secrets.taxi-pii.common_name", "taxi-pii: { kind"),
        IssueKind::NotApplicable {
            field: "common_name",
            ..
        }
    ));
}

#[test]
fn pcrs_need_a_vtpm_kind_a_bank_index_and_sha256_values() {
    let pin = |tees: &str, pcrs: &str| {
        let text = replace(&example_text(), "tees: [sim]", tees);
        replace(
            &text,
            "    console: row-counts\n",
            &format!("    console: row-counts\n    pcrs:\n{pcrs}"),
        )
    };
    let value = hex::encode([7u8; 32]);
    Policy::parse(&pin(
        "tees: [azure-snp-vtpm, azure-tdx-vtpm]",
        &format!("      7: {value}\n"),
    ))
    .expect("PCR 7 pinned on Azure confidential VMs");
    assert_eq!(
        single(
            &pin("tees: [sim]", &format!("      7: {value}\n")),
            "services.driver.pcrs",
            "pcrs:"
        ),
        IssueKind::PcrsWithoutVtpm
    );
    assert_eq!(
        single(
            &pin("tees: [sim-vtpm]", &format!("      24: {value}\n")),
            "services.driver.pcrs.24",
            "24:"
        ),
        IssueKind::PcrIndex(24)
    );
    assert!(matches!(
        single(
            &pin(
                "tees: [sim-vtpm]",
                &format!("      7: sha384:{}\n", hex::encode([7u8; 48]))
            ),
            "services.driver.pcrs.7",
            "7:"
        ),
        IssueKind::PcrNotSha256(_)
    ));
}
