//! The LAS end to end: it measures the caller itself, serves concurrent clients, and answers
//! garbage with errors while continuing to serve.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cipherlake_attest::las::{self, Las, LasError};
use cipherlake_attest::sim::PlatformKey;
use cipherlake_attest::{Verifier, VerifyOptions};
use sha2::{Digest, Sha384};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn own_measurement() -> Vec<u8> {
    let exe = std::fs::read(std::env::current_exe().expect("current exe")).expect("read exe");
    Sha384::digest(&exe).to_vec()
}

/// Starts a LAS on a socket in `dir`; returns the socket path and the verifier for it.
fn start(dir: &Path) -> (std::path::PathBuf, Verifier) {
    let socket = dir.join("las.sock");
    let key = PlatformKey::generate().expect("key");
    let verifier = Verifier::new().with_sim_platform_key(key.public_key());
    let las = Las::bind(key, &socket).expect("bind");
    tokio::spawn(las.run());
    (socket, verifier)
}

/// Sends raw bytes and returns the raw reply frame's JSON (or None if the LAS hung up).
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream.shutdown().await.expect("shutdown write side");
    let len = stream.read_u32().await.ok()? as usize;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

fn frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_measures_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, verifier) = start(dir.path());
    let report_data = [0x5a; 64];
    let evidence = las::request_report(&socket, &report_data)
        .await
        .expect("report");
    let claims = verifier
        .verify(&evidence, &VerifyOptions::now())
        .expect("verifies");
    assert_eq!(claims.measurement, own_measurement());
    assert_eq!(claims.report_data, report_data);
    assert!(!claims.debug);
    let now = cipherlake_attest::time::now_unix();
    assert!(claims.timestamp.is_some_and(|t| t <= now && t + 60 >= now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_choose_its_measurement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, verifier) = start(dir.path());
    let request = format!(
        r#"{{"report_data":"{}","measurement":"{}"}}"#,
        hex::encode([1u8; 64]),
        hex::encode([0u8; 48])
    );
    let reply = raw_exchange(&socket, &frame(&request))
        .await
        .expect("reply");
    let report = hex::decode(reply["report"].as_str().expect("a report")).expect("hex");
    let evidence = cipherlake_attest::Evidence::new(cipherlake_attest::Tee::Sim, report);
    let claims = verifier
        .verify(&evidence, &VerifyOptions::now())
        .expect("verifies");
    assert_eq!(claims.measurement, own_measurement());
    assert_ne!(claims.measurement, vec![0u8; 48]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_32_concurrent_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, verifier) = start(dir.path());
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..32u8 {
        let socket = socket.clone();
        clients.spawn(async move { (i, las::request_report(&socket, &[i; 64]).await) });
    }
    let measurement = own_measurement();
    let mut served = 0;
    while let Some(joined) = clients.join_next().await {
        let (i, evidence) = joined.expect("client task");
        let claims = verifier
            .verify(&evidence.expect("report"), &VerifyOptions::now())
            .expect("verifies");
        assert_eq!(claims.report_data, [i; 64]);
        assert_eq!(claims.measurement, measurement);
        served += 1;
    }
    assert_eq!(served, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_errors_and_the_las_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, verifier) = start(dir.path());
    let oversized = u32::MAX.to_be_bytes().to_vec();
    let cases: Vec<Vec<u8>> = vec![
        oversized,
        frame("not json"),
        frame(r#"{"report_data":"zz"}"#),
        frame(r#"{"report_data":"abcd"}"#),
        frame(r#"{"nothing":1}"#),
        vec![0, 0],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let reply = raw_exchange(&socket, bytes).await;
        let error = reply
            .as_ref()
            .and_then(|r| r["error"].as_str())
            .unwrap_or_else(|| panic!("case {i}: expected an error reply, got {reply:?}"));
        assert!(!error.is_empty());
    }
    // A client that connects and hangs up at once.
    drop(UnixStream::connect(&socket).await.expect("connect"));
    let evidence = las::request_report(&socket, &[7; 64])
        .await
        .expect("still serving");
    verifier
        .verify(&evidence, &VerifyOptions::now())
        .expect("verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_is_reported_to_the_client_and_live_socket_is_not_stolen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, _) = start(dir.path());
    let key = PlatformKey::generate().expect("key");
    assert!(matches!(Las::bind(key, &socket), Err(LasError::Io { .. })));
    let missing = dir.path().join("nobody.sock");
    assert!(matches!(
        las::request_report(&missing, &[0; 64]).await,
        Err(LasError::Io { .. })
    ));
}

#[test]
fn key_files_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("platform.key");
    let public = las::init_key(&path).expect("init");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(las::load_key(&path).expect("load").public_key(), public);
    assert!(matches!(las::init_key(&path), Err(LasError::Io { .. })));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        las::load_key(&path),
        Err(LasError::KeyFile { .. })
    ));

    let short = dir.path().join("short.key");
    std::fs::write(&short, [0u8; 31]).expect("write");
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(matches!(
        las::load_key(&short),
        Err(LasError::KeyFile { .. })
    ));
}
