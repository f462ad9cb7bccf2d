//! Operations: Prometheus metrics and graceful shutdown, through the real HTTPS server.

use std::sync::Arc;
use std::time::Duration;

use cipherlake_cas::cas_evidence::{CertRecorder, recording_tls_config};
use reqwest::Method;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{Env, JOB, assert_denied};

/// The value of the sample whose line starts with `series` (name and labels); 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_attestations_by_reason_and_kms_calls_by_outcome() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    let attested = env.attest("p", "driver", Some(JOB)).await.unwrap();
    assert_denied(
        env.attest("p", "driver", Some([9u8; 32])).await,
        "job-not-allowed",
    );
    let kms = env.client.with_identity(&attested).unwrap();
    let wrapped = kms.kms_wrap("footer", &[1u8; 16]).await.unwrap();
    kms.kms_unwrap("footer", &wrapped).await.unwrap();
    kms.kms_unwrap("pii", &wrapped).await.unwrap_err(); // not granted to the driver

    let (status, body) = env.client.raw(Method::GET, "/metrics", None).await.unwrap();
    assert!(status.is_success());
    let text = String::from_utf8(body).unwrap();
    let attestations = "cipherlake_cas_attestations_total";
    for (decision, reason) in [("allowed", "none"), ("denied", "job")] {
        let series = format!("{attestations}{{decision=\"{decision}\",reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &series), 1.0, "{series}: {text}");
    }
    let kms_calls = "cipherlake_cas_kms_calls_total";
    for (op, outcome) in [("wrap", "ok"), ("unwrap", "ok"), ("unwrap", "denied")] {
        let series = format!("{kms_calls}{{operation=\"{op}\",outcome=\"{outcome}\"}}");
        assert_eq!(sample(&text, &series), 1.0, "{series}: {text}");
    }
    let latency = "cipherlake_cas_request_duration_seconds_count{route=\"/v1/attest\"}";
    assert_eq!(sample(&text, latency), 2.0, "{text}");
    assert!(
        !text.contains("s3cr3t") && !text.contains("postgres"),
        "no secret in metrics"
    );
}

#[tokio::test]
async fn metrics_count_a_malformed_attestation_as_a_request_denial() {
    let env = Env::start().await;
    let (status, _) = env
        .client
        .raw(Method::POST, "/v1/attest", Some(b"{not json".to_vec()))
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 400);
    let (_, body) = env.client.raw(Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8(body).unwrap();
    let series = "cipherlake_cas_attestations_total{decision=\"denied\",reason=\"request\"}";
    assert_eq!(sample(&text, series), 1.0, "{text}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_refuses_connections() {
    let mut env = Env::start().await;
    let server = env.server.take().unwrap();
    let addr = server.addr;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        recording_tls_config(Arc::new(CertRecorder::default())).unwrap(),
    ));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // A request whose body is still arriving when the shutdown starts.
    let body = br#"{"policy": 1, "padding": "....."}"#;
    let head = format!(
        "POST /v1/attest HTTP/1.1\r\nhost: cas\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..8]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shutdown = tokio::spawn(server.shutdown());
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port refuses new connections once the shutdown starts"
    );
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the request in flight"
    );

    tls.write_all(&body[8..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = tls.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "the request in flight got its answer: {response}"
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("the shutdown completes once the request is answered")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_with_only_idle_connections_is_immediate() {
    let mut env = Env::start().await;
    env.client.healthz().await.unwrap(); // leaves a keep-alive connection open
    let server = env.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(2), server.shutdown())
        .await
        .expect("idle connections close at once");
    assert!(env.client.healthz().await.is_err());
}
