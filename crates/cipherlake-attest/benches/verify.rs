//! Verification time per evidence kind (collateral parsed once and reused) and LAS reports per
//! second under 32 concurrent clients.
//!
//! Run: `cargo bench -p cipherlake-attest --bench verify`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cipherlake_attest::dcap::DcapCollateral;
use cipherlake_attest::encoding::decode_binary_or_hex;
use cipherlake_attest::las::{self, Las};
use cipherlake_attest::maa::MaaTrust;
use cipherlake_attest::sim::PlatformKey;
use cipherlake_attest::snp::SnpCollateral;
use cipherlake_attest::{Collateral, Evidence, Tee, Verifier, VerifyOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;

const CLIENTS: usize = 32;

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/evidence")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dcap(tee: Tee, quote: &str, collateral: &str) -> Evidence {
    let collateral = DcapCollateral::from_json(&fixture(collateral)).expect("collateral");
    Evidence::new(tee, fixture(quote)).with_collateral(Collateral::Dcap(Arc::new(collateral)))
}

/// An MAA verifier and a token for it, signed with the test key.
fn maa() -> (Verifier, Evidence) {
    let pem = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/maa_key.pem"),
    )
    .expect("test key");
    let der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .expect("base64");
    let key = rsa::PrivateKey::from_pkcs8_der(&der).expect("key");
    let public = key.to_public_key();
    let jwks = serde_json::json!({ "keys": [{
        "kid": "k", "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
    }]});
    let trust = MaaTrust::new(jwks.to_string().as_bytes(), "https://issuer").expect("trust");
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        b64(serde_json::json!({"alg": "RS256", "kid": "k"})),
        b64(serde_json::json!({
            "iss": "https://issuer", "exp": u64::MAX / 2,
            "x-ms-attestation-type": "sgx",
            "x-ms-sgx-mrenclave": hex::encode([1u8; 32]),
            "x-ms-sgx-mrsigner": hex::encode([2u8; 32]),
            "x-ms-sgx-is-debuggable": false,
            "x-ms-sgx-report-data": hex::encode([3u8; 64]),
        }))
    );
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
        .sign(input.as_bytes())
        .to_bytes();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    (
        Verifier::new().with_maa(trust),
        Evidence::new(Tee::Azure, token.into_bytes()),
    )
}

fn verification(c: &mut Criterion) {
    let july_2025 = VerifyOptions::at(1_751_328_000);
    let plain = Verifier::new();
    let snp_collateral = SnpCollateral::new(
        &fixture("snp/vcek_milan.der"),
        Some(&fixture("snp/cert_chain_milan")),
    )
    .expect("SNP collateral");
    let platform = PlatformKey::from_seed(&[1; 32]);
    let sim_verifier = Verifier::new().with_sim_platform_key(platform.public_key());
    let (maa_verifier, token) = maa();
    let azure =
        |name: &str| Evidence::new(Tee::AzureSnpVtpm, fixture(&format!("azure-vtpm/{name}")));
    let genoa_nonce = hex::decode(
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
    )
    .expect("hex");
    let vtpm_cases = [
        (
            "azure-snp-vtpm-milan",
            azure("snp-milan-evidence-v0.json"),
            july_2025.clone().with_nonce(b"challenge"),
        ),
        (
            "azure-snp-vtpm-genoa",
            azure("snp-genoa-evidence-v0.json"),
            july_2025.clone().with_nonce(&genoa_nonce),
        ),
    ];
    let cases = [
        (
            "sgx",
            &plain,
            dcap(Tee::Sgx, "sgx/sgx_quote", "sgx/sgx_quote_collateral.json"),
        ),
        (
            "tdx",
            &plain,
            dcap(Tee::Tdx, "tdx/tdx_quote", "tdx/tdx_quote_collateral.json"),
        ),
        (
            "sev-snp",
            &plain,
            Evidence::new(
                Tee::SevSnp,
                decode_binary_or_hex(&fixture("snp/report_milan.hex")),
            )
            .with_collateral(Collateral::Snp(Arc::new(snp_collateral))),
        ),
        ("azure", &maa_verifier, token),
        (
            "sim",
            &sim_verifier,
            Evidence::new(Tee::Sim, platform.sign_report([7; 48], [9; 64], 0, 0)),
        ),
    ];
    let mut group = c.benchmark_group("verify");
    for (name, verifier, evidence) in &cases {
        verifier
            .verify(evidence, &july_2025)
            .expect("benchmark evidence verifies");
        group.bench_function(*name, |b| {
            b.iter(|| black_box(verifier.verify(black_box(evidence), &july_2025)))
        });
    }
    for (name, evidence, options) in &vtpm_cases {
        plain
            .verify(evidence, options)
            .expect("benchmark evidence verifies");
        group.bench_function(*name, |b| {
            b.iter(|| black_box(plain.verify(black_box(evidence), options)))
        });
    }
    group.finish();
}

fn las_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket: PathBuf = dir.path().join("las.sock");
    runtime.block_on(async {
        let las = Las::bind(PlatformKey::from_seed(&[1; 32]), &socket).expect("bind");
        tokio::spawn(las.run());
        // Warm the measurement cache.
        las::request_report(&socket, &[0; 64])
            .await
            .expect("report");
    });
    let mut group = c.benchmark_group("las");
    group.throughput(Throughput::Elements(CLIENTS as u64));
    group.bench_function("reports_32_concurrent_clients", |b| {
        b.to_async(&runtime).iter(|| concurrent_reports(&socket))
    });
    group.finish();
}

async fn concurrent_reports(socket: &Path) {
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let socket = socket.to_path_buf();
        clients.spawn(async move { las::request_report(&socket, &[i as u8; 64]).await });
    }
    while let Some(result) = clients.join_next().await {
        black_box(result.expect("task").expect("report"));
    }
}

criterion_group!(benches, verification, las_throughput);
criterion_main!(benches);
