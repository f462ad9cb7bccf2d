//! The demo's custodian: an owner key, the policy `taxi-demo` filled in for this binary and
//! workdir, applied (or kept, when the CAS already runs the same policy).

use std::path::Path;

use anyhow::Context;
use cipherlake_cas::CasError;
use cipherlake_cas::client::CasClient;
use cipherlake_policy::{OwnerSigningKey, Policy, sign};

/// The policy name.
pub const NAME: &str = "taxi-demo";
/// The policy template (`@NAME@` placeholders).
const TEMPLATE: &str = include_str!("policy.yaml");

/// Paths and hashes the policy names.
pub struct Inputs<'a> {
    /// SHA-384 of this executable, hex (the sim measurement).
    pub measurement: &'a str,
    /// SHA-256 of the job file, hex.
    pub job: &'a str,
    /// The encrypted trips directory.
    pub taxi: &'a Path,
    /// The zone table.
    pub zones: &'a Path,
    /// The results directory.
    pub results: &'a Path,
}

/// The policy version in force.
pub struct Applied {
    /// Its hash.
    pub hash: String,
    /// Whether the CAS already had it.
    pub reused: bool,
    /// The owner public key.
    pub owner: String,
}

/// Loads the owner key from `workdir/owner.key`, creating it (0600) on first use.
fn owner_key(workdir: &Path) -> anyhow::Result<OwnerSigningKey> {
    let file = workdir.join("owner.key");
    if !file.exists() {
        let key = OwnerSigningKey::generate()?;
        super::write_atomically(&file, key.to_file_text().as_bytes(), 0o600)?;
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
    );
    Ok(OwnerSigningKey::from_file_text(&text)?)
}

fn fill(owner: &str, predecessor: &str, inputs: &Inputs<'_>) -> String {
    TEMPLATE
        .replace("@PREDECESSOR@", predecessor)
        .replace("@OWNER@", owner)
        .replace("@MEASUREMENT@", inputs.measurement)
        .replace("@JOB@", inputs.job)
        .replace("@TAXI@", &inputs.taxi.display().to_string())
        .replace("@ZONES@", &inputs.zones.display().to_string())
        .replace("@RESULTS@", &inputs.results.display().to_string())
}

/// Applies the policy for `inputs`, as a successor of the CAS's current version; keeps the
/// current version when it is the one saved in `workdir/policy.yaml` with the same content.
pub async fn apply(
    cas: &CasClient,
    workdir: &Path,
    inputs: &Inputs<'_>,
) -> anyhow::Result<Applied> {
    let key = owner_key(workdir)?;
    let owner = key.public_key().to_string();
    let current = match cas.policy(NAME).await {
        Ok(info) => Some(info.hash),
        Err(CasError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let saved_file = workdir.join("policy.yaml");
    if let (Some(current), Ok(saved)) = (&current, std::fs::read_to_string(&saved_file))
        && saved == fill(&owner, current_predecessor(&saved), inputs)
        && Policy::parse(&saved).is_ok_and(|p| p.hash().to_string() == *current)
    {
        return Ok(Applied {
            hash: current.clone(),
            reused: true,
            owner,
        });
    }
    let text = fill(&owner, current.as_deref().unwrap_or("null"), inputs);
    let signed = sign(&text, &key).context("signing the demo policy")?;
    let info = cas.apply_policy(NAME, &signed).await?;
    super::write_atomically(&saved_file, text.as_bytes(), 0o644)?;
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
