//! `cipherlake attest`: check whether this binary would be admitted as a service (debugging a
//! policy). It sends a probe: evidence binding the operation `probe`, which the CAS answers
//! without a certificate or KMS rights. It prints what the service would receive by name and
//! size; values only for a service marked `debug: true` in a policy that lists sim. It cannot
//! claim the service's operation: only the code performing an operation binds it.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_cas::binding::job_hash;
use cipherlake_cas::client::attester_evidence;

use super::cas::CasConnection;
use super::workload::WorkloadArgs;

/// Check admission as a service and show what it would receive.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cas: CasConnection,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// A job file whose allow-listing to check (its SHA-256 is bound into the probe).
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
    let (policy, service) = args.workload.names()?;
    let attester = args.workload.evidence.attester()?;
    let (probe, config) = args
        .cas
        .client()?
        .probe(policy, service, job, |report_data| async move {
            attester_evidence(&attester, report_data).await
        })
        .await
        .with_context(|| format!("probing admission as {policy}/{service}"))?;
    println!(
        "admitted as {policy}/{service} (operation {}, policy version {}); a probe receives no certificate and no KMS rights",
        probe.operation, probe.policy_hash
    );
    let summary = &probe.summary;
    match &config {
        Some(config) => {
            println!("debug service: released values follow");
            for (name, value) in &config.env {
                println!("env {name}={}", value.as_str());
            }
            for (i, arg) in config.args.iter().enumerate() {
                println!("arg[{i}] {}", arg.as_str());
            }
        }
        None => {
            for (name, size) in &summary.env {
                println!("env {name} ({size} bytes)");
            }
            for (i, size) in summary.args.iter().enumerate() {
                println!("arg[{i}] ({size} bytes)");
            }
        }
    }
    for (path, size) in &summary.files {
        println!("file {path} ({size} bytes)");
    }
    for (key, rights) in &summary.kms_keys {
        println!("kms {key}: {rights}");
    }
    println!("console {}", summary.console);
    Ok(())
}
