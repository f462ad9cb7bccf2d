//! The custodian's and operator's flow through the binary, as docs/policy.md describes it:
//! start a CAS and a LAS, register the LAS, apply a signed policy, attest a process, see its
//! configuration arrive, verify the audit log; check the CAS with `cas verify`; structured logs
//! without secrets; graceful shutdown on SIGTERM.

use std::path::PathBuf;

use super::support::{cipherlake, fails, ok};
use super::testbed::{Testbed, path};

fn policy(owner: &str, measurement: &str, with_sim: bool) -> String {
    // A debug service (sim only): `cipherlake attest` may print its released values.
    let (tees, debug) = if with_sim {
        ("[sim]", "    debug: true\n")
    } else {
        ("[sgx]", "")
    };
    format!(
        "apiVersion: cipherlake/v1\nname: demo\npredecessor: null\nowners: [{owner}]\n\
         attestation:\n  tees: {tees}\n\
         services:\n  driver:\n    operation: worker\n{debug}    measurements: [sha384:{measurement}]\n\
         \x20   env:\n      GREETING: \"hello from {{{{ policy.name }}}}\"\n      TOKEN: \"{{{{ secret.token }}}}\"\n\
         secrets:\n  token: {{ kind: ascii, value: \"canary-7f3a\" }}\n"
    )
}

#[test]
fn apply_attest_and_verify_the_audit_log() {
    let bed = Testbed::start();
    let d = bed.dir.path();
    let (url, cert, data, socket) = (
        bed.url.clone(),
        bed.cert.clone(),
        bed.data.clone(),
        bed.socket.clone(),
    );
    let (owner, owner_key, measurement) = (
        bed.owner.clone(),
        bed.owner_key.clone(),
        bed.measurement.clone(),
    );
    let policy_file: PathBuf = d.join("demo.yaml");
    std::fs::write(&policy_file, policy(&owner, &measurement, true)).unwrap();
    let apply = [
        "policy",
        "apply",
        path(&policy_file),
        "--key",
        path(&owner_key),
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
    ];
    ok(&apply);
    let show = [
        "policy",
        "show",
        "demo",
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
    ];
    let public = ok(&show);
    assert!(
        public.contains("\"hash\"") && !public.contains("canary-7f3a"),
        "{public}"
    );
    let mut as_owner = show.to_vec();
    as_owner.extend(["--key", path(&owner_key)]);
    let full = ok(&as_owner);
    assert!(
        full.contains("GREETING") && !full.contains("canary-7f3a"),
        "{full}"
    );
    let stranger_key = d.join("stranger.key");
    ok(&["policy", "keygen", "--out", path(&stranger_key)]);
    let mut as_stranger = show.to_vec();
    as_stranger.extend(["--key", path(&stranger_key)]);
    let refused = fails(&as_stranger);
    assert!(refused.contains("not an owner"), "{refused}");

    let attest = [
        "attest",
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
        "--policy",
        "demo",
        "--service",
        "driver",
        "--las-socket",
        path(&socket),
    ];
    let config = ok(&attest);
    assert!(config.contains("hello from demo"), "{config}");

    // A policy that no longer lists sim refuses the same process, with the reason.
    let hash = ok(&["policy", "hash", path(&policy_file)]);
    let update = policy(&owner, &measurement, false).replace(
        "predecessor: null",
        &format!("predecessor: {}", hash.trim()),
    );
    std::fs::write(&policy_file, update).unwrap();
    ok(&apply);
    let refused = cipherlake(&attest);
    assert_eq!(refused.status.code(), Some(1));
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(reason.contains("sim"), "{reason}");

    let audit = ok(&[
        "audit",
        "verify",
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
        "--audit-key",
        path(&data.join("audit-public-key")),
        "--policy",
        "demo",
        "--key",
        path(&owner_key),
    ]);
    assert!(!audit.is_empty());
    let log = ok(&[
        "audit",
        "show",
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
        "--token-file",
        path(&data.join("operator.token")),
    ]);
    assert!(
        !log.contains("canary-7f3a"),
        "secret values never reach the audit log"
    );
}

#[test]
fn serve_stops_on_sigterm_with_exit_status_0() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut services = Testbed::start_with(&[], log.reopen().unwrap());
    let status = services.stop_cas();
    assert!(status.success(), "{status:?}");
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("CAS stopped"),
        "{stderr}"
    );
    assert!(std::net::TcpStream::connect(services.url.trim_start_matches("https://")).is_err());
}

#[test]
fn json_logs_carry_decisions_but_never_the_released_secret() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut services = Testbed::start_with(&["-vv", "--log-format", "json"], log.reopen().unwrap());
    let (owner_key, d) = (&services.owner_key, services.dir.path());
    let policy_file = d.join("demo.yaml");
    std::fs::write(
        &policy_file,
        policy(&services.owner, &services.measurement, true),
    )
    .unwrap();
    let cas = [
        "--cas",
        services.url.as_str(),
        "--cas-cert",
        path(&services.cert),
    ];
    let mut apply = vec![
        "policy",
        "apply",
        path(&policy_file),
        "--key",
        path(owner_key),
    ];
    apply.extend(cas);
    ok(&apply);
    let mut attest = vec![
        "attest",
        "--policy",
        "demo",
        "--service",
        "driver",
        "--las-socket",
    ];
    attest.push(path(&services.socket));
    attest.extend(cas);
    let config = ok(&attest);
    assert!(
        config.contains("canary-7f3a"),
        "the secret was released: {config}"
    );
    assert!(services.stop_cas().success());

    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !stderr.contains("canary-7f3a"),
        "the secret reached the CAS log"
    );
    let token = std::fs::read_to_string(services.data.join("operator.token")).unwrap();
    assert!(
        !stderr.contains(token.trim()),
        "the operator token reached the CAS log"
    );
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("each log record is one JSON object"))
        .collect();
    let field = |r: &serde_json::Value, name: &str| r["fields"][name].as_str().map(str::to_string);
    assert!(
        records
            .iter()
            .any(|r| field(r, "message").as_deref() == Some("attestation")
                && field(r, "decision").as_deref() == Some("allowed")
                && field(r, "policy").is_some_and(|p| p.contains("demo"))),
        "an attestation decision record: {stderr}"
    );
    assert!(
        records
            .iter()
            .any(|r| field(r, "route").as_deref() == Some("/v1/attest/probe")
                && r["fields"]["status"] == 200),
        "a request record: {stderr}"
    );
}

#[test]
fn cas_verify_checks_the_cas_before_trusting_it() {
    let services = Testbed::start();
    let pinned = services.dir.path().join("pinned.pem");
    let measurement = services.measurement.clone();
    let verify = |measurement: &str| {
        vec![
            "cas".to_string(),
            "verify".into(),
            "--cas".into(),
            services.url.clone(),
            "--expect-measurement".into(),
            measurement.to_string(),
            "--las-platform-key".into(),
            services.platform.clone(),
            "--write-cert".into(),
            path(&pinned).to_string(),
        ]
    };
    let args = verify(&measurement);
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("CAS verified"), "{out}");
    assert!(out.contains("sealing: none"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&pinned).unwrap(),
        std::fs::read_to_string(&services.cert).unwrap(),
        "the verified certificate is the one to pin"
    );
    // The pinned certificate works for the next commands.
    ok(&[
        "audit",
        "show",
        "--cas",
        &services.url,
        "--cas-cert",
        path(&pinned),
        "--token-file",
        path(&services.data.join("operator.token")),
    ]);

    std::fs::remove_file(&pinned).unwrap();
    let args = verify(&"ab".repeat(48));
    let refused = cipherlake(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("measurement-mismatch"), "{stderr}");
    assert!(!pinned.exists(), "nothing is written for an untrusted CAS");
}

#[test]
fn a_recovery_key_pair_is_created_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recovery.key");
    let public = super::support::ok(&["cas", "recovery-keygen", "--out", file.to_str().unwrap()]);
    assert_eq!(public.trim().len(), 64, "{public}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(&file).unwrap();
    assert_ne!(private.trim(), public.trim());
    let err = super::support::fails(&["cas", "recovery-keygen", "--out", file.to_str().unwrap()]);
    assert!(err.contains("creating"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), private);
}

/// `cas serve` on a fresh data directory with `extra` options: it must stop with exit status 1
/// before serving; returns its one `error:` line (notes may precede it).
fn serve_refused(dir: &std::path::Path, extra: &[&str]) -> String {
    let data = dir.join("cas");
    let mut args = vec![
        "cas",
        "serve",
        "--data-dir",
        path(&data),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let out = cipherlake(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!stderr.contains("CAS serving"), "{stderr}");
    errors[0].to_owned()
}

#[test]
fn a_cas_asked_for_las_evidence_does_not_start_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-las.sock");
    let refused = serve_refused(dir.path(), &["--las-socket", path(&missing)]);
    assert!(
        refused.contains("cannot get its own evidence") && refused.contains("no-las.sock"),
        "{refused}"
    );
}

#[test]
fn a_provisioned_operator_token_must_not_be_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = serve_refused(dir.path(), &["--operator-token-file", path(&token)]);
    assert!(refused.contains("others may read it"), "{refused}");
    assert_eq!(
        refused.matches("others may read it").count(),
        1,
        "said once: {refused}"
    );
}

#[test]
fn probe_succeeds_only_when_every_path_exists() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::write(&ready, "https://127.0.0.1:1\n").unwrap();
    ok(&["probe", path(&ready)]);
    let missing = dir.path().join("las.sock");
    let refused = fails(&["probe", path(&ready), path(&missing)]);
    assert!(
        refused.contains("not ready") && refused.contains("las.sock"),
        "{refused}"
    );
}
