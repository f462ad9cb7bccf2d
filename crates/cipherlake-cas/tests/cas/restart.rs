//! A CAS restart in the middle of a run: state, identity and audit chain survive.

use std::time::Duration;

use cipherlake_cas::audit::verify_log;

use crate::common::{Env, JOB, start_server};

#[tokio::test]
async fn cas_restart_mid_run() {
    let mut env = Env::start().await;
    let hash = env.apply_standard("p").await;
    let attested = env.attest("p", "driver", Some(JOB)).await.unwrap();
    let wrapped = env
        .client
        .with_identity(&attested)
        .unwrap()
        .kms_wrap("footer", &[4u8; 32])
        .await
        .unwrap();
    let first = env.server.take().unwrap();
    let (old_cert, old_audit_key) = (first.tls_cert_der.clone(), first.audit_public_key);
    let before = env.audit().await.entries.len();
    first.shutdown().await;

    let (server, client) = start_server(&env.data_dir(), Duration::from_secs(60)).await;
    assert_eq!(
        server.tls_cert_der, old_cert,
        "same TLS identity (pins stay valid)"
    );
    assert_eq!(server.audit_public_key, old_audit_key, "same audit key");
    env.client = client;
    env.server = Some(server);
    assert_eq!(env.client.policy("p").await.unwrap().hash, hash);
    // The workload certificate issued before the restart still authenticates; keys persisted.
    let kms = env.client.with_identity(&attested).unwrap();
    assert_eq!(
        *kms.kms_unwrap("footer", &wrapped).await.unwrap(),
        [4u8; 32]
    );
    // Registered platforms persisted: attesting again works.
    let again = env.attest("p", "driver", Some(JOB)).await.unwrap();
    assert_eq!(
        again.config.env["FOOTER_HEX"].as_str(),
        attested.config.env["FOOTER_HEX"].as_str()
    );
    let log = env.audit().await;
    assert!(log.entries.len() >= before + 2);
    assert_eq!(
        verify_log(&log, &old_audit_key).unwrap(),
        log.entries.len() as u64
    );
}
