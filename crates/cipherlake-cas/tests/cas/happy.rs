//! The happy path: apply, attest via the LAS, open the sealed configuration, use the KMS.

use cipherlake_cas::audit::verify_log;
use cipherlake_crypto::key_material::decrypt_key_locally;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::common::{Env, JOB};

#[tokio::test]
async fn apply_attest_open_and_use_the_kms() {
    let env = Env::start().await;
    let hash = env.apply_standard("taxi").await;
    let info = env.client.policy("taxi").await.unwrap();
    assert_eq!(info.hash, hash);
    assert_eq!(info.services, ["driver", "worker"]);

    let attested = env.attest("taxi", "driver", Some(JOB)).await.unwrap();
    assert_eq!(attested.policy_hash, hash);
    let config = &attested.config;
    assert_eq!(
        config.env["DB_URL"].as_str(),
        "postgres://user:s3cr3t@db/taxi"
    );
    let footer = hex::decode(config.env["FOOTER_HEX"].as_str()).unwrap();
    assert_eq!(footer.len(), 32);
    assert_eq!(
        config.args.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        ["--service", "driver"]
    );
    assert_eq!(config.files["/etc/app.conf"].as_str(), "policy=taxi");

    // Certificate: leaf + policy CA, naming the workload, short-lived.
    assert_eq!(
        attested
            .certificate_chain_pem
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    assert!(attested.certificate_chain_pem.ends_with(&attested.ca_pem));
    let der = x509_der(&attested.certificate_chain_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::URI("spiffe://cipherlake/taxi/driver")))
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(lifetime <= 3600 + 60, "{lifetime}");

    // KMS round trip, in Parquet InMemoryKMS format: the released master key opens it locally.
    let kms = env.client.with_identity(&attested).unwrap();
    let dek = [42u8; 16];
    let wrapped = kms.kms_wrap("footer", &dek).await.unwrap();
    assert_eq!(*kms.kms_unwrap("footer", &wrapped).await.unwrap(), dek);
    assert_eq!(
        *decrypt_key_locally(&wrapped, &footer, b"footer").unwrap(),
        dek
    );

    // The audit log records it all and verifies.
    let log = env.audit().await;
    let key = env.server.as_ref().unwrap().audit_public_key;
    verify_log(&log, &key).unwrap();
    let bodies: Vec<&str> = log.entries.iter().map(|e| e.body.as_str()).collect();
    for event in [
        "platform-registered",
        "policy-applied",
        "attestation-allowed",
        "\"op\":\"wrap\"",
        "\"op\":\"unwrap\"",
    ] {
        assert!(bodies.iter().any(|b| b.contains(event)), "{event} missing");
    }
    assert!(
        !bodies.iter().any(|b| b.contains("s3cr3t")),
        "no secret values in the audit log"
    );
}

fn x509_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body = pem.split("-----BEGIN CERTIFICATE-----").nth(1).unwrap();
    let body = body.split("-----END CERTIFICATE-----").next().unwrap();
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}
