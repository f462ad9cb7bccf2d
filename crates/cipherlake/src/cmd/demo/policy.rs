//! The demo's custodian: an owner key, the policy `taxi-demo` filled in for this binary and
//! workdir, applied (or kept, when the CAS already runs the same policy).

use std::path::Path;

use cipherlake_cas::client::CasClient;

use crate::cmd::generated_policy::{self, Applied};

/// The policy name.
pub const NAME: &str = "taxi-demo";
/// The policy's user who reads the results and the audit log.
pub const CUSTODIAN: &str = "custodian";
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
    /// The custodian's public key (a user of the policy).
    pub custodian: &'a str,
}

fn fill(owner: &str, predecessor: &str, inputs: &Inputs<'_>) -> String {
    TEMPLATE
        .replace("@PREDECESSOR@", predecessor)
        .replace("@OWNER@", owner)
        .replace("@MEASUREMENT@", inputs.measurement)
        .replace("@JOB@", inputs.job)
        .replace("@CUSTODIAN@", inputs.custodian)
        .replace("@TAXI@", &inputs.taxi.display().to_string())
        .replace("@ZONES@", &inputs.zones.display().to_string())
        .replace("@RESULTS@", &inputs.results.display().to_string())
}

/// Applies the policy for `inputs` (see [`generated_policy::apply`]).
pub async fn apply(
    cas: &CasClient,
    workdir: &Path,
    inputs: &Inputs<'_>,
) -> anyhow::Result<Applied> {
    generated_policy::apply(cas, workdir, NAME, |owner, predecessor| {
        fill(owner, predecessor, inputs)
    })
    .await
}
