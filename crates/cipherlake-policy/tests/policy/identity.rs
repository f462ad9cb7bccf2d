//! TEE identity fields on the real samples: each pinned to what the sample reports is
//! accepted, and with one bit changed (or a minimum one above) refused, naming the field and
//! both values. Then the SEV-SNP defaults (VMPL 0, no migration agent, an evaluated TCB) and
//! validation of the sections.

use cipherlake_attest::dcap::{DcapCollateral, verify_quote};
use cipherlake_attest::encoding::decode_binary_or_hex;
use cipherlake_attest::snp::{SnpCollateral, SnpTrust, verify_report};
use cipherlake_attest::{Claims, Evidence, Tee, Verifier, VerifyOptions};
use cipherlake_policy::{IssueKind, Policy, Reason, evaluate};

use super::common::{NOW, example_text, job, replace};

const JULY_2025: u64 = 1_751_328_000;

fn fixture(rel: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/evidence")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dcap_claims(quote: &str, collateral: &str) -> Claims {
    let collateral = DcapCollateral::from_json(&fixture(collateral)).expect("collateral");
    verify_quote(&fixture(quote), &collateral, JULY_2025).expect("sample verifies")
}

fn sgx() -> Claims {
    dcap_claims("sgx/sgx_quote", "sgx/sgx_quote_collateral.json")
}

fn tdx() -> Claims {
    dcap_claims("tdx/tdx_quote", "tdx/tdx_quote_collateral.json")
}

fn snp() -> Claims {
    let collateral = SnpCollateral::new(
        &fixture("snp/vcek_milan.der"),
        Some(&fixture("snp/cert_chain_milan")),
    )
    .expect("VCEK");
    let report = decode_binary_or_hex(&fixture("snp/report_milan.hex"));
    verify_report(&report, &collateral, &SnpTrust::default(), JULY_2025).expect("verifies")
}

fn azure_snp() -> Claims {
    let evidence = Evidence::new(
        Tee::AzureSnpVtpm,
        fixture("azure-vtpm/snp-milan-evidence-v0.json"),
    );
    Verifier::new()
        .verify(&evidence, &VerifyOptions::now().with_nonce(b"challenge"))
        .expect("verifies")
}

/// The example policy accepting every real TEE, its driver carrying `section` (YAML lines
/// indented for the service) and tolerating `tolerate`.
fn policy(section: &str, tolerate: &str) -> Policy {
    let text = replace(
        &example_text(),
        "tees: [sim]",
        "tees: [sgx, tdx, sev-snp, azure-snp-vtpm]",
    );
    let text = replace(&text, "tolerate: []", &format!("tolerate: [{tolerate}]"));
    let text = replace(
        &text,
        "    console: row-counts\n",
        &format!("    console: row-counts\n{section}"),
    );
    Policy::parse(&text).unwrap_or_else(|e| panic!("{e}\n{section}"))
}

/// The identity reasons of evaluating `claims` for the driver.
fn identity_reasons(policy: &Policy, claims: &Claims) -> Vec<Reason> {
    let request = cipherlake_policy::Request {
        intent: cipherlake_policy::Intent::Perform(cipherlake_policy::Operation::Run),
        job_hash: Some(job()),
    };
    evaluate(policy, "driver", claims, &request, NOW)
        .reasons
        .into_iter()
        .filter(|r| {
            matches!(
                r,
                Reason::FieldMismatch { .. }
                    | Reason::BelowMinimum { .. }
                    | Reason::MigrationAgentNotTolerated
                    | Reason::TcbNotEvaluated { .. }
            )
        })
        .collect()
}

fn flip(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[0] ^= 0x01;
    out
}

/// Pins `section.field` (a single value or, for lists, one entry) to `value`, then to `value`
/// with one bit flipped.
fn exact_field(claims: &Claims, section: &str, field: &str, list: bool, value: &[u8]) {
    let tolerate = "unevaluated-tcb";
    let yaml = |v: &[u8]| {
        let v = hex::encode(v);
        if list {
            format!("    {section}:\n      {field}: [\"{v}\"]\n")
        } else {
            format!("    {section}:\n      {field}: \"{v}\"\n")
        }
    };
    let accepted = identity_reasons(&policy(&yaml(value), tolerate), claims);
    assert!(accepted.is_empty(), "{section}.{field}: {accepted:?}");
    let refused = identity_reasons(&policy(&yaml(&flip(value)), tolerate), claims);
    assert_eq!(
        refused,
        [Reason::FieldMismatch {
            field: format!("{section}.{field}"),
            expected: hex::encode(flip(value)),
            found: Some(hex::encode(value)),
        }],
        "{section}.{field}"
    );
    let message = refused[0].to_string();
    assert!(
        message.contains(&format!("{section}.{field}")) && message.contains(&hex::encode(value)),
        "{message}"
    );
}

/// Pins `yaml_of(minimum)`: the reported value is accepted, one above it refused.
fn minimum_field(claims: &Claims, field: &str, reported: u64, yaml_of: impl Fn(u64) -> String) {
    let tolerate = "unevaluated-tcb";
    let accepted = identity_reasons(&policy(&yaml_of(reported), tolerate), claims);
    assert!(accepted.is_empty(), "{field}: {accepted:?}");
    let refused = identity_reasons(&policy(&yaml_of(reported + 1), tolerate), claims);
    assert_eq!(
        refused,
        [Reason::BelowMinimum {
            field: field.to_string(),
            minimum: (reported + 1).to_string(),
            found: Some(reported.to_string()),
        }],
        "{field}"
    );
}

#[test]
fn sgx_fields_of_the_real_quote() {
    let claims = sgx();
    let sgx = claims.sgx.clone().expect("SGX claims");
    exact_field(&claims, "sgx", "config_id", false, &sgx.config_id);
    minimum_field(
        &claims,
        "sgx.min_config_svn",
        u64::from(sgx.config_svn),
        |v| format!("    sgx:\n      min_config_svn: {v}\n"),
    );
}

#[test]
fn tdx_fields_of_the_real_quote() {
    let claims = tdx();
    let td = claims.tdx.clone().expect("TDX claims");
    exact_field(&claims, "tdx", "mr_td", true, &claims.measurement);
    for (i, rtmr) in claims.rtmrs.iter().enumerate() {
        exact_field(&claims, "tdx", &format!("rtmr{i}"), false, rtmr);
    }
    let config_id = claims.host_data.clone().expect("MRCONFIGID");
    exact_field(&claims, "tdx", "mr_config_id", false, &config_id);
    exact_field(&claims, "tdx", "mr_owner", false, &td.mr_owner);
    exact_field(
        &claims,
        "tdx",
        "mr_owner_config",
        false,
        &td.mr_owner_config,
    );
    exact_field(&claims, "tdx", "mr_seam", true, &td.mr_seam);
    exact_field(&claims, "tdx", "td_attributes", false, &td.td_attributes);
    exact_field(&claims, "tdx", "xfam", false, &td.xfam);
    // TEE_TCB_SVN: the reported bytes are the minimum; one byte above is refused.
    let svn = hex::encode(&td.tee_tcb_svn);
    let yaml = |v: &str| format!("    tdx:\n      min_tee_tcb_svn: \"{v}\"\n");
    assert!(identity_reasons(&policy(&yaml(&svn), ""), &claims).is_empty());
    let mut higher = td.tee_tcb_svn.clone();
    higher[0] += 1;
    let refused = identity_reasons(&policy(&yaml(&hex::encode(&higher)), ""), &claims);
    assert!(
        matches!(refused.as_slice(), [Reason::BelowMinimum { field, .. }] if field == "tdx.min_tee_tcb_svn"),
        "{refused:?}"
    );
}

#[test]
fn sev_snp_fields_of_the_real_reports() {
    for claims in [snp(), azure_snp()] {
        let s = claims.snp.clone().expect("SNP claims");
        exact_field(&claims, "sev_snp", "measurement", true, &claims.measurement);
        let host_data = claims.host_data.clone().expect("HOST_DATA");
        exact_field(&claims, "sev_snp", "host_data", false, &host_data);
        exact_field(&claims, "sev_snp", "id_key_digest", false, &s.id_key_digest);
        exact_field(
            &claims,
            "sev_snp",
            "author_key_digest",
            false,
            &s.author_key_digest,
        );
        exact_field(&claims, "sev_snp", "family_id", false, &s.family_id);
        exact_field(&claims, "sev_snp", "image_id", false, &s.image_id);
        minimum_field(
            &claims,
            "sev_snp.min_guest_svn",
            u64::from(claims.svn.expect("guest svn")),
            |v| format!("    sev_snp:\n      min_guest_svn: {v}\n"),
        );
        let tcb = s.reported_tcb;
        for (name, value) in [
            ("bootloader", tcb.bootloader),
            ("tee", tcb.tee),
            ("snp", tcb.snp),
            ("microcode", tcb.microcode),
        ] {
            // The other components at zero: only this one can fail.
            minimum_field(
                &claims,
                &format!("sev_snp.min_reported_tcb.{name}"),
                u64::from(value),
                |v| format!("    sev_snp:\n      min_reported_tcb: {{ {name}: {v} }}\n"),
            );
        }
    }
}

#[test]
fn sev_snp_defaults_refuse_other_vmpls_migration_agents_and_unevaluated_tcbs() {
    let claims = snp();
    let vmpl = claims.snp.as_ref().expect("snp").vmpl;
    // VMPL 0 unless the policy says otherwise.
    let other = if vmpl == 0 { 1 } else { 0 };
    let vmpl_pinned = |v: u32| {
        policy(
            &format!("    sev_snp:\n      vmpl: {v}\n"),
            "unevaluated-tcb",
        )
    };
    assert!(identity_reasons(&vmpl_pinned(vmpl), &claims).is_empty());
    assert_eq!(
        identity_reasons(&vmpl_pinned(other), &claims),
        [Reason::FieldMismatch {
            field: "sev_snp.vmpl".into(),
            expected: other.to_string(),
            found: Some(vmpl.to_string()),
        }]
    );
    let mut at_vmpl_2 = claims.clone();
    at_vmpl_2.snp.as_mut().expect("snp").vmpl = 2;
    assert!(matches!(
        identity_reasons(&policy("", "unevaluated-tcb"), &at_vmpl_2).as_slice(),
        [Reason::FieldMismatch { field, .. }] if field == "sev_snp.vmpl"
    ));
    // A guest policy allowing a migration agent, unless tolerated.
    let mut migratable = claims.clone();
    migratable
        .snp
        .as_mut()
        .expect("snp")
        .policy
        .migrate_ma_allowed = true;
    assert_eq!(
        identity_reasons(&policy("", "unevaluated-tcb"), &migratable),
        [Reason::MigrationAgentNotTolerated]
    );
    assert!(
        identity_reasons(&policy("", "unevaluated-tcb, migration-agent"), &migratable).is_empty()
    );
    // No TCB verdict: refused unless a minimum is set or unevaluated-tcb is tolerated.
    let refused = identity_reasons(&policy("", ""), &claims);
    assert_eq!(refused, [Reason::TcbNotEvaluated { tee: Tee::SevSnp }]);
    assert!(refused[0].to_string().contains("min_reported_tcb"));
    let minimum = policy(
        "    sev_snp:\n      min_reported_tcb: { microcode: 1 }\n",
        "",
    );
    assert!(identity_reasons(&minimum, &claims).is_empty());
}

#[test]
fn a_pinned_field_the_evidence_does_not_report_is_refused() {
    // An Azure Attestation token about SEV-SNP carries no report fields to compare.
    let mut token = snp();
    token.tee = Tee::AzureSnpVtpm;
    token.snp = None;
    let refused = identity_reasons(
        &policy(
            &format!("    sev_snp:\n      host_data: \"{}\"\n", "00".repeat(32)),
            "unevaluated-tcb",
        ),
        &token,
    );
    assert!(
        refused.iter().any(|r| matches!(r, Reason::FieldMismatch { field, found: None, .. } if field == "sev_snp.host_data")),
        "{refused:?}"
    );
}

#[test]
fn sections_are_validated_with_their_field_paths() {
    let refused = |tees: &str, section: &str| {
        let text = replace(&example_text(), "tees: [sim]", tees);
        let text = replace(
            &text,
            "    console: row-counts\n",
            &format!("    console: row-counts\n{section}"),
        );
        match Policy::parse(&text) {
            Err(cipherlake_policy::PolicyError::Invalid(invalid)) => invalid
                .issues
                .iter()
                .map(|i| (i.path.to_string(), i.kind.clone()))
                .collect::<Vec<_>>(),
            other => panic!("expected validation issues: {other:?}"),
        }
    };
    assert_eq!(
        refused("tees: [sgx]", "    tdx:\n      rtmr1: \"00\"\n"),
        [
            (
                "services.driver.tdx".into(),
                IssueKind::SectionWithoutTee("tdx")
            ),
            (
                "services.driver.tdx.rtmr1".into(),
                IssueKind::HexLength {
                    expected: 48,
                    found: 1
                }
            ),
        ]
    );
    assert_eq!(
        refused(
            "tees: [sev-snp]",
            &format!(
                "    sev_snp:\n      measurement: [\"{}\", \"00\"]\n",
                "11".repeat(48)
            ),
        ),
        [(
            "services.driver.sev_snp.measurement[1]".into(),
            IssueKind::HexLength {
                expected: 48,
                found: 1
            }
        )]
    );
    // The old SEV-SNP meaning of signers is refused with the new fields named.
    let issues = refused(
        "tees: [sev-snp]",
        &format!("    signers: [sha384:{}]\n", "22".repeat(48)),
    );
    assert_eq!(
        issues,
        [("services.driver.signers".into(), IssueKind::SnpSignersSplit)]
    );
    assert!(
        IssueKind::SnpSignersSplit
            .to_string()
            .contains("sev_snp.author_key_digest")
    );
    // Sim may carry any section: the LAS emulates the claims for tests.
    Policy::parse(&replace(
        &example_text(),
        "    console: row-counts\n",
        &format!(
            "    console: row-counts\n    tdx:\n      rtmr0: \"{}\"\n",
            "00".repeat(48)
        ),
    ))
    .expect("sim policy with a tdx section");
    // An unknown field in a section is a parse error.
    let text = replace(
        &replace(&example_text(), "tees: [sim]", "tees: [tdx]"),
        "    console: row-counts\n",
        "    console: row-counts\n    tdx:\n      rtmr4: \"00\"\n",
    );
    assert!(Policy::parse(&text).is_err());
}

#[test]
fn the_real_sgx_quote_is_admitted_by_signer_alone() {
    // A service pinned by MRSIGNER and product id, no MRENCLAVE: an SGX enclave "by signer".
    let claims = sgx();
    let signer = hex::encode(claims.signer.as_ref().expect("MRSIGNER"));
    let text = replace(&example_text(), "tees: [sim]", "tees: [sgx]");
    let text = replace(
        &text,
        "tolerate: []",
        "tolerate: [outdated-tcb, sw-hardening-needed, configuration-needed]",
    );
    let text = text.replace(
        &format!(
            "    measurements:                  # sim: SHA-384 of the driver executable\n      - sha384:{}\n",
            super::common::DRIVER
        ),
        &format!(
            "    signers: [sha256:{signer}]\n    product_id: {}\n",
            claims.product_id.expect("product id")
        ),
    );
    let policy = Policy::parse(&text).expect("valid");
    let request = cipherlake_policy::Request {
        intent: cipherlake_policy::Intent::Perform(cipherlake_policy::Operation::Run),
        job_hash: Some(job()),
    };
    let decision = evaluate(&policy, "driver", &claims, &request, NOW);
    let reasons: Vec<&str> = decision.reasons.iter().map(Reason::code).collect();
    // The sample is a debug enclave or not; whatever else it reports, the identity passes.
    assert!(
        !reasons.contains(&"signer-not-allowed") && !reasons.contains(&"measurement-not-allowed"),
        "{reasons:?}"
    );
}

#[test]
fn dcap_collateral_below_the_minimum_number_or_too_old_is_refused() {
    // The TDX sample was judged with TCB info number 17, issued 2025-06-19T10:16:03Z.
    let claims = tdx();
    assert_eq!(
        claims.collateral.map(|c| c.tcb_evaluation_data_number),
        Some(17)
    );
    let with = |line: &str| {
        let text = replace(&example_text(), "tees: [sim]", "tees: [tdx]");
        let text = replace(&text, "tolerate: []", &format!("tolerate: []\n  {line}"));
        Policy::parse(&text).expect("valid")
    };
    let request = cipherlake_policy::Request {
        intent: cipherlake_policy::Intent::Perform(cipherlake_policy::Operation::Run),
        job_hash: Some(job()),
    };
    let too_old = |policy: &Policy, now: u64| {
        evaluate(policy, "driver", &claims, &request, now)
            .reasons
            .into_iter()
            .filter(|r| r.code() == "collateral-too-old")
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    };
    assert!(too_old(&with("min_tcb_evaluation_data_number: 17"), JULY_2025).is_empty());
    let refused = too_old(&with("min_tcb_evaluation_data_number: 18"), JULY_2025);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains("17") && refused[0].contains("18"),
        "{refused:?}"
    );
    // Twelve days after issue: accepted with a 30-day limit, refused with a 7-day one.
    assert!(too_old(&with("max_collateral_age: 2592000"), JULY_2025).is_empty());
    let refused = too_old(&with("max_collateral_age: 604800"), JULY_2025);
    assert!(refused[0].contains("604800"), "{refused:?}");
}
