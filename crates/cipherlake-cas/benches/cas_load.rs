//! Load benchmark of the CAS on loopback with the sim TEE (issue 4's "done when"): an
//! in-process LAS and CAS, a sim policy, then
//!
//! * the attestation round trip (fresh keys, nonce, LAS evidence, attest, open the sealed
//!   configuration), sequentially;
//! * the same with 32 concurrent workloads: throughput and latency;
//! * KMS unwrap with the attested workload's mTLS identity.
//!
//! `cargo bench -p cipherlake-cas --bench cas_load` (a plain `main`, no harness). Runs and
//! concurrency can be changed with `CAS_BENCH_RUNS` and `CAS_BENCH_WORKERS`.

use std::time::{Duration, Instant};

use cipherlake_attest::las::{Las, hash_file};
use cipherlake_attest::sim::PlatformKey;
use cipherlake_cas::client::{Attested, CasClient, Credential, fingerprint, las_evidence};
use cipherlake_cas::server;
use cipherlake_cas::service::Config;
use cipherlake_policy::{Operation, OwnerSigningKey, sign};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Percentile `p` (0..=100) of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
    println!(
        "{what:<44} n={:<5} p50={:>7.2} ms  p99={:>7.2} ms  mean={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        mean,
        percentile(&samples, 100.0),
    );
}

fn policy(owner: &str, user: &str, measurement: &str) -> String {
    format!(
        r#"apiVersion: cipherlake/v1
name: bench
predecessor: null
owners: [{owner}]
attestation:
  tees: [sim]
services:
  driver:
    operation: worker
    measurements: [sha384:{measurement}]
    env:
      DB_URL: "{{{{ secret.db_url }}}}"
      FOOTER_HEX: "{{{{ secret.footer | hex }}}}"
    kms_keys: {{ footer: [unwrap, wrap] }}
users:
  reader:
    key: {user}
    kms_keys: {{ footer: [unwrap] }}
secrets:
  db_url: {{ kind: ascii, value: "postgres://bench:secret@db/taxi" }}
  footer: {{ kind: aes-256, generate: true }}
"#
    )
}

async fn attest(client: &CasClient, socket: &std::path::Path) -> Attested {
    let socket = socket.to_path_buf();
    client
        .attest(
            "bench",
            "driver",
            Operation::Worker,
            None,
            |rd| async move { las_evidence(&socket, rd).await },
        )
        .await
        .expect("attestation succeeds")
}

async fn run() {
    let runs = env_or("CAS_BENCH_RUNS", 300);
    let workers = env_or("CAS_BENCH_WORKERS", 32);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("las.sock");
    let platform = PlatformKey::generate().unwrap();
    let platform_hex = hex::encode(platform.public_key().to_bytes());
    let las = Las::bind(platform, &socket).unwrap();
    tokio::spawn(las.run());

    let data = dir.path().join("cas");
    let server = server::start(Config::new(&data), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://{}", server.addr);
    let client = CasClient::new(&url, fingerprint(&server.tls_cert_der)).unwrap();
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap();
    client
        .register_platform(token.trim(), &platform_hex)
        .await
        .unwrap();
    let measurement =
        hex::encode(hash_file(std::fs::File::open("/proc/self/exe").unwrap()).unwrap());
    let owner = OwnerSigningKey::generate().unwrap();
    let user = OwnerSigningKey::generate().unwrap();
    let text = policy(
        &owner.public_key().to_string(),
        &user.public_key().to_string(),
        &measurement,
    );
    client
        .apply_policy("bench", &sign(&text, &owner).unwrap())
        .await
        .unwrap();

    println!(
        "cas_load: CAS {url}, sim TEE via an in-process LAS, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for _ in 0..20 {
        attest(&client, &socket).await; // warm-up (and the LAS measures this binary once)
    }

    let mut sequential = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let attested = attest(&client, &socket).await;
        sequential.push(start.elapsed());
        assert!(attested.config.env.contains_key("DB_URL"));
    }
    report("attestation round trip, sequential", sequential);

    let per_worker = runs.div_ceil(workers).max(10);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, socket) = (client.clone(), socket.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let start = Instant::now();
                attest(&client, &socket).await;
                samples.push(start.elapsed());
            }
            samples
        });
    }
    let mut concurrent = Vec::new();
    while let Some(samples) = tasks.join_next().await {
        concurrent.extend(samples.unwrap());
    }
    let wall = start.elapsed();
    let total = concurrent.len();
    report(
        &format!("attestation round trip, {workers} concurrent"),
        concurrent,
    );
    println!(
        "{:<44} {total} attestations in {:.2} s = {:.1} attestations/s",
        format!("throughput, {workers} concurrent"),
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );

    let attested = attest(&client, &socket).await;
    let kms = client.with_identity(&attested).unwrap();
    let wrapped = kms.kms_wrap("footer", &[7u8; 16]).await.unwrap();
    for _ in 0..20 {
        kms.kms_unwrap("footer", &wrapped).await.unwrap();
    }
    let mut unwraps = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let key = kms.kms_unwrap("footer", &wrapped).await.unwrap();
        unwraps.push(start.elapsed());
        assert_eq!(*key, [7u8; 16]);
    }
    report("KMS unwrap (mTLS identity), sequential", unwraps);

    // The same unwrap by a policy user: a nonce round trip and an ed25519 signature more.
    let reader = client.with_credential(Credential::user("bench", "reader", user));
    for _ in 0..20 {
        reader.kms_unwrap("footer", &wrapped).await.unwrap();
    }
    let mut signed = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let key = reader.kms_unwrap("footer", &wrapped).await.unwrap();
        signed.push(start.elapsed());
        assert_eq!(*key, [7u8; 16]);
    }
    report("KMS unwrap (signed by a user), sequential", signed);
    server.shutdown().await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
