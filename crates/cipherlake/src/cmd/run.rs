//! `cipherlake run`: a confidential job. The process attests with the job's hash bound into its
//! evidence, receives its certificate, configuration and KMS rights from the CAS, and only then
//! runs the SQL script, printing only what the policy's `console` setting allows.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cipherlake_cas::binding::job_hash;
use cipherlake_cas::client::CasClient;
use cipherlake_cluster::driver::{DriverOptions, WorkerList, distributed_session, local_session};
use cipherlake_cluster::registry;
use cipherlake_cluster::worker::worker_url;
use cipherlake_engine::job::{Console, Redactor, substitute};
use cipherlake_engine::output::OutputFormat;
use cipherlake_engine::script::run_script;
use cipherlake_engine::session::SessionOptions;
use cipherlake_engine::sqldb::{
    CasKeyStore, DatabasePolicy, DatabaseSpec, KeyStores, RequiredColumn,
    register_database_with_policy,
};
use cipherlake_engine::stores::StoreConfig;
use cipherlake_policy::Operation;
use datafusion::prelude::SessionContext;

use super::cas::CasConnection;
use super::workload::{AttestedWorkload, Performed, WorkloadArgs};

/// The `run` operation for one job file; constructed only here, where the job then runs.
pub struct JobRun {
    hash: [u8; 32],
}

impl Performed for JobRun {
    fn operation(&self) -> Operation {
        Operation::Run
    }

    fn job_hash(&self) -> Option<[u8; 32]> {
        Some(self.hash)
    }
}

/// Run a SQL job as an attested workload.
///
/// `${NAME}` in the job is replaced by the environment variable NAME of the configuration the
/// CAS releases (an undefined name stops the job before it runs). Encrypted Parquet is read and
/// written through the CAS KMS with this workload's certificate. Azure (az://, abfss://) and S3
/// (s3://) tables use the released AZURE_* and AWS_* variables (e.g. AZURE_STORAGE_ACCOUNT_NAME
/// and a SAS token in AZURE_STORAGE_SAS_TOKEN). A released DATABASE_NAME=URL (postgres://… or
/// sqlite:PATH) makes the database's tables `name.table`, Always Encrypted columns decrypted
/// inside the job with column master keys held by the CAS. What the job prints is the policy's
/// `console` setting for the service: none, row counts, or full results.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cas: CasConnection,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    distribution: DistributionArgs,
    /// Output format for result rows (when the policy lets the job print them).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// The job: a SQL script.
    job: PathBuf,
}

/// Where a job's stages run: in this process, or on attested workers.
#[derive(clap::Args, Clone, Debug)]
pub struct DistributionArgs {
    /// Run the job's stages on these attested workers (HOST:PORT, comma-separated); they must
    /// be workers of the job's policy (their certificates are checked on every connection).
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        conflicts_with = "workers_from_cas"
    )]
    pub workers: Vec<String>,
    /// Run the job's stages on the live workers the CAS lists for the job's policy (the list
    /// is followed while the job runs).
    #[arg(long)]
    pub workers_from_cas: bool,
    /// The service of the policy the workers attest as.
    #[arg(long, value_name = "SERVICE", default_value = super::worker::DEFAULT_WORKER_SERVICE)]
    pub worker_service: String,
    /// Parquet bytes per scan task (the demo sizes it to its data); the planner's default, or
    /// the job's `SET distributed.file_scan_config_bytes_per_partition`, when `None`.
    #[arg(skip)]
    pub bytes_per_task: Option<usize>,
}

impl DistributionArgs {
    /// Everything in this process.
    pub fn local() -> Self {
        DistributionArgs {
            workers: Vec::new(),
            workers_from_cas: false,
            worker_service: super::worker::DEFAULT_WORKER_SERVICE.to_owned(),
            bytes_per_task: None,
        }
    }

    /// On the live workers the CAS lists, `bytes_per_task` Parquet bytes per scan task.
    pub fn from_cas(bytes_per_task: Option<usize>) -> Self {
        DistributionArgs {
            workers_from_cas: true,
            bytes_per_task,
            ..Self::local()
        }
    }

    /// The session a job of `attested` runs in, and the task following the CAS's worker
    /// list (aborted when dropped).
    async fn session(
        &self,
        attested: &AttestedWorkload,
        options: &SessionOptions,
    ) -> anyhow::Result<(SessionContext, Option<AbortOnDrop>)> {
        if self.workers.is_empty() && !self.workers_from_cas {
            return Ok((local_session(options), None));
        }
        let workers = WorkerList::default();
        let follower = if self.workers_from_cas {
            let cas = attested.cas().clone();
            let found = registry::refresh(&cas, &self.worker_service, &workers).await?;
            if found == 0 {
                anyhow::bail!(
                    "the CAS lists no live {:?} workers of policy {:?}; start some with `cipherlake worker`",
                    self.worker_service,
                    attested.policy()
                );
            }
            Some(AbortOnDrop(registry::follow_workers(
                cas,
                self.worker_service.clone(),
                workers.clone(),
            )))
        } else {
            workers.set(
                self.workers
                    .iter()
                    .map(|w| parse_worker(w))
                    .collect::<anyhow::Result<_>>()?,
            );
            None
        };
        tracing::info!(workers = ?workers, "distributing the job");
        let driver = DriverOptions {
            identity: attested.tls_identity()?,
            workers,
            worker_services: vec![self.worker_service.clone()],
            bytes_per_partition: self.bytes_per_task,
        };
        Ok((distributed_session(options, &driver)?, follower))
    }
}

/// A background task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A worker address: `HOST:PORT` or `https://HOST:PORT`.
fn parse_worker(text: &str) -> anyhow::Result<url::Url> {
    let bad = || anyhow::anyhow!("--workers: {text:?} is not HOST:PORT");
    let address = text.trim().strip_prefix("https://").unwrap_or(text.trim());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains('/') {
        return Err(bad());
    }
    Ok(worker_url(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
    )?)
}

/// Released environment variables `DATABASE_NAME=URL` register the SQL database at URL as the
/// schema `name` (its tables as `name.table`), with column master keys held by the CAS.
const DATABASE_PREFIX: &str = "DATABASE_";

/// What the policy lets a job trust of a database's Always Encrypted catalog: its `databases:`
/// entry, or nothing (no key path trusted) for a database the policy does not list.
fn database_policy(pin: Option<&cipherlake_policy::DatabasePin>) -> DatabasePolicy {
    match pin {
        None => DatabasePolicy::default(),
        Some(pin) => DatabasePolicy::pinned(
            pin.trusted_key_paths.clone(),
            pin.columns
                .iter()
                .map(|c| RequiredColumn {
                    table: c.table.clone(),
                    column: c.column.clone(),
                    cek: c.cek.clone(),
                })
                .collect(),
            pin.local_keys,
        ),
    }
}

/// What a job run did, for reports.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Who ran it: `policy/service (operation)`.
    pub principal: String,
    /// `sha256:HEX` of the job file.
    pub job_hash: String,
    /// The policy version that admitted the job.
    pub policy_hash: String,
    /// Time from the nonce request to the opened configuration (attestation and release).
    pub attestation: Duration,
    /// Time running the statements.
    pub execution: Duration,
    /// The console setting applied.
    pub console: Console,
    /// Number of statements run.
    pub statements: usize,
}

/// Attests as `workload` with `job` bound, then runs it; the console output goes to `out`.
pub async fn run_job(
    cas: &CasClient,
    workload: &WorkloadArgs,
    distribution: &DistributionArgs,
    job: &[u8],
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<JobReport> {
    let script = std::str::from_utf8(job).context("the job file is not UTF-8 text")?;
    let run = JobRun {
        hash: job_hash(job),
    };
    let hash = run.hash;
    let started = Instant::now();
    let attested = workload.attest(cas, &run).await?;
    let attestation = started.elapsed();
    let env = &attested.config().env;
    let console = Console::from_setting(&attested.config().console);
    let redactor = Redactor::new(env);
    let script = substitute(script, env)?;
    let stores = StoreConfig::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let options = SessionOptions {
        kms: Some(attested.kms()),
        stores,
        ..SessionOptions::default()
    };
    let (ctx, _follower) = distribution.session(&attested, &options).await?;
    let key_stores = KeyStores::default().with(Arc::new(CasKeyStore::new(attested.cas().clone())));
    for (variable, url) in env {
        let Some(name) = variable.strip_prefix(DATABASE_PREFIX) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let spec: DatabaseSpec = format!("{name}={}", url.as_str())
            .parse()
            .map_err(|e| anyhow::anyhow!("{variable}: {}", redactor.redact(&format!("{e}"))))?;
        let pin = database_policy(attested.config().databases.get(&name));
        register_database_with_policy(&ctx, &spec, &key_stores, &pin)
            .await
            .map_err(|e| anyhow::anyhow!("{variable}: {}", redactor.redact(&format!("{e}"))))?;
    }
    let started = Instant::now();
    let mut statements = 0;
    run_script(&ctx, &script, &mut |output| {
        statements += 1;
        console.render(
            output.index,
            &output.batches,
            output.has_columns,
            format,
            out,
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("{}", redactor.redact(&e.to_string())))?;
    Ok(JobReport {
        principal: format!(
            "{}/{} ({})",
            attested.policy(),
            attested.service(),
            attested.operation()
        ),
        job_hash: format!("sha256:{}", hex::encode(hash)),
        policy_hash: attested.policy_hash().to_string(),
        attestation,
        execution: started.elapsed(),
        console,
        statements,
    })
}

/// Runs `cipherlake run`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let job = std::fs::read(&args.job)
        .with_context(|| format!("reading the job {}", args.job.display()))?;
    let format: OutputFormat = args.format.parse().map_err(anyhow::Error::msg)?;
    let cas = args.cas.client()?;
    let stdout = std::io::stdout();
    let report = run_job(
        &cas,
        &args.workload,
        &args.distribution,
        &job,
        format,
        &mut stdout.lock(),
    )
    .await?;
    eprintln!(
        "job {} ran as an attested workload, {} (policy version {}): attestation and release {:.0} ms, {} statement(s) in {:.0} ms, console: {}",
        report.job_hash,
        report.principal,
        report.policy_hash,
        report.attestation.as_secs_f64() * 1e3,
        report.statements,
        report.execution.as_secs_f64() * 1e3,
        report.console.as_str()
    );
    Ok(())
}
