//! Policies that cipherlake generates for a workdir (the demo's, the local cluster's): an owner
//! key kept in the workdir, the policy applied as a successor of the CAS's current version or
//! kept when unchanged, and this executable's sim measurement as the LAS reports it.

use std::path::Path;

use anyhow::Context;
use cipherlake_attest::las::request_report;
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_attest::{Verifier, VerifyOptions};
use cipherlake_cas::CasError;
use cipherlake_cas::client::CasClient;
use cipherlake_policy::{OwnerSigningKey, Policy, sign};

use super::demo::write_atomically;

/// The policy version in force.
pub struct Applied {
    /// Its hash.
    pub hash: String,
    /// Whether the CAS already had it.
    pub reused: bool,
    /// The owner public key.
    pub owner: String,
}

/// Loads the ed25519 key in `file`, creating it (0600) on first use.
pub fn key_file(file: &Path) -> anyhow::Result<OwnerSigningKey> {
    if !file.exists() {
        let key = OwnerSigningKey::generate()?;
        write_atomically(file, key.to_file_text().as_bytes(), 0o600)?;
    }
    super::workload::load_key(file)
}

/// Applies the policy `name` that `fill(owner, predecessor)` writes, as a successor of the
/// CAS's current version; keeps the current version when it is the one saved in
/// `workdir/policy.yaml` with the same content. The owner key is `workdir/owner.key`.
pub async fn apply(
    cas: &CasClient,
    workdir: &Path,
    name: &str,
    fill: impl Fn(&str, &str) -> String,
) -> anyhow::Result<Applied> {
    let key = key_file(&workdir.join("owner.key"))?;
    let owner = key.public_key().to_string();
    let current = match cas.policy(name).await {
        Ok(info) => Some(info.hash),
        Err(CasError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let saved_file = workdir.join("policy.yaml");
    if let (Some(current), Ok(saved)) = (&current, std::fs::read_to_string(&saved_file))
        && saved == fill(&owner, current_predecessor(&saved))
        && Policy::parse(&saved).is_ok_and(|p| p.hash().to_string() == *current)
    {
        return Ok(Applied {
            hash: current.clone(),
            reused: true,
            owner,
        });
    }
    let text = fill(&owner, current.as_deref().unwrap_or("null"));
    let signed = sign(&text, &key).with_context(|| format!("signing the policy {name}"))?;
    let info = cas.apply_policy(name, &signed).await?;
    write_atomically(&saved_file, text.as_bytes(), 0o644)?;
    Ok(Applied {
        hash: info.hash,
        reused: false,
        owner,
    })
}

/// The `predecessor:` value of a saved policy text.
fn current_predecessor(text: &str) -> &str {
    text.lines()
        .find_map(|line| line.strip_prefix("predecessor: "))
        .unwrap_or("null")
        .trim()
}

/// This executable's measurement as the LAS at `socket` sees it (SHA-384 of the file), read
/// from a report verified with the LAS's `platform` key, hex.
pub async fn measurement(socket: &Path, platform: PlatformPublicKey) -> anyhow::Result<String> {
    let evidence = request_report(socket, &[0; 64]).await?;
    let now = std::time::SystemTime::now();
    let claims = Verifier::new()
        .with_sim_platform_key(platform)
        .verify(&evidence, &VerifyOptions::at_system_time(now))
        .context("verifying the LAS's report")?;
    Ok(hex::encode(claims.measurement))
}
