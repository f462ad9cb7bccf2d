//! Attacks on the exported audit log.

use cipherlake_cas::audit::{AuditError, Export, verify_log};

use crate::common::{Env, JOB};

async fn log() -> (Export, [u8; 32]) {
    let env = Env::start().await;
    env.apply_standard("p").await;
    env.attest("p", "driver", Some(JOB)).await.unwrap();
    let _ = env.attest("p", "driver", Some([3u8; 32])).await;
    let key = env.server.as_ref().unwrap().audit_public_key;
    let export = env.audit().await;
    assert!(export.entries.len() >= 4, "{}", export.entries.len());
    assert_eq!(
        verify_log(&export, &key).unwrap(),
        export.entries.len() as u64
    );
    (export, key)
}

#[tokio::test]
async fn an_edited_audit_log() {
    let (mut export, key) = log().await;
    let entry = &mut export.entries[2];
    let original = entry.body.clone();
    entry.body = entry.body.replace("\"time\":", "\"time\":1");
    assert_ne!(entry.body, original);
    let result = verify_log(&export, &key);
    assert!(
        matches!(result, Err(AuditError::Edited { seq: 3 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_truncated_audit_log() {
    let (mut export, key) = log().await;
    export.entries.pop();
    assert!(matches!(
        verify_log(&export, &key),
        Err(AuditError::Head { .. })
    ));
    // Dropping the first entry breaks the sequence.
    let (mut export, key) = log().await;
    export.entries.remove(0);
    assert!(matches!(
        verify_log(&export, &key),
        Err(AuditError::Order { position: 1, .. })
    ));
}

#[tokio::test]
async fn a_reordered_audit_log() {
    let (mut export, key) = log().await;
    export.entries.swap(1, 2);
    assert!(matches!(
        verify_log(&export, &key),
        Err(AuditError::Order { position: 2, .. })
    ));
    // Renumbering to hide the swap breaks the chain or the hashes.
    let (mut export, key) = log().await;
    export.entries.swap(1, 2);
    export.entries[1].seq = 2;
    export.entries[2].seq = 3;
    assert!(verify_log(&export, &key).is_err());
}

#[tokio::test]
async fn a_log_under_another_key() {
    let (export, _) = log().await;
    assert!(matches!(
        verify_log(&export, &[1u8; 32]),
        Err(AuditError::WrongKey { .. })
    ));
}
