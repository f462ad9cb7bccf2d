//! Attacks on the principal model: operations bound into evidence, users signing requests,
//! probes, and who may read the audit log. Each is refused with a reason naming the cause.

use std::time::Duration;

use base64::Engine as _;
use cipherlake_cas::CasError;
use cipherlake_cas::api::{
    SIGNED_NONCE, SIGNED_POLICY, SIGNED_SIGNATURE, SIGNED_SIGNER, UnwrapRequest, WrapRequest,
};
use cipherlake_cas::audit::{AuditError, verify_log, verify_since};
use cipherlake_cas::client::{Credential, decode_nonce, las_evidence, open_response};
use cipherlake_policy::{Intent, Operation, OwnerSigningKey, Signer, Target, sign_request};
use reqwest::{Method, StatusCode};

use crate::common::{Env, JOB, assert_denied};

fn copy(key: &OwnerSigningKey) -> OwnerSigningKey {
    OwnerSigningKey::from_file_text(&key.to_file_text()).unwrap()
}

#[tokio::test]
async fn evidence_binding_another_operation_is_refused_naming_both() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    // The driver's service admits run: evidence binding worker (or encrypt) is refused, even
    // with the right job and measurement.
    for op in [Operation::Worker, Operation::Encrypt, Operation::Serve] {
        let reasons = assert_denied(
            env.attest_as("p", "driver", op, Some(JOB)).await,
            "operation-mismatch",
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(&format!("binds operation {op}"))
                    && r.contains("admits only run")),
            "{reasons:?}"
        );
    }
    assert_denied(
        env.attest_as("p", "worker", Operation::Run, None).await,
        "operation-mismatch",
    );
    // The request's operation must be the one the evidence binds: claiming run for evidence
    // that binds worker is a report-data mismatch.
    let (_, request) = env
        .request_binding("p", "driver", Intent::Perform(Operation::Worker), Some(JOB))
        .await;
    assert_denied(
        env.client.attest_request(&request).await,
        "report-data-mismatch",
    );
}

#[tokio::test]
async fn a_job_bound_by_a_probe_cannot_be_used_to_run_it() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    // Sent as run (the request's operation field claims run): the evidence says probe.
    let (_, request) = env
        .request_binding("p", "driver", Intent::Probe, Some(JOB))
        .await;
    assert_denied(
        env.client.attest_request(&request).await,
        "report-data-mismatch",
    );
    // And a probe request cannot go to the attest endpoint at all.
    let mut probe = request.clone();
    probe.operation = "probe".into();
    match env.client.attest_request(&probe).await {
        Err(CasError::BadRequest(message)) => {
            assert!(message.contains("/v1/attest/probe"), "{message}")
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

#[tokio::test]
async fn a_probe_gets_names_and_sizes_and_values_only_for_debug_services() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let socket = env.las_socket.clone();
    let (probe, config) = env
        .client
        .probe("p", "driver", Some(JOB), |rd| async move {
            las_evidence(&socket, rd).await
        })
        .await
        .unwrap();
    assert!(config.is_none(), "no values for a non-debug service");
    assert!(probe.config.is_none());
    assert_eq!(probe.operation, "run");
    assert_eq!(
        probe.summary.env["DB_URL"],
        "postgres://user:s3cr3t@db/taxi".len()
    );
    assert_eq!(probe.summary.kms_keys["footer"], "unwrap,wrap");
    let shown = serde_json::to_string(&probe).unwrap();
    assert!(
        !shown.contains("s3cr3t"),
        "no secret in the probe reply: {shown}"
    );
    // A debug service of a sim policy shows its values.
    let text = env.policy("d", "sim", &env.measurement, None).replace(
        "    operation: run\n",
        "    operation: run\n    debug: true\n",
    );
    env.apply("d", &text).await.unwrap();
    let socket = env.las_socket.clone();
    let (_, config) = env
        .client
        .probe("d", "driver", Some(JOB), |rd| async move {
            las_evidence(&socket, rd).await
        })
        .await
        .unwrap();
    assert_eq!(
        config.expect("debug values").env["DB_URL"].as_str(),
        "postgres://user:s3cr3t@db/taxi"
    );
    // A probe is still evaluated: a job not allow-listed is refused.
    let socket = env.las_socket.clone();
    let refused = env
        .client
        .probe("p", "driver", Some([9; 32]), |rd| async move {
            las_evidence(&socket, rd).await
        })
        .await;
    assert_denied(refused, "job-not-allowed");
}

#[tokio::test]
async fn users_use_exactly_their_grants() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let ingest = env.as_user("p", "ingest", &env.user);
    let wrapped = ingest.kms_wrap("footer", &[1u8; 16]).await.unwrap();
    // Wrap-only: the ingest user cannot read what it wrote.
    match ingest.kms_unwrap("footer", &wrapped).await {
        Err(CasError::Forbidden(message)) => {
            assert!(
                message.contains("user:ingest") && message.contains("not granted unwrap"),
                "{message}"
            )
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // The driver can.
    let driver = env.as_service("p", "driver", Some(JOB)).await;
    assert_eq!(
        *driver.kms_unwrap("footer", &wrapped).await.unwrap(),
        [1u8; 16]
    );
    // Wrong key for the user, an unknown user, and an owner (owners hold no KMS grants).
    let impostor = env.as_user("p", "ingest", &OwnerSigningKey::generate().unwrap());
    match impostor.kms_wrap("footer", &[1u8; 16]).await {
        Err(CasError::Unauthorized(message)) => {
            assert!(message.contains("does not verify"), "{message}")
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let nobody = env.as_user("p", "nobody", &env.user);
    match nobody.kms_wrap("footer", &[1u8; 16]).await {
        Err(CasError::Unauthorized(message)) => {
            assert!(message.contains("no user \"nobody\""), "{message}")
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let owner = env
        .client
        .with_credential(Credential::owner("p", copy(&env.owner)));
    assert!(matches!(
        owner.kms_wrap("footer", &[1u8; 16]).await,
        Err(CasError::Forbidden(_))
    ));
    let log = env.audit().await;
    assert!(
        log.entries
            .iter()
            .any(|e| e.body.contains("\"principal\":\"user:ingest\"")
                && e.body.contains("\"allowed\":false"))
    );
}

/// The headers of a request to `path` with `body`, signed by user `ingest`.
async fn signed(env: &Env, path: &str, body: &[u8], signer: &str) -> Vec<(&'static str, String)> {
    let nonce = env.client.nonce().await.unwrap();
    let signer: Signer = signer.parse().unwrap();
    let signature = sign_request(
        &env.user,
        "p",
        &signer,
        &decode_nonce(&nonce.nonce).unwrap(),
        Target {
            method: "POST",
            path,
            body,
        },
    );
    vec![
        (SIGNED_POLICY, "p".to_string()),
        (SIGNED_SIGNER, signer.to_string()),
        (SIGNED_NONCE, nonce.nonce),
        (SIGNED_SIGNATURE, hex::encode(signature)),
    ]
}

fn wrap_body(key_id: &str) -> Vec<u8> {
    serde_json::to_vec(&WrapRequest {
        key_id: key_id.into(),
        key: base64::engine::general_purpose::STANDARD.encode([3u8; 16]),
    })
    .unwrap()
}

#[tokio::test]
async fn user_signatures_are_single_use_and_bound_to_request_and_user() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let body = wrap_body("footer");
    let headers = signed(&env, "/v1/kms/wrap", &body, "user:ingest").await;
    let send = |path: &'static str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        let client = env.client.clone();
        async move {
            client
                .raw_with_headers(Method::POST, path, Some(body), &headers)
                .await
                .unwrap()
        }
    };
    let (status, _) = send("/v1/kms/wrap", body.clone(), headers.clone()).await;
    assert_eq!(status, StatusCode::OK);
    // Replayed: the nonce is spent.
    let (status, reply) = send("/v1/kms/wrap", body.clone(), headers).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&reply).contains("already used"));
    // Signed for one request, sent with another body (another key) or to another path.
    let headers = signed(&env, "/v1/kms/wrap", &body, "user:ingest").await;
    let (status, reply) = send("/v1/kms/wrap", wrap_body("pii"), headers).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(String::from_utf8_lossy(&reply).contains("does not verify"));
    let unwrap = serde_json::to_vec(&UnwrapRequest {
        key_id: "footer".into(),
        wrapped: "x".into(),
    })
    .unwrap();
    let headers = signed(&env, "/v1/kms/wrap", &unwrap, "user:ingest").await;
    let (status, _) = send("/v1/kms/unwrap", unwrap, headers).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed by ingest's key but claiming another user.
    let headers = signed(&env, "/v1/kms/wrap", &body, "user:auditor").await;
    let (status, _) = send("/v1/kms/wrap", body.clone(), headers).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Truncated headers.
    let mut headers = signed(&env, "/v1/kms/wrap", &body, "user:ingest").await;
    headers.pop();
    let (status, reply) = send("/v1/kms/wrap", body.clone(), headers).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&reply).contains(SIGNED_SIGNATURE));
}

#[tokio::test]
async fn a_user_signature_over_an_expired_nonce_is_refused() {
    let env = Env::start_with_ttl(Duration::from_secs(1)).await;
    env.apply_standard("p").await;
    let body = wrap_body("footer");
    let headers = signed(&env, "/v1/kms/wrap", &body, "user:ingest").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, reply) = env
        .client
        .raw_with_headers(Method::POST, "/v1/kms/wrap", Some(body), &headers)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&reply).contains("expired"));
}

#[tokio::test]
async fn the_audit_log_is_a_principals_to_read() {
    let env = Env::start().await;
    let text = env.policy("p", "sim", &env.measurement, None).replace(
        "users:\n",
        &format!(
            "users:\n  auditor:\n    key: {}\n    read_audit: true\n",
            OwnerSigningKey::from_seed(&[9; 32]).public_key()
        ),
    );
    env.apply("p", &text).await.unwrap();
    // Anonymous, a wrong operator token, a user without read_audit: refused.
    match env.client.audit().await {
        Err(CasError::Unauthorized(_)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let (status, _) = env
        .client
        .raw(Method::GET, "/v1/audit", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(matches!(
        env.client.audit_as_operator("0000").await,
        Err(CasError::Unauthorized(_))
    ));
    match env.as_user("p", "ingest", &env.user).audit().await {
        Err(CasError::Forbidden(message)) => assert!(message.contains("read_audit"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // The operator, an owner and the auditor read the same chain.
    let key = env.server.as_ref().unwrap().audit_public_key;
    let auditor = env.as_user("p", "auditor", &OwnerSigningKey::from_seed(&[9; 32]));
    let owner = env
        .client
        .with_credential(Credential::owner("p", copy(&env.owner)));
    for export in [
        env.audit().await,
        owner.audit().await.unwrap(),
        auditor.audit().await.unwrap(),
    ] {
        verify_log(&export, &key).unwrap();
    }
    let log = env.audit().await;
    assert!(log.entries.iter().any(|e| e.body.contains("\"event\":\"audit-read\"")
        && e.body.contains("user:auditor")));
}

#[tokio::test]
async fn a_log_truncated_or_rolled_back_in_the_database_is_detected_against_a_saved_head() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    env.attest("p", "driver", Some(JOB)).await.unwrap();
    let key = env.server.as_ref().unwrap().audit_public_key;
    let saved = env.audit().await.head;
    env.attest("p", "driver", Some(JOB)).await.unwrap();
    verify_since(&env.audit().await, &saved, &key).expect("an extended log verifies");

    // The operator deletes the newest entries in the CAS database. The CAS itself refuses the
    // truncated log (its head is MAC'd)...
    let mut db = rusqlite::Connection::open(env.data_dir().join("cas.db")).unwrap();
    db.execute(
        "DELETE FROM audit WHERE seq >= ?1",
        [saved.count as i64 - 1],
    )
    .unwrap();
    let err = env
        .client
        .audit_as_operator(&env.operator_token())
        .await
        .expect_err("truncated under the CAS");
    assert!(err.to_string().contains("tampered"), "{err}");
    // ...but an operator holding the master key (file sealing) can re-MAC the head. Then a
    // fresh head verifies the shorter log, and the custodian's saved head does not.
    let master =
        cipherlake_cas::at_rest::FileMasterKey::open_or_create(&env.data_dir().join("master.key"))
            .unwrap();
    let integrity = cipherlake_cas::integrity::Integrity::new(&master).unwrap();
    let tx = db.transaction().unwrap();
    cipherlake_cas::integrity::seal_audit(&tx, &integrity).unwrap();
    tx.commit().unwrap();
    let truncated = env.audit().await;
    verify_log(&truncated, &key).expect("the truncated log alone verifies");
    match verify_since(&truncated, &saved, &key) {
        Err(AuditError::Rewritten { .. } | AuditError::Truncated { .. }) => {}
        other => panic!("expected truncation detected, got {other:?}"),
    }
    // Rolled back and written again past the saved count: the entry the head ended with
    // differs.
    for _ in 0..3 {
        env.attest("p", "driver", Some(JOB)).await.unwrap();
    }
    let rewritten = env.audit().await;
    assert!(rewritten.head.count >= saved.count);
    assert!(matches!(
        verify_since(&rewritten, &saved, &key),
        Err(AuditError::Rewritten { .. })
    ));
    // A forged saved head is refused.
    let mut forged = saved.clone();
    forged.count += 1;
    assert!(matches!(
        verify_since(&rewritten, &forged, &key),
        Err(AuditError::BadHeadSignature)
    ));
}

#[tokio::test]
async fn a_worker_serves_only_run_services_granted_what_it_unwraps() {
    let env = Env::start().await;
    let text = env.policy("p", "sim", &env.measurement, None).replace(
        "kms_keys: { footer: [unwrap, wrap] }",
        "kms_keys: { footer: [unwrap, wrap], pii: [unwrap] }",
    );
    env.apply("p", &text).await.unwrap();
    let attested = env.attest("p", "worker", None).await.unwrap();
    assert_eq!(attested.config.clients, ["driver"]);
}

#[tokio::test]
async fn only_workers_register_and_only_run_services_list_workers() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let driver = env.as_service("p", "driver", Some(JOB)).await;
    match driver.register_worker("https://127.0.0.1:1").await {
        Err(CasError::Forbidden(message)) => assert!(message.contains("not worker"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    let attested = env.attest("p", "worker", None).await.unwrap();
    // The worker unwraps pii; the driver holds only footer, so the worker may serve no one.
    assert!(
        attested.config.clients.is_empty(),
        "{:?}",
        attested.config.clients
    );
    let worker = env.client.with_identity(&attested).unwrap();
    worker.register_worker("https://127.0.0.1:1").await.unwrap();
    assert!(matches!(
        worker.workers("worker").await,
        Err(CasError::Forbidden(_))
    ));
    assert_eq!(
        driver.workers("worker").await.unwrap(),
        ["https://127.0.0.1:1"]
    );
}

#[tokio::test]
async fn a_user_reads_the_policy_only_with_read_policy() {
    let env = Env::start().await;
    let reader = OwnerSigningKey::from_seed(&[8; 32]);
    let text = env.policy("p", "sim", &env.measurement, None).replace(
        "users:\n",
        &format!(
            "users:\n  reader:\n    key: {}\n    read_policy: true\n",
            reader.public_key()
        ),
    );
    env.apply("p", &text).await.unwrap();
    let document = env
        .as_user("p", "reader", &reader)
        .policy_document_signed("p")
        .await
        .unwrap();
    assert_eq!(document.document["users"]["reader"]["read_policy"], true);
    assert!(!serde_json::to_string(&document).unwrap().contains("s3cr3t"));
    match env
        .as_user("p", "ingest", &env.user)
        .policy_document_signed("p")
        .await
    {
        Err(CasError::Forbidden(message)) => assert!(message.contains("read_policy"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    let owner = env
        .client
        .with_credential(Credential::owner("p", copy(&env.owner)));
    owner.policy_document_signed("p").await.unwrap();
}

#[tokio::test]
async fn a_relay_cannot_swap_the_configuration_under_a_genuine_certificate() {
    // Whoever sits between the workload and the CAS (a fake CAS whose certificate the engineer
    // passes as --cas-cert) forwards the genuine request, then seals its own configuration
    // (console: full, other variables) to the workload's HPKE key, which anyone can do.
    let env = Env::start().await;
    env.apply_standard("p").await;
    let (keys, request) = env.request("p", "driver", Some(JOB)).await;
    let genuine = env.client.attest_request(&request).await.unwrap();
    let forged = cipherlake_cas::api::ReleasedConfig {
        console: "full".into(),
        ..Default::default()
    };
    let mut swapped = genuine.clone();
    swapped.config = cipherlake_cas::seal::seal(
        &keys.hpke_public_key(),
        "p",
        "driver",
        &serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    match open_response(&keys, "p", "driver", swapped) {
        Err(CasError::Http(message)) => assert!(
            message.contains("tampered") && message.contains("not the one the certificate binds"),
            "{message}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A certificate for another key, or from a CA other than the one sent with it: refused.
    let (_, other_request) = env.request("p", "driver", Some(JOB)).await;
    let other = env.client.attest_request(&other_request).await.unwrap();
    let mut foreign_leaf = genuine.clone();
    foreign_leaf.certificate_chain_pem = other.certificate_chain_pem.clone();
    assert!(open_response(&keys, "p", "driver", foreign_leaf).is_err());
    env.apply_standard("q").await;
    let mut foreign_ca = genuine.clone();
    foreign_ca.ca_pem = env.client.policy("q").await.unwrap().ca_pem;
    match open_response(&keys, "p", "driver", foreign_ca) {
        Err(CasError::Http(message)) => assert!(message.contains("policy CA"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The genuine reply opens.
    let attested = open_response(&keys, "p", "driver", genuine).unwrap();
    assert_eq!(attested.config.console, "none");
}

#[tokio::test]
async fn a_refused_signature_spends_its_nonce() {
    // Signed by a user the policy does not list yet: refused, and not usable once the policy
    // lists it (the nonce was spent by the refusal).
    let env = Env::start().await;
    let hash = env.apply_standard("p").await;
    let body = wrap_body("footer");
    let headers = signed(&env, "/v1/kms/wrap", &body, "user:later").await;
    let send = || {
        env.client
            .raw_with_headers(Method::POST, "/v1/kms/wrap", Some(body.clone()), &headers)
    };
    let (status, reply) = send().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&reply).contains("has no user"));
    let text = env
        .policy("p", "sim", &env.measurement, Some(&hash))
        .replace(
            "users:\n",
            &format!(
                "users:\n  later:\n    key: {}\n    kms_keys: {{ footer: [wrap] }}\n",
                env.user.public_key()
            ),
        );
    env.apply("p", &text).await.unwrap();
    let (status, reply) = send().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&reply).contains("already used"));
}
