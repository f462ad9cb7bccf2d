//! `cipherlake attest`: attest this process to the CAS through the LAS and print what it
//! received (for debugging a policy: the configuration printed contains its secrets).

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_cas::binding::job_hash;

use super::cas::CasConnection;
use super::workload::WorkloadArgs;

/// Attest to the CAS and print the certificate expiry and the released configuration.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cas: CasConnection,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// The job file this workload would run (its SHA-256 is bound and checked).
    #[arg(long, value_name = "FILE")]
    job: Option<PathBuf>,
}

/// Runs `cipherlake attest`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let job = match &args.job {
        Some(file) => Some(job_hash(
            &std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )),
        None => None,
    };
    let attested = args.workload.attest(&args.cas.client()?, job).await?;
    println!(
        "attested as {}/{} (policy version {}); certificate valid until {} (unix)",
        attested.policy, attested.service, attested.policy_hash, attested.expires
    );
    for (name, value) in &attested.config.env {
        println!("env {name}={}", value.as_str());
    }
    for (i, arg) in attested.config.args.iter().enumerate() {
        println!("arg[{i}] {}", arg.as_str());
    }
    for (path, content) in &attested.config.files {
        println!("file {path} ({} bytes)", content.len());
    }
    Ok(())
}
