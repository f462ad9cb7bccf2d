//! `cipherlake evidence verify` on the real fixtures, as an operator runs it, and the LAS
//! commands.

use super::support::{cipherlake, fails, ok};

fn fixture(path: &str) -> String {
    format!(
        "{}/../../../shared/fixtures/evidence/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn claims(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("claims are JSON")
}

#[test]
fn real_quotes_and_reports_verify() {
    let (sgx, sgx_collateral) = (
        fixture("sgx/sgx_quote"),
        fixture("sgx/sgx_quote_collateral.json"),
    );
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "sgx",
        &sgx,
        "--collateral",
        &sgx_collateral,
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(
        c["measurement"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );

    let (tdx, tdx_collateral) = (
        fixture("tdx/tdx_quote"),
        fixture("tdx/tdx_quote_collateral.json"),
    );
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "tdx",
        &tdx,
        "--collateral",
        &tdx_collateral,
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(c["tcb_status"], "up-to-date");

    let (old, old_collateral) = (
        fixture("tdx/tdx_quote_outdated"),
        fixture("tdx/tdx_quote_outdated_collateral.json"),
    );
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "tdx",
        &old,
        "--collateral",
        &old_collateral,
        "--at",
        "2026-03-01T00:00:00Z",
    ]);
    assert_eq!(c["tcb_status"], "out-of-date");

    let (report, vcek, chain) = (
        fixture("snp/report_milan.hex"),
        fixture("snp/vcek_milan.der"),
        fixture("snp/cert_chain_milan"),
    );
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "sev-snp",
        &report,
        "--vcek",
        &vcek,
        "--chain",
        &chain,
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(
        c["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
}

#[test]
fn refused_evidence_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut quote = std::fs::read(fixture("sgx/sgx_quote")).unwrap();
    quote[100] ^= 1;
    let tampered = dir.path().join("quote");
    std::fs::write(&tampered, quote).unwrap();
    let collateral = fixture("sgx/sgx_quote_collateral.json");
    let reason = fails(&[
        "evidence",
        "verify",
        "--tee",
        "sgx",
        tampered.to_str().unwrap(),
        "--collateral",
        &collateral,
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert!(reason.contains("signature"), "{reason}");
    let expired = fails(&[
        "evidence",
        "verify",
        "--tee",
        "sgx",
        &fixture("sgx/sgx_quote"),
        "--collateral",
        &collateral,
        "--at",
        "2030-01-01T00:00:00Z",
    ]);
    assert!(expired.contains("expired"), "{expired}");
}

#[test]
fn las_init_key_prints_the_public_key_and_keeps_the_file_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("platform.key");
    let public = ok(&["las", "init-key", key.to_str().unwrap()]);
    assert!(
        public.trim().len() == 64 && public.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "{public}"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = cipherlake(&["las", "init-key", key.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing key is never overwritten"
    );
}

#[test]
fn azure_confidential_vm_evidence_verifies_with_its_nonce() {
    let milan = fixture("azure-vtpm/snp-milan-evidence-v0.json");
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "azure-snp-vtpm",
        &milan,
        "--nonce",
        "6368616c6c656e6765",
    ]);
    assert_eq!(c["tee"], "azure-snp-vtpm");
    assert_eq!(
        c["vtpm"]["tpm_pcrs"][0],
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    assert_eq!(c["snp"]["product"], "Milan");
    let genoa = fixture("azure-vtpm/snp-genoa-evidence-v0.json");
    let c = claims(&[
        "evidence",
        "verify",
        "--tee",
        "azure-snp-vtpm",
        &genoa,
        "--nonce",
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
    ]);
    assert_eq!(c["snp"]["product"], "Genoa");

    let err = fails(&[
        "evidence",
        "verify",
        "--tee",
        "azure-snp-vtpm",
        &milan,
        "--nonce",
        "6368616c6c656e6766",
    ]);
    assert!(err.contains("is not the nonce"), "{err}");
    let err = fails(&["evidence", "verify", "--tee", "azure-snp-vtpm", &milan]);
    assert!(err.contains("--nonce HEX is required"), "{err}");
    // The TDX sample's TD quote needs DCAP collateral, which does not ship with it.
    let tdx = fixture("azure-vtpm/tdx-evidence-v1.json");
    let err = fails(&[
        "evidence",
        "verify",
        "--tee",
        "azure-tdx-vtpm",
        &tdx,
        "--nonce",
        "6368616c6c656e6765",
    ]);
    assert!(err.contains("--collateral FILE is required"), "{err}");
}

#[test]
fn an_amd_crl_is_checked_when_given() {
    let crl = format!(
        "{}/../cipherlake-attest/tests/data/snp-test-pki/crl-empty.der",
        env!("CARGO_MANIFEST_DIR")
    );
    // A CRL naming AMD's Milan ARK but not signed by it.
    let err = fails(&[
        "evidence",
        "verify",
        "--tee",
        "azure-snp-vtpm",
        &fixture("azure-vtpm/snp-milan-evidence-v0.json"),
        "--nonce",
        "6368616c6c656e6765",
        "--crl",
        &crl,
    ]);
    assert!(
        err.contains("bad signature over the AMD Milan CRL"),
        "{err}"
    );
}
