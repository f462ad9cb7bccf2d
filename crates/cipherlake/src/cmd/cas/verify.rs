//! `cipherlake cas verify`: a custodian checks a CAS before trusting it with policies and
//! secrets (see `cipherlake_cas::cas_evidence`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use cipherlake_attest::Verifier;
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_cas::cas_evidence::{Expectation, verify};

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
    let verified = verify(
        &args.url,
        &Expectation {
            measurement,
            verifier,
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
    Ok(())
}
