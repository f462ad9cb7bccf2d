//! The custodian's and operator's flow through the binary, as docs/policy.md describes it:
//! start a CAS and a LAS, register the LAS, apply a signed policy, attest a process, see its
//! configuration arrive, verify the audit log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha384};

use super::support::{cipherlake, ok};

/// A background process killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Background {
    Background(
        Command::new(env!("CARGO_BIN_EXE_cipherlake"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

/// Waits (bounded) until `ready` holds.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn policy(owner: &str, measurement: &str, with_sim: bool) -> String {
    let tees = if with_sim { "[sim]" } else { "[sgx]" };
    format!(
        "apiVersion: cipherlake/v1\nname: demo\npredecessor: null\nowners: [{owner}]\n\
         attestation:\n  tees: {tees}\n\
         services:\n  driver:\n    measurements: [sha384:{measurement}]\n\
         \x20   env:\n      GREETING: \"hello from {{{{ policy.name }}}}\"\n      TOKEN: \"{{{{ secret.token }}}}\"\n\
         secrets:\n  token: {{ kind: ascii, value: \"canary-7f3a\" }}\n"
    )
}

#[test]
fn apply_attest_and_verify_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, cert, token) = (
        d.join("cas"),
        d.join("cas/tls-cert.pem"),
        d.join("cas/operator.token"),
    );
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _cas = spawn(&[
        "cas",
        "serve",
        "--data-dir",
        path(&data),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    wait_for("the CAS", || {
        cert.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let platform_key = d.join("platform.key");
    let platform = ok(&["las", "init-key", path(&platform_key)]);
    let socket = d.join("las.sock");
    let _las = spawn(&[
        "las",
        "--platform-key",
        path(&platform_key),
        "--socket",
        path(&socket),
    ]);
    wait_for("the LAS", || socket.exists());
    ok(&[
        "cas",
        "register-platform",
        "--cas",
        &url,
        "--cas-cert",
        path(&cert),
        "--token-file",
        path(&token),
        platform.trim(),
    ]);

    let owner_key = d.join("owner.key");
    let owner = ok(&["policy", "keygen", "--out", path(&owner_key)]);
    let owner = owner
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .expect("public key printed")
        .to_string();
    let measurement = hex::encode(Sha384::digest(
        std::fs::read(env!("CARGO_BIN_EXE_cipherlake")).unwrap(),
    ));
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
    ]);
    assert!(!audit.is_empty());
    let log = ok(&["audit", "show", "--cas", &url, "--cas-cert", path(&cert)]);
    assert!(
        !log.contains("canary-7f3a"),
        "secret values never reach the audit log"
    );
}
