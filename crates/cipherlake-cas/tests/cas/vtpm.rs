//! A workload attests to the CAS with vTPM evidence from a real software TPM (swtpm, started
//! by `scripts/swtpm`; address in `CIPHERLAKE_TEST_SWTPM`), the LAS standing in for Azure's
//! paravisor (sim-vtpm). From the TPM quote to the released configuration, the production path.

use cipherlake_attest::attester::{Attester, HclSource, VtpmAttester};
use cipherlake_attest::las::Las;
use cipherlake_attest::sim::PlatformKey;
use cipherlake_attest::tpm::device::Tpm;
use cipherlake_cas::CasError;
use cipherlake_cas::client::attester_evidence;
use cipherlake_policy::Operation;

use super::common::{Env, JOB, swtpm};

/// A LAS making sim-vtpm reports over the software TPM, registered with the CAS.
async fn vtpm_las(env: &Env) -> Attester {
    let socket = env.dir.path().join("vtpm-las.sock");
    let key = PlatformKey::generate().unwrap();
    let public = hex::encode(key.public_key().to_bytes());
    tokio::spawn(Las::bind(key, &socket).unwrap().with_tpm(swtpm()).run());
    env.client
        .register_platform(&env.operator_token(), &public)
        .await
        .unwrap();
    Attester::Vtpm(VtpmAttester::new(swtpm(), HclSource::Las(socket)))
}

fn pcr(index: usize) -> String {
    let mut tpm = Tpm::open(&swtpm()).unwrap();
    hex::encode(&tpm.pcrs().unwrap()[index])
}

async fn attest(env: &Env, attester: &Attester, policy: &str) -> Result<String, CasError> {
    env.client
        .attest(
            policy,
            "driver",
            Operation::Run,
            Some(JOB),
            |rd| async move { attester_evidence(attester, rd).await },
        )
        .await
        .map(|attested| attested.config.env["DB_URL"].as_str().to_string())
}

/// One test, in sequence: the software TPM serves one connection at a time and holds one
/// report-data index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_attests_with_vtpm_evidence_and_receives_its_configuration() {
    let env = Env::start().await;
    let attester = vtpm_las(&env).await;
    let measurement = env.measurement.clone();

    // Admitted by a policy listing sim-vtpm, with PCR 0 pinned.
    let pinned = env.policy("vtpm", "sim-vtpm", &measurement, None).replace(
        "    jobs:",
        &format!("    pcrs:\n      0: sha256:{}\n    jobs:", pcr(0)),
    );
    env.apply("vtpm", &pinned).await.unwrap();
    let db_url = attest(&env, &attester, "vtpm").await.expect("admitted");
    assert_eq!(db_url, "postgres://user:s3cr3t@db/taxi");

    // A policy that lists only sim refuses the kind.
    env.apply_standard("sim-only").await;
    let err = attest(&env, &attester, "sim-only")
        .await
        .expect_err("sim only");
    assert!(err.to_string().contains("tee-not-allowed"), "{err}");

    // A PCR pinned to another value is refused, naming the PCR.
    let wrong = env
        .policy("vtpm-wrong-pcr", "sim-vtpm", &measurement, None)
        .replace(
            "    jobs:",
            &format!("    pcrs:\n      0: sha256:{}\n    jobs:", "ab".repeat(32)),
        );
    env.apply("vtpm-wrong-pcr", &wrong).await.unwrap();
    let err = attest(&env, &attester, "vtpm-wrong-pcr")
        .await
        .expect_err("PCR 0");
    assert!(err.to_string().contains("pcr-mismatch: PCR 0"), "{err}");

    // Evidence made for one request, replayed for the next: the quote's nonce and the HCL
    // report's user data bind the first.
    let first = std::sync::Mutex::new(None);
    let _ = env
        .client
        .attest("vtpm", "driver", Operation::Run, Some(JOB), |rd| {
            let (attester, first) = (&attester, &first);
            async move {
                let body = attester_evidence(attester, rd).await?;
                *first.lock().unwrap() = Some(body.clone());
                Ok(body)
            }
        })
        .await
        .expect("admitted");
    let replayed = first.into_inner().unwrap().expect("evidence");
    let err = env
        .client
        .attest("vtpm", "driver", Operation::Run, Some(JOB), |_| async {
            Ok(replayed)
        })
        .await
        .expect_err("replayed evidence");
    assert!(err.to_string().contains("is not the nonce"), "{err}");
}
