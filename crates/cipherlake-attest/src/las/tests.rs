//! Attacks on the LAS that need its test seam or a child process: an exec between accept and
//! signing, and the socket's permissions under a permissive umask.
//!
//! Child processes are this test binary run with `--exact las::tests::child_process` and a role
//! in [`ROLE`]; without it that test does nothing.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha384};

use super::measure::Executable;
use super::{Las, SOCKET_MODE, same_executable};
use crate::sim::PlatformKey;
use crate::{Evidence, Tee, Verifier, VerifyOptions};

/// What the child process does: `exec`, `stay` or `umask`.
const ROLE: &str = "CIPHERLAKE_LAS_TEST_ROLE";
/// The LAS socket (`exec`, `stay`) or the directory to bind one in (`umask`).
const PATH: &str = "CIPHERLAKE_LAS_TEST_PATH";
/// Where the child writes the LAS's raw reply.
const OUT: &str = "CIPHERLAKE_LAS_TEST_OUT";

/// Bounds waiting for a child that never connects; not a delay, the test waits on the LAS.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

fn child_command() -> Command {
    let mut command = Command::new(std::env::current_exe().expect("current exe"));
    command.args([
        "--exact",
        "las::tests::child_process",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// The child side of the tests below; does nothing unless [`ROLE`] is set.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = PathBuf::from(std::env::var_os(PATH).expect("path"));
    match role.as_str() {
        "exec" | "stay" => {
            let out = PathBuf::from(std::env::var_os(OUT).expect("out"));
            connect_then_request(&path, &out, role == "exec");
        }
        "umask" => bind_under_umask(&path),
        other => panic!("unknown role {other}"),
    }
}

/// Connects to the LAS, waits for the parent's go (a byte on stdin, sent once the LAS has
/// measured this process at accept), then sends the request itself or, with `exec`, execs
/// `/bin/sh`, which sends the request over the inherited socket and writes the reply to `out`.
fn connect_then_request(socket: &Path, out: &Path, exec: bool) {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).expect("go");
    let request = format!(r#"{{"report_data":"{}"}}"#, hex::encode([0x42u8; 64]));
    let mut frame = (request.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(request.as_bytes());
    if exec {
        let escaped: String = frame.iter().map(|b| format!("\\{b:03o}")).collect();
        let error = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(r#"printf '{escaped}' >&0 && exec cat > "$1""#))
            .arg("sh")
            .arg(out)
            .stdin(Stdio::from(OwnedFd::from(stream)))
            .exec();
        panic!("exec /bin/sh: {error}");
    }
    stream.write_all(&frame).expect("request");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reply");
    std::fs::write(out, reply).expect("write reply");
}

fn bind_under_umask(dir: &Path) {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    assert!(
        status.lines().any(|l| l == "Umask:\t0000"),
        "the child should run with umask 0"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = dir.join("las.sock");
        let _las = Las::bind(PlatformKey::from_seed(&[3; 32]), &socket).expect("bind");
        let mode = std::fs::metadata(&socket)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, SOCKET_MODE);
    });
}

/// Runs a LAS whose test seam reports each accepted pid, starts a child in `role` against it,
/// tells the child to go on once the LAS has measured it at accept, and returns the LAS's reply
/// (as JSON) and the verifier for its key.
async fn exchange_with_child(role: &str) -> (serde_json::Value, Verifier) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("las.sock");
    let out = dir.path().join("reply");
    let key = PlatformKey::generate().expect("key");
    let verifier = Verifier::new().with_sim_platform_key(key.public_key());
    let (accepted, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut las = Las::bind(key, &socket).expect("bind");
    Arc::get_mut(&mut las.state).expect("unshared").after_accept = Some(Box::new(move |pid| {
        let _ = accepted.send(pid);
    }));
    tokio::spawn(las.run());

    let mut child = child_command()
        .env(ROLE, role)
        .env(PATH, &socket)
        .env(OUT, &out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    let pid = tokio::time::timeout(CHILD_DEADLINE, accepted_rx.recv())
        .await
        .expect("the child connected")
        .expect("the LAS is running");
    assert_eq!(
        u32::try_from(pid).ok(),
        Some(child.id()),
        "the LAS saw the child"
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"g")
        .expect("go");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "child failed: {status}");

    let reply = std::fs::read(&out).expect("reply file");
    assert!(reply.len() >= 4, "no reply frame: {reply:?}");
    let len = u32::from_be_bytes(reply[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(reply.len(), 4 + len, "one frame");
    let json = serde_json::from_slice(&reply[4..]).expect("json reply");
    (json, verifier)
}

/// The attack: connect as one program, exec another once the LAS has accepted (and measured),
/// and ask for a report as the new program. The LAS must notice at signing and refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_after_accept_is_refused() {
    let (reply, _) = exchange_with_child("exec").await;
    let error = reply["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refusal, got {reply}"));
    assert!(
        error.contains("the caller's executable changed between accept and signing"),
        "{error}"
    );
    assert!(error.contains("exec after connect"), "{error}");
}

/// The control for the attack: the same child, not exec'ing, gets a report of its own
/// executable, so the refusal above is due to the exec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_keeps_its_executable_gets_a_report() {
    let (reply, verifier) = exchange_with_child("stay").await;
    let report = reply["report"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a report, got {reply}"));
    let evidence = Evidence::new(Tee::Sim, hex::decode(report).expect("hex"));
    let claims = verifier
        .verify(&evidence, &VerifyOptions::now())
        .expect("verifies");
    let exe = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    assert_eq!(claims.measurement, Sha384::digest(&exe).to_vec());
    assert_eq!(claims.report_data, [0x42; 64]);
}

#[test]
fn the_check_refuses_another_file_or_changed_content() {
    let at_accept = Executable {
        dev: 7,
        ino: 100,
        hash: [1; 48],
    };
    assert_eq!(same_executable(&at_accept, &at_accept), Ok(()));
    for (what, before_signing) in [
        (
            "inode",
            Executable {
                ino: 101,
                ..at_accept
            },
        ),
        (
            "device",
            Executable {
                dev: 8,
                ..at_accept
            },
        ),
        (
            "content",
            Executable {
                hash: [2; 48],
                ..at_accept
            },
        ),
    ] {
        let error = same_executable(&at_accept, &before_signing)
            .expect_err(&format!("another {what} must be refused"));
        assert!(
            error.contains("the caller's executable changed between accept and signing"),
            "{what}: {error}"
        );
    }
}

/// With umask 0 a plainly bound socket would be 0777 (anyone may connect); the LAS's is 0660.
#[test]
fn socket_mode_is_0660_under_a_permissive_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" "$@""#)
        .arg(&exe)
        .args(child_command().get_args())
        .env(ROLE, "umask")
        .env(PATH, dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("run child");
    assert!(status.success(), "child failed: {status}");
    let meta = std::fs::metadata(dir.path().join("las.sock")).expect("the child bound a socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
}

/// The socket is 0660 and owned by the chosen group (as root, a group we are not in; otherwise
/// our own, the only one a plain user can surely give it to).
#[tokio::test]
async fn socket_is_0660_and_in_the_chosen_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").expect("probe");
    let probe = std::fs::metadata(&probe).expect("meta");
    let gid = if probe.uid() == 0 { 4242 } else { probe.gid() };
    let socket = dir.path().join("las.sock");
    let _las =
        Las::bind_with_group(PlatformKey::from_seed(&[4; 32]), &socket, Some(gid)).expect("bind");
    let meta = std::fs::metadata(&socket).expect("meta");
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
}
