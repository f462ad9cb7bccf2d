//! Collateral the CAS trusts: the operator imports it; a superseded TCB info is refused at
//! import; the CAS's AMD CRLs apply to every SEV-SNP attestation.

use cipherlake_cas::CasError;

use crate::common::Env;

use crate::common::{attest_with_milan_report, evidence_fixture as fixture};

/// The TDX sample's collateral with its TCB evaluation data number changed to `number`.
fn tdx_collateral_numbered(number: u32) -> Vec<u8> {
    let mut json: serde_json::Value =
        serde_json::from_slice(&fixture("tdx/tdx_quote_collateral.json")).unwrap();
    let tcb = json["tcb_info"].as_str().unwrap().replace(
        "\"tcbEvaluationDataNumber\":17",
        &format!("\"tcbEvaluationDataNumber\":{number}"),
    );
    json["tcb_info"] = tcb.into();
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test]
async fn the_operator_imports_and_lists_collateral_and_a_superseded_tcb_info_is_refused() {
    let env = Env::start().await;
    let token = env.operator_token();
    let held = env
        .client
        .import_collateral(&token, &fixture("tdx/tdx_quote_collateral.json"))
        .await
        .expect("imported");
    assert_eq!(held.id, "dcap:tdx:B0C06F000000");
    assert_eq!(held.number, Some(17));
    assert_eq!(
        held.expires,
        Some(cipherlake_attest::time::parse_rfc3339("2025-07-19T10:16:03Z").unwrap())
    );
    // A newer TCB info for the FMSPC replaces it; the older one is then refused.
    env.client
        .import_collateral(&token, &tdx_collateral_numbered(18))
        .await
        .expect("newer");
    let err = env
        .client
        .import_collateral(&token, &fixture("tdx/tdx_quote_collateral.json"))
        .await
        .expect_err("superseded");
    assert!(err.to_string().contains("superseded"), "{err}");
    let listed = env.client.collateral(&token).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].number, Some(18));
    // Without the operator token, or not collateral at all.
    let err = env.client.collateral("wrong").await.expect_err("no token");
    assert!(matches!(err, CasError::Unauthorized(_)), "{err:?}");
    let err = env
        .client
        .import_collateral(&token, b"not collateral")
        .await
        .expect_err("garbage");
    assert!(matches!(err, CasError::BadRequest(_)), "{err:?}");
    let log = env.audit().await;
    assert!(
        log.entries
            .iter()
            .any(|e| e.body.contains("collateral-imported"))
    );
}

#[tokio::test]
async fn the_cas_checks_sev_snp_chains_against_the_crls_it_holds() {
    let env = Env::start().await;
    let text = env.policy("snp", "sev-snp", &"00".repeat(48), None);
    env.apply("snp", &text).await.unwrap();
    // The real report verifies (it cannot bind this nonce).
    let err = attest_with_milan_report(&env, "snp", true)
        .await
        .expect_err("an old report");
    assert!(err.to_string().contains("report-data-mismatch"), "{err}");
    assert!(!err.to_string().contains("evidence-invalid"), "{err}");
    // A CRL naming AMD's Milan ARK, not signed by it, imported by the operator: every SEV-SNP
    // chain is now checked against it.
    let crl = std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../cipherlake-attest/tests/data/snp-test-pki/crl-empty.der"),
    )
    .unwrap();
    let held = env
        .client
        .import_collateral(&env.operator_token(), &crl)
        .await
        .unwrap();
    assert!(
        held.id.starts_with("amd-crl:") && held.id.contains("ARK-Milan"),
        "{}",
        held.id
    );
    let err = attest_with_milan_report(&env, "snp", true)
        .await
        .expect_err("checked against the held CRL");
    assert!(
        err.to_string()
            .contains("bad signature over the AMD Milan CRL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_report_without_its_vcek_verifies_with_the_one_the_operator_imported() {
    let env = Env::start().await;
    let text = env.policy("snp", "sev-snp", &"00".repeat(48), None);
    env.apply("snp", &text).await.unwrap();
    let attest = || attest_with_milan_report(&env, "snp", false);
    let err = attest().await.expect_err("no VCEK");
    assert!(err.to_string().contains("missing collateral"), "{err}");
    let held = env
        .client
        .import_collateral(&env.operator_token(), &fixture("snp/vcek_milan.der"))
        .await
        .expect("VCEK imported");
    assert!(
        held.id.starts_with("amd-vek:") && held.expires.is_some(),
        "{held:?}"
    );
    // Now the report verifies with the imported VCEK (it cannot bind this nonce).
    let err = attest().await.expect_err("an old report");
    assert!(
        err.to_string().contains("report-data-mismatch")
            && !err.to_string().contains("evidence-invalid"),
        "{err}"
    );
}
