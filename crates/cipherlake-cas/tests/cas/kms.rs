//! Attacks on the KMS: authorisation by service and authentication by policy CA.

use cipherlake_cas::CasError;
use cipherlake_cas::client::Attested;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

use crate::common::{Env, JOB};

#[tokio::test]
async fn kms_unwrap_by_a_service_not_granted_the_key() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let driver = env.as_service("p", "driver", Some(JOB)).await;
    let worker = env.as_service("p", "worker", None).await;
    let wrapped = driver.kms_wrap("footer", &[5u8; 16]).await.unwrap();
    match worker.kms_unwrap("footer", &wrapped).await {
        Err(CasError::Forbidden(message)) => assert!(message.contains("not granted"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // Nor may it wrap under it; it unwraps its own key, which the ingest user wrapped.
    assert!(matches!(
        worker.kms_wrap("footer", &[5u8; 16]).await,
        Err(CasError::Forbidden(_))
    ));
    let ingest = env.as_user("p", "ingest", &env.user);
    let own = ingest.kms_wrap("pii", &[6u8; 16]).await.unwrap();
    assert_eq!(*worker.kms_unwrap("pii", &own).await.unwrap(), [6u8; 16]);
    // A worker that reads may not wrap, so it cannot forge inputs.
    match worker.kms_wrap("pii", &[6u8; 16]).await {
        Err(CasError::Forbidden(message)) => {
            assert!(message.contains("not granted wrap"), "{message}")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let log = env.audit().await;
    assert!(
        log.entries
            .iter()
            .any(|e| e.body.contains("\"allowed\":false") && e.body.contains("unwrap"))
    );
}

#[tokio::test]
async fn kms_call_with_a_certificate_from_another_policys_ca() {
    let env = Env::start().await;
    env.apply_standard("a").await;
    env.apply_standard("b").await;
    // A workload of policy b holds a valid certificate and key from b's CA ...
    let attested_b = env.attest("b", "driver", Some(JOB)).await.unwrap();
    // ... and issues itself a certificate naming a's driver, signed with its own key as CA.
    let (b_leaf, _) = first_cert(&attested_b.certificate_chain_pem);
    let rogue_ca_key = KeyPair::try_from(attested_b.key_pkcs8_der.as_slice()).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let rogue_ca = ca_params.self_signed(&rogue_ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, rogue_ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::URI(
        "spiffe://cipherlake/a/driver".try_into().unwrap(),
    )];
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let forged = Attested {
        policy: "a".into(),
        service: "driver".into(),
        certificate_chain_pem: format!("{}{}{}", leaf.pem(), rogue_ca.pem(), b_leaf),
        ca_pem: rogue_ca.pem(),
        key_pkcs8_der: zeroize::Zeroizing::new(leaf_key.serialize_der()),
        expires: 0,
        policy_hash: String::new(),
        config: Default::default(),
    };
    let kms = env.client.with_identity(&forged).unwrap();
    match kms.kms_wrap("footer", &[1u8; 16]).await {
        Err(CasError::Unauthorized(message)) => {
            assert!(
                message.contains("not issued by its policy's CA"),
                "{message}"
            )
        }
        other => panic!("expected 401, got {other:?}"),
    }
    // Without any client certificate: 401 as well.
    assert!(matches!(
        env.client.kms_wrap("footer", &[1u8; 16]).await,
        Err(CasError::Unauthorized(_))
    ));
}

fn first_cert(pem: &str) -> (String, usize) {
    let end = "-----END CERTIFICATE-----\n";
    let i = pem.find(end).unwrap() + end.len();
    (pem[..i].to_string(), i)
}

#[tokio::test]
async fn tampered_wrapped_key_is_refused() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let driver = env.as_service("p", "driver", Some(JOB)).await;
    let wrapped = driver.kms_wrap("footer", &[5u8; 16]).await.unwrap();
    let mut bytes = wrapped.into_bytes();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(
        driver.kms_unwrap("footer", &tampered).await,
        Err(CasError::BadRequest(_))
    ));
}

#[tokio::test]
async fn rsa_decrypt_and_sign_for_always_encrypted() {
    use rsa::pkcs8::DecodePublicKey as _;
    let env = Env::start().await;
    let text = env
        .policy("p", "sim", &env.measurement, None)
        .replace("kms_keys: { footer: [unwrap, wrap] }", "kms_keys: { footer: [unwrap, wrap], cmk: [unwrap, wrap] }\n    files:\n      /cmk.pem: \"{{ secret.cmk.public | pem }}\"")
        .replace("    files:\n      /etc/app.conf: \"policy={{ policy.name }}\"\n", "")
        .replace("secrets:\n", "secrets:\n  cmk: { kind: rsa-2048, generate: true }\n");
    env.apply("p", &text).await.unwrap();
    let attested = env.attest("p", "driver", Some(JOB)).await.unwrap();
    let public_pem = attested.config.files["/cmk.pem"].as_str().to_string();
    let public = rsa::PublicKey::from_public_key_pem(&public_pem).unwrap();
    let driver = env.client.with_identity(&attested).unwrap();
    let cek = [9u8; 32];
    let ciphertext = public.oaep_encrypt::<sha1::Sha1>(&cek).unwrap();
    assert_eq!(
        *driver.kms_rsa_decrypt("cmk", &ciphertext).await.unwrap(),
        cek
    );
    let signature = driver.kms_rsa_sign("cmk", b"metadata").await.unwrap();
    public
        .pkcs1v15_verify::<sha2::Sha256>(b"metadata", &signature)
        .unwrap();
    // The worker is not granted the CMK; an AES key cannot decrypt.
    let worker = env.as_service("p", "worker", None).await;
    assert!(matches!(
        worker.kms_rsa_decrypt("cmk", &ciphertext).await,
        Err(CasError::Forbidden(_))
    ));
    assert!(matches!(
        driver.kms_rsa_decrypt("footer", &ciphertext).await,
        Err(CasError::BadRequest(_))
    ));
}

#[tokio::test]
async fn kms_audit_entries_name_the_certificate_each_instance_attested_with() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let ingest = env.as_user("p", "ingest", &env.user);
    let wrapped = ingest.kms_wrap("pii", &[7u8; 16]).await.unwrap();
    // Two instances of one service (two workers): each attests and unwraps once.
    let first = env.as_service("p", "worker", None).await;
    let second = env.as_service("p", "worker", None).await;
    first.kms_unwrap("pii", &wrapped).await.unwrap();
    second.kms_unwrap("pii", &wrapped).await.unwrap();
    let log = env.audit().await;
    let bodies: Vec<serde_json::Value> = log
        .entries
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    let issued: Vec<&str> = bodies
        .iter()
        .filter(|b| b["event"] == "attestation-allowed" && b["service"] == "worker")
        .map(|b| b["certificate_serial"].as_str().unwrap())
        .collect();
    let used: Vec<&str> = bodies
        .iter()
        .filter(|b| {
            b["event"] == "kms" && b["op"] == "unwrap" && b["principal"] == "service:worker"
        })
        .map(|b| b["certificate_serial"].as_str().unwrap())
        .collect();
    assert_eq!(issued.len(), 2, "{bodies:?}");
    assert_ne!(issued[0], issued[1]);
    assert_eq!(used, issued, "each unwrap names its caller's certificate");
    // A user's call has no certificate.
    assert!(
        bodies
            .iter()
            .filter(|b| b["event"] == "kms" && b["principal"] == "user:ingest")
            .all(|b| b.get("certificate_serial").is_none())
    );
}
