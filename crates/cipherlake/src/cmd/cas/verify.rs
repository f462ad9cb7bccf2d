//! `cipherlake cas verify`: a custodian checks a CAS before trusting it with policies and
//! secrets (see `cipherlake_cas::cas_evidence`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_attest::{Tee, Verifier};
use cipherlake_cas::cas_evidence::{Expectation, verify};
use cipherlake_policy::Tolerance;

/// Check the CAS's evidence and the TLS key it binds.
#[derive(clap::Args)]
pub struct Args {
    /// The CAS URL, e.g. https://cas:8443 (no certificate needed: this command finds it).
    #[arg(long = "cas", value_name = "URL", env = "CIPHERLAKE_CAS")]
    url: String,
    /// The measurement the CAS must run, hex (sim: SHA-384 of the cipherlake executable).
    #[arg(long, value_name = "HEX")]
    expect_measurement: String,
    /// The LAS platform public key that signs the CAS's sim reports (64 hex digits, as printed
    /// by `cipherlake las init-key`). Needed for sim evidence only.
    #[arg(long, value_name = "HEX")]
    las_platform_key: Option<String>,
    /// Write the verified CAS certificate (PEM) here, to pin it later with --cas-cert.
    #[arg(long, value_name = "FILE")]
    write_cert: Option<PathBuf>,
    /// The TEE the CAS must run in (sgx, tdx, sev-snp, azure-snp-vtpm, azure-tdx-vtpm, sim, …).
    #[arg(long, value_name = "TEE")]
    expect_tee: Option<Tee>,
    /// An identity field and the value it must have, hex, named as a policy names it
    /// (`mr_td`, `rtmr0`…`rtmr3`, `mr_config_id`, `host_data`, `id_key_digest`, …). Repeat.
    #[arg(long = "expect", value_name = "FIELD=HEX")]
    expect: Vec<String>,
    /// What to tolerate: debug, outdated-tcb, sw-hardening-needed, configuration-needed,
    /// unevaluated-tcb. Without it a debug TEE and a TCB that is not up to date are refused.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    tolerate: Vec<String>,
    /// DCAP collateral (JSON) for a CAS whose evidence is an SGX or TDX quote.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
}

/// Runs `cipherlake cas verify`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let digits = args.expect_measurement.trim();
    let digits = digits.strip_prefix("sha384:").unwrap_or(digits);
    let measurement = hex::decode(digits).context("--expect-measurement: expected hex digits")?;
    if measurement.is_empty() {
        bail!("--expect-measurement: empty");
    }
    let mut verifier = Verifier::new();
    if let Some(key) = &args.las_platform_key {
        let key = key.trim();
        let key = PlatformPublicKey::from_hex(key.strip_prefix("ed25519:").unwrap_or(key))
            .context("--las-platform-key")?;
        verifier = verifier.with_sim_platform_key(key);
    }
    let mut fields = Vec::new();
    for pair in &args.expect {
        let (field, value) = pair
            .split_once('=')
            .with_context(|| format!("--expect {pair:?}: expected FIELD=HEX"))?;
        let value =
            hex::decode(value.trim()).with_context(|| format!("--expect {field}: not hex"))?;
        fields.push((field.trim().to_string(), value));
    }
    let mut tolerate = Vec::new();
    for word in &args.tolerate {
        let tolerance = <Tolerance as cipherlake_policy::Keyword>::parse(word.trim())
            .with_context(|| {
                format!(
                    "--tolerate {word:?}: not one of {}",
                    <Tolerance as cipherlake_policy::Keyword>::EXPECTED
                )
            })?;
        tolerate.push(tolerance);
    }
    let collateral = match &args.collateral {
        Some(path) => {
            let json =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let dcap = cipherlake_attest::dcap::DcapCollateral::from_json(&json)
                .with_context(|| path.display().to_string())?;
            Some(cipherlake_attest::Collateral::Dcap(std::sync::Arc::new(
                dcap,
            )))
        }
        None => None,
    };
    let verified = verify(
        &args.url,
        &Expectation {
            measurement,
            verifier,
            tee: args.expect_tee,
            fields,
            tolerate,
            collateral,
        },
    )
    .await
    .with_context(|| format!("the CAS at {} is not trustworthy", args.url))?;
    if let Some(path) = &args.write_cert {
        std::fs::write(path, verified.cert_pem())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("certificate written to {}", path.display());
    }
    println!(
        "CAS verified: {} measurement {}, TLS certificate sha256:{}",
        verified.claims.tee.as_str(),
        hex::encode(&verified.claims.measurement),
        hex::encode(verified.fingerprint())
    );
    // What the CAS says of its master key (not attested: the evidence binds the code, which
    // decides it): `none` means its operator can read every secret.
    let client = cipherlake_cas::client::CasClient::new(&args.url, verified.fingerprint())?;
    if let Ok(health) = client.health().await {
        let sealing = health["sealing"].as_str().unwrap_or("unknown");
        println!("sealing: {sealing}");
        if sealing == "none" {
            eprintln!(
                "warning: the CAS keeps its master key in a file its host's administrator can read (sealing: none)"
            );
        }
    }
    Ok(())
}
