//! `cipherlake attest`: attest this process to the CAS through the LAS and print what it
//! received (for debugging a policy: the configuration printed contains its secrets).

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_attest::attester::DEFAULT_LAS_SOCKET;
use cipherlake_cas::binding::job_hash;
use cipherlake_cas::client::las_evidence;

use super::cas::CasConnection;

/// Attest to the CAS and print the certificate expiry and the released configuration.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cas: CasConnection,
    /// The policy name.
    #[arg(long, value_name = "NAME")]
    policy: String,
    /// The service in the policy.
    #[arg(long, value_name = "SERVICE")]
    service: String,
    /// The job file this workload would run (its SHA-256 is bound and checked).
    #[arg(long, value_name = "FILE")]
    job: Option<PathBuf>,
    /// The LAS socket (simulation mode).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LAS_SOCKET)]
    las_socket: PathBuf,
}

/// Runs `cipherlake attest`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let job = match &args.job {
        Some(file) => Some(job_hash(
            &std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )),
        None => None,
    };
    let socket = args.las_socket.clone();
    let attested = args
        .cas
        .client()?
        .attest(&args.policy, &args.service, job, |report_data| async move {
            las_evidence(&socket, report_data).await
        })
        .await?;
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
