//! Attacks on policy management and on other policies' secrets.

use cipherlake_cas::CasError;
use cipherlake_policy::{OwnerSigningKey, sign};
use reqwest::Method;

use crate::common::{Env, JOB};

#[tokio::test]
async fn policy_update_with_a_stale_predecessor() {
    let env = Env::start().await;
    let v1 = env.apply_standard("p").await;
    let v2_text = env
        .policy("p", "sim", &env.measurement, Some(&v1))
        .replace("postgres://", "postgresql://");
    let v2 = env.apply("p", &v2_text).await.unwrap();
    // A concurrent writer also based on v1.
    let stale = env
        .policy("p", "sim", &env.measurement, Some(&v1))
        .replace("taxi", "taxi2");
    match env.apply("p", &stale).await {
        Err(CasError::Stale {
            current,
            found,
            message,
        }) => {
            assert_eq!(current, v2);
            assert_eq!(found.as_deref(), Some(v1.as_str()));
            assert!(message.contains(&v1) && message.contains(&v2), "{message}");
        }
        other => panic!("expected 409 stale, got {other:?}"),
    }
    assert_eq!(
        env.client.policy("p").await.unwrap().hash,
        v2,
        "nothing changed"
    );
}

#[tokio::test]
async fn update_signed_by_a_non_owner() {
    let env = Env::start().await;
    let v1 = env.apply_standard("p").await;
    let intruder = OwnerSigningKey::generate().unwrap();
    // The intruder even lists itself as owner in the update.
    let text = env.policy("p", "sim", &env.measurement, Some(&v1)).replace(
        &env.owner.public_key().to_string(),
        &intruder.public_key().to_string(),
    );
    let signed = sign(&text, &intruder).unwrap();
    match env.client.apply_policy("p", &signed).await {
        Err(CasError::Forbidden(message)) => assert!(message.contains("not an owner"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(env.client.policy("p").await.unwrap().hash, v1);
    // A forged first version of someone else's name is refused the same way.
    let signed = sign(&env.policy("p", "sim", &env.measurement, None), &intruder).unwrap();
    assert!(matches!(
        env.client.apply_policy("p", &signed).await,
        Err(CasError::Forbidden(_))
    ));
}

#[tokio::test]
async fn reading_another_policys_secrets() {
    let env = Env::start().await;
    env.apply_standard("a").await;
    env.apply_standard("b").await;
    // Policy metadata never carries secret values or the text.
    let (status, body) = env
        .client
        .raw(Method::GET, "/v1/policies/a", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(!body.contains("s3cr3t"), "{body}");
    // A workload of policy b cannot use policy a's keys: its certificate names b.
    let attested_b = env.attest("b", "driver", Some(JOB)).await.unwrap();
    let kms_b = env.client.with_identity(&attested_b).unwrap();
    let attested_a = env.attest("a", "driver", Some(JOB)).await.unwrap();
    let kms_a = env.client.with_identity(&attested_a).unwrap();
    let wrapped_by_a = kms_a.kms_wrap("footer", &[1u8; 16]).await.unwrap();
    // Same key name in b is b's own key: a's wrapped key does not open under it.
    assert!(matches!(
        kms_b.kms_unwrap("footer", &wrapped_by_a).await,
        Err(CasError::BadRequest(_))
    ));
    // b's configuration carries b's secrets, not a's.
    assert_ne!(
        attested_a.config.env["FOOTER_HEX"].as_str(),
        attested_b.config.env["FOOTER_HEX"].as_str()
    );
    // And a workload cannot attest as policy a's service with evidence for b's request body.
    let (_keys, mut request) = env.request("b", "driver", Some(JOB)).await;
    request.policy = "missing".into();
    assert!(matches!(
        env.client.attest_request(&request).await,
        Err(CasError::NotFound(_))
    ));
}
