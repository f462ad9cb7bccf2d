//! Owner-authenticated reads of a policy's full document: owners only, one nonce per read,
//! never a secret value.

use cipherlake_cas::CasError;
use cipherlake_cas::api::OwnerReadRequest;
use cipherlake_cas::client::decode_nonce;
use cipherlake_policy::{OwnerSigningKey, sign_read};
use reqwest::Method;

use crate::common::Env;

/// A signed read request of `name` by `signer`, claiming to come from `claimed`.
async fn read_request(
    env: &Env,
    name: &str,
    signer: &OwnerSigningKey,
    claimed: &OwnerSigningKey,
) -> Vec<u8> {
    let nonce = env.client.nonce().await.unwrap();
    let signature = sign_read(signer, name, &decode_nonce(&nonce.nonce).unwrap());
    serde_json::to_vec(&OwnerReadRequest {
        owner: claimed.public_key().to_string(),
        nonce: nonce.nonce,
        signature: hex::encode(signature),
    })
    .unwrap()
}

#[tokio::test]
async fn an_owner_reads_the_document_without_any_secret_value() {
    let env = Env::start().await;
    let text = env.policy("p", "sim", &env.measurement, None)
        + "  signing: { kind: ec-p256, generate: true }\n";
    let hash = env.apply("p", &text).await.unwrap();
    let doc = env.client.policy_document("p", &env.owner).await.unwrap();
    assert_eq!(doc.info.hash, hash);
    assert_eq!(
        doc.document["services"]["driver"]["kms_keys"]["footer"][0],
        "unwrap"
    );
    let json = serde_json::to_string(&doc).unwrap();
    assert!(!json.contains("s3cr3t"), "an inline value leaked: {json}");
    assert!(doc.document["secrets"]["db_url"]["value"].is_null());
    let db_url = &doc.secrets["db_url"];
    assert_eq!(
        (db_url.kind.as_str(), db_url.source.as_str()),
        ("ascii", "inline")
    );
    assert!(db_url.public_pem.is_none());
    assert_eq!(doc.secrets["footer"].source, "generated");
    assert!(doc.secrets["footer"].public_pem.is_none());
    let signing = doc.secrets["signing"].public_pem.as_deref().unwrap();
    assert!(
        signing.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{signing}"
    );
    let log = env.audit().await;
    assert!(
        log.entries
            .iter()
            .rev()
            .find(|e| !e.body.contains("\"audit-read\""))
            .unwrap()
            .body
            .contains("\"policy-read\"")
    );
}

#[tokio::test]
async fn a_non_owners_read_is_refused() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let stranger = OwnerSigningKey::generate().unwrap();
    match env.client.policy_document("p", &stranger).await {
        Err(CasError::Forbidden(message)) => assert!(message.contains("not an owner"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // Claiming to be the owner with a stranger's signature fails too.
    let body = read_request(&env, "p", &stranger, &env.owner).await;
    let (status, reply) = env
        .client
        .raw(Method::POST, "/v1/policies/p/read", Some(body))
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 403);
    assert!(String::from_utf8_lossy(&reply).contains("does not verify"));
    let log = env.audit().await;
    assert!(
        log.entries
            .iter()
            .rev()
            .find(|e| !e.body.contains("\"audit-read\""))
            .unwrap()
            .body
            .contains("policy-read-refused")
    );
}

#[tokio::test]
async fn a_replayed_read_request_is_refused() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let body = read_request(&env, "p", &env.owner, &env.owner).await;
    let path = "/v1/policies/p/read";
    let (first, _) = env
        .client
        .raw(Method::POST, path, Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(first.as_u16(), 200);
    let (replayed, reply) = env
        .client
        .raw(Method::POST, path, Some(body))
        .await
        .unwrap();
    assert_eq!(replayed.as_u16(), 403);
    assert!(String::from_utf8_lossy(&reply).contains("nonce"));
}

#[tokio::test]
async fn a_read_request_for_another_policy_does_not_transfer() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    env.apply_standard("q").await;
    // Signed for q, sent to p: the signature covers the name.
    let body = read_request(&env, "q", &env.owner, &env.owner).await;
    let (status, _) = env
        .client
        .raw(Method::POST, "/v1/policies/p/read", Some(body))
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 403);
}

#[tokio::test]
async fn malformed_read_requests_get_a_400() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    for body in [
        &b"{"[..],
        br#"{"owner": "ed25519:00", "nonce": "00", "signature": "00"}"#,
        br#"{"owner": 1}"#,
    ] {
        let (status, _) = env
            .client
            .raw(Method::POST, "/v1/policies/p/read", Some(body.to_vec()))
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 400, "{}", String::from_utf8_lossy(body));
    }
}
