//! Attacks on attestation: every one is refused with 403 and its reason.

use std::time::Duration;

use cipherlake_cas::client::{AttestKeys, decode_nonce, las_evidence};

use cipherlake_policy::Operation;

use crate::common::{Env, JOB, assert_denied, request_for, start_las};

#[tokio::test]
async fn replayed_nonce() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let (_keys, request) = env.request("p", "driver", Some(JOB)).await;
    env.client.attest_request(&request).await.unwrap();
    assert_denied(env.client.attest_request(&request).await, "nonce-unknown");
}

#[tokio::test]
async fn expired_nonce() {
    let env = Env::start_with_ttl(Duration::from_secs(1)).await;
    env.apply_standard("p").await;
    let keys = AttestKeys::generate().unwrap();
    let nonce = env.client.nonce().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rd = keys.report_data(
        cipherlake_policy::Intent::Perform(cipherlake_policy::Operation::Run),
        &decode_nonce(&nonce.nonce).unwrap(),
        Some(&JOB),
    );
    let evidence = las_evidence(&env.las_socket, rd).await.unwrap();
    let request = request_for(&keys, "p", "driver", nonce.nonce, evidence, Some(JOB));
    assert_denied(env.client.attest_request(&request).await, "nonce-expired");
}

#[tokio::test]
async fn report_data_that_does_not_bind_the_csr_key() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let honest = AttestKeys::generate().unwrap();
    let attacker = AttestKeys::generate().unwrap();
    let nonce = env.client.nonce().await.unwrap();
    // Evidence binds the honest workload's keys; the attacker substitutes its own CSR.
    let rd = honest.report_data(
        cipherlake_policy::Intent::Perform(cipherlake_policy::Operation::Run),
        &decode_nonce(&nonce.nonce).unwrap(),
        Some(&JOB),
    );
    let evidence = las_evidence(&env.las_socket, rd).await.unwrap();
    let request = request_for(&attacker, "p", "driver", nonce.nonce, evidence, Some(JOB));
    assert_denied(
        env.client.attest_request(&request).await,
        "report-data-mismatch",
    );
}

#[tokio::test]
async fn measurement_not_in_the_policy() {
    let env = Env::start().await;
    let other = "ab".repeat(48);
    env.apply("p", &env.policy("p", "sim", &other, None))
        .await
        .unwrap();
    assert_denied(
        env.attest("p", "driver", Some(JOB)).await,
        "measurement-not-allowed",
    );
}

#[tokio::test]
async fn sim_evidence_when_the_policy_does_not_list_sim() {
    let env = Env::start().await;
    env.apply("p", &env.policy("p", "sgx, tdx", &env.measurement, None))
        .await
        .unwrap();
    assert_denied(
        env.attest("p", "driver", Some(JOB)).await,
        "tee-not-allowed",
    );
}

#[tokio::test]
async fn unknown_las_platform_key() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let rogue_socket = env.dir.path().join("rogue-las.sock");
    start_las(&rogue_socket); // never registered with the CAS
    let result = env
        .client
        .attest("p", "driver", Operation::Run, Some(JOB), |rd| {
            let socket = rogue_socket.clone();
            async move { las_evidence(&socket, rd).await }
        })
        .await;
    let reasons = assert_denied(result, "evidence-invalid");
    assert!(
        reasons.iter().any(|r| r.contains("unknown platform key")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn job_hash_not_allow_listed() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    assert_denied(
        env.attest("p", "driver", Some([9u8; 32])).await,
        "job-not-allowed",
    );
    assert_denied(env.attest("p", "driver", None).await, "job-missing");
}

#[tokio::test]
async fn every_reason_is_reported_and_audited() {
    let env = Env::start().await;
    env.apply("p", &env.policy("p", "sgx", &"cd".repeat(48), None))
        .await
        .unwrap();
    let reasons = assert_denied(
        env.attest("p", "driver", Some([1u8; 32])).await,
        "tee-not-allowed",
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("measurement-not-allowed"))
    );
    assert!(reasons.iter().any(|r| r.starts_with("job-not-allowed")));
    let log = env.audit().await;
    let last = log
        .entries
        .iter()
        .rev()
        .find(|e| !e.body.contains("\"audit-read\""))
        .unwrap();
    assert!(last.body.contains("attestation-denied") && last.body.contains("job-not-allowed"));
}
