//! The vTPM attester against a real software TPM (swtpm, started and provisioned by
//! `scripts/swtpm`; its address in `CIPHERLAKE_TEST_SWTPM`): the TPM commands, a quote verified
//! as evidence, and sim-vtpm end to end with the LAS standing in for Azure's paravisor.

use cipherlake_attest::attester::{
    AK_HANDLE, Attester, HclSource, REPORT_DATA_INDEX, VtpmAttester,
};
use cipherlake_attest::las::{self, Las};
use cipherlake_attest::sim::PlatformKey;
use cipherlake_attest::tpm::device::{Tpm, TpmPath};
use cipherlake_attest::tpm::quote::{self, QuoteError, QuoteInfo};
use cipherlake_attest::vtpm::VtpmEvidence;
use cipherlake_attest::{Evidence, Tee, Verifier, VerifyError, VerifyOptions, verify_binding};

/// One software TPM serves the whole test binary: tests take turns.
static TPM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn swtpm() -> TpmPath {
    let addr = std::env::var("CIPHERLAKE_TEST_SWTPM").expect(
        "CIPHERLAKE_TEST_SWTPM is not set: run the tests through scripts/test, which starts \
         and provisions a software TPM (scripts/swtpm)",
    );
    addr.parse()
        .expect("CIPHERLAKE_TEST_SWTPM is tcp:HOST:PORT")
}

fn ak(tpm: &mut Tpm) -> rsa::PublicKey {
    let (n, e) = tpm.rsa_public(AK_HANDLE).expect("AK public part");
    rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(&n),
        rsa::BoxedUint::from_be_slice_vartime(&e),
    )
    .expect("RSA key")
}

#[test]
fn the_tpm_quotes_its_pcrs_over_the_nonce_with_the_attestation_key() {
    let _turn = TPM.blocking_lock();
    let mut tpm = Tpm::open(&swtpm()).expect("swtpm");
    let data = [0x5a; 64];
    tpm.nv_write(REPORT_DATA_INDEX, &data).expect("NV write");
    assert_eq!(tpm.nv_read(REPORT_DATA_INDEX).expect("NV read"), data);
    let nonce = [0x11; 64];
    let q = tpm.quote(AK_HANDLE, &nonce).expect("quote");
    let pcrs = tpm.pcrs().expect("PCR read");
    assert_eq!(pcrs.len(), 24);
    let info = QuoteInfo::parse(&q.message).expect("TPMS_ATTEST");
    quote::verify_signature(&ak(&mut tpm), &q.message, &q.signature).expect("signed by the AK");
    quote::check_nonce(&info, &nonce).expect("nonce");
    info.check_pcr_values(&pcrs).expect("PCR digest");
    // The same quote under another nonce, or with a PCR value moved, is refused.
    assert!(matches!(
        quote::check_nonce(&info, &[0x12; 64]),
        Err(QuoteError::NonceMismatch { .. })
    ));
    let mut moved = pcrs.clone();
    moved[0] = vec![0xee; 32];
    assert_eq!(
        info.check_pcr_values(&moved),
        Err(QuoteError::PcrDigestMismatch)
    );
    // A missing object is a clear TPM error.
    let err = tpm.rsa_public(0x8100_0999).expect_err("no such key");
    assert!(err.to_string().contains("ReadPublic"), "{err}");
}

async fn sim_vtpm(dir: &std::path::Path) -> (VtpmAttester, Verifier, std::path::PathBuf) {
    let socket = dir.join("las.sock");
    let key = PlatformKey::generate().expect("key");
    let verifier = Verifier::new().with_sim_platform_key(key.public_key());
    let las = Las::bind(key, &socket).expect("bind").with_tpm(swtpm());
    tokio::spawn(las.run());
    (
        VtpmAttester::new(swtpm(), HclSource::Las(socket.clone())),
        verifier,
        socket,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_vtpm_evidence_verifies_and_binds_the_report_data() {
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (attester, verifier, _) = sim_vtpm(dir.path()).await;
    let binding = [0x42; 64];
    let evidence = Attester::Vtpm(attester)
        .attest(&binding)
        .await
        .expect("evidence");
    assert_eq!(evidence.tee, Tee::SimVtpm);
    let claims = verifier
        .verify(&evidence, &VerifyOptions::now().with_nonce(&binding))
        .expect("verifies");
    verify_binding(&claims, &binding).expect("binds");
    let vtpm = claims.vtpm.as_ref().expect("vtpm claims");
    assert_eq!(vtpm.user_data, binding);
    assert_eq!(vtpm.vm_configuration["sim-vtpm"], true);
    // The LAS measured this test binary.
    use sha2::Digest as _;
    let exe = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    assert_eq!(claims.measurement, sha2::Sha384::digest(&exe).to_vec());
    // Another nonce is refused.
    let err = verifier
        .verify(&evidence, &VerifyOptions::now().with_nonce(&[0x43; 64]))
        .expect_err("other nonce");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::NonceMismatch { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_left_over_from_earlier_user_data_fails() {
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, verifier, socket) = sim_vtpm(dir.path()).await;
    // The HCL report made for earlier user data...
    let mut tpm = Tpm::open(&swtpm()).expect("swtpm");
    tpm.nv_write(REPORT_DATA_INDEX, &[0x01; 64])
        .expect("NV write");
    drop(tpm); // the LAS reads the same TPM, which serves one connection at a time
    let stale = las::request_hcl_report(&socket).await.expect("HCL report");
    let mut tpm = Tpm::open(&swtpm()).expect("swtpm");
    // ...with a fresh quote over new report data.
    let binding = [0x02; 64];
    tpm.nv_write(REPORT_DATA_INDEX, &binding).expect("NV write");
    let q = tpm.quote(AK_HANDLE, &binding).expect("quote");
    let json = VtpmEvidence {
        version: 2,
        quote_message: q.message,
        quote_signature: q.signature,
        pcrs: tpm.pcrs().expect("pcrs"),
        hcl_report: stale,
        vcek: None,
        td_quote: None,
    }
    .to_json();
    let err = verifier
        .verify(
            &Evidence::new(Tee::SimVtpm, json),
            &VerifyOptions::now().with_nonce(&binding),
        )
        .expect_err("stale HCL report");
    assert!(matches!(err, VerifyError::UserDataMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_las_without_a_tpm_makes_no_sim_vtpm_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("las.sock");
    tokio::spawn(
        Las::bind(PlatformKey::generate().expect("key"), &socket)
            .expect("bind")
            .run(),
    );
    let err = las::request_hcl_report(&socket).await.expect_err("no TPM");
    assert!(err.to_string().contains("without a TPM"), "{err}");
}
