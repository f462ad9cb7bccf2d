//! Attesters against fake configfs-tsm and Gramine trees, and detection.

use std::path::Path;

use cipherlake_attest::Tee;
use cipherlake_attest::attester::{
    AttestError, Attester, DetectConfig, GramineAttester, TsmAttester, detect,
};
use cipherlake_attest::tpm::device::TpmPath;

const REPORT_DATA: [u8; 64] = [0x42; 64];

/// A configfs-tsm entry as the kernel would show it after generating a report.
fn fake_tsm_entry(root: &Path, name: &str, provider: &str, outblob: &[u8]) {
    let entry = root.join(name);
    std::fs::create_dir_all(&entry).expect("entry");
    std::fs::write(entry.join("provider"), format!("{provider}\n")).expect("provider");
    std::fs::write(entry.join("generation"), "1\n").expect("generation");
    std::fs::write(entry.join("outblob"), outblob).expect("outblob");
}

fn fake_gramine(root: &Path, kind: &str) {
    std::fs::write(root.join("attestation_type"), kind).expect("type");
    std::fs::write(root.join("quote"), b"QUOTE").expect("quote");
}

#[test]
fn configfs_tsm_collects_from_an_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tsm_entry(dir.path(), "shared", "tdx_guest", b"TDX-QUOTE");
    let evidence = TsmAttester::new(dir.path())
        .with_entry("shared")
        .attest(&REPORT_DATA)
        .expect("evidence");
    assert_eq!(evidence.tee, Tee::Tdx);
    assert_eq!(evidence.bytes, b"TDX-QUOTE");
    let inblob = std::fs::read(dir.path().join("shared/inblob")).expect("inblob written");
    assert_eq!(inblob, REPORT_DATA);

    fake_tsm_entry(dir.path(), "snp", "sev_guest", b"SNP-REPORT");
    let evidence = TsmAttester::new(dir.path())
        .with_entry("snp")
        .attest(&REPORT_DATA)
        .expect("evidence");
    assert_eq!(evidence.tee, Tee::SevSnp);
}

#[test]
fn configfs_tsm_refuses_unknown_providers_and_missing_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tsm_entry(dir.path(), "odd", "arm_cca_guest", b"TOKEN");
    let err = TsmAttester::new(dir.path())
        .with_entry("odd")
        .attest(&REPORT_DATA)
        .expect_err("unknown provider");
    assert!(matches!(err, AttestError::Interface(_)), "{err}");

    // A fresh entry on a plain directory has no kernel behind it: no generation, no outblob.
    let err = TsmAttester::new(dir.path())
        .attest(&REPORT_DATA)
        .expect_err("no kernel");
    assert!(matches!(err, AttestError::Io { .. }), "{err}");
}

#[test]
fn gramine_collects_a_quote() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_gramine(dir.path(), "dcap");
    let gramine = GramineAttester::probe(dir.path()).expect("dcap available");
    let evidence = gramine.attest(&REPORT_DATA).expect("quote");
    assert_eq!(evidence.tee, Tee::Sgx);
    assert_eq!(evidence.bytes, b"QUOTE");
    let written = std::fs::read(dir.path().join("user_report_data")).expect("written");
    assert_eq!(written, REPORT_DATA);

    let none = tempfile::tempdir().expect("tempdir");
    fake_gramine(none.path(), "none");
    assert!(GramineAttester::probe(none.path()).is_err());
}

#[tokio::test]
async fn detect_prefers_tsm_then_gramine_and_lists_what_it_looked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = DetectConfig {
        tsm_root: dir.path().join("tsm"),
        sev_guest: dir.path().join("sev-guest"),
        tdx_guest: dir.path().join("tdx_guest"),
        tpm: Some(TpmPath::Device(dir.path().join("tpmrm0"))),
        platform_endpoint: None,
        gramine_root: dir.path().join("attestation"),
        las_socket: dir.path().join("las.sock"),
    };
    let err = detect(&config).expect_err("nothing available");
    match &err {
        AttestError::NoneAvailable { looked_for } => {
            assert_eq!(looked_for.len(), 6, "{looked_for:?}");
            let message = err.to_string();
            for place in [
                "configfs-tsm",
                "SEV-SNP guest",
                "TDX guest",
                "Azure vTPM",
                "Gramine",
                "LAS",
            ] {
                assert!(message.contains(place), "{place}: {message}");
            }
        }
        other => panic!("unexpected {other}"),
    }
    // A TDX guest device alone is noted but cannot quote.
    std::fs::write(&config.tdx_guest, b"").expect("tdx device");
    let err = detect(&config).expect_err("a TDREPORT is no quote");
    assert!(err.to_string().contains("cannot become a quote"), "{err}");

    // The LAS: sim-vtpm when a TPM was chosen, sim otherwise.
    let _listener = std::os::unix::net::UnixListener::bind(&config.las_socket).expect("socket");
    assert!(matches!(detect(&config), Ok(Attester::Vtpm(_))));
    let chosen_tpm = config.tpm.take();
    assert!(matches!(detect(&config), Ok(Attester::Sim { .. })));
    config.tpm = chosen_tpm;

    std::fs::create_dir(&config.gramine_root).expect("gramine dir");
    fake_gramine(&config.gramine_root, "dcap");
    let attester = detect(&config).expect("gramine");
    assert!(matches!(attester, Attester::Gramine(_)));
    let evidence = attester.attest(&REPORT_DATA).await.expect("quote");
    assert_eq!(evidence.tee, Tee::Sgx);

    std::fs::write(&config.sev_guest, b"").expect("sev-guest device");
    assert!(matches!(detect(&config), Ok(Attester::SevGuest(_))));

    std::fs::create_dir(&config.tsm_root).expect("tsm dir");
    assert!(matches!(detect(&config), Ok(Attester::ConfigfsTsm(_))));
}
