//! `cipherlake demo`: the mission end to end on one machine, in one process tree. A LAS and a
//! CAS start, the custodian applies a policy, NYC taxi data is generated and encrypted with
//! CAS-held keys, the analytics job runs as an attested driver and writes encrypted results,
//! the custodian reads them back, and the audit log is verified. Everything lives in the
//! workdir; a second run reuses the CAS state, the policy and the data.

mod policy;
mod report;
mod services;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cipherlake_cas::binding::job_hash;
use cipherlake_engine::datagen::{TaxiEncryption, TaxiOptions, generate_taxi};
use cipherlake_engine::encryption::{EncryptionSpec, parse_column_keys};
use cipherlake_engine::output::OutputFormat;

use super::count::parse_count;
use super::encrypt::EncryptKmsArgs;
use super::run::{DistributionArgs, run_job};
use super::worker::{AttestedWorker, ServeArgs};
use super::workload::{EvidenceArgs, KmsArgs, UserArgs, WorkloadArgs};
use cipherlake_cas::client::Credential;
use report::{Phase, Report};
use services::Services;

/// The analytics job the driver runs.
const JOB: &str = include_str!("taxi-job.sql");

/// The columns of the trip files encrypted under each column key; the footer (and with it the
/// schema and statistics) is encrypted under `taxi-footer`.
const TAXI_COLUMN_KEYS: &str = "taxi-money:fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge,Airport_fee;taxi-location:PULocationID,DOLocationID";

/// Run the whole confidential pipeline on this machine and explain what happened.
#[derive(clap::Args)]
pub struct Args {
    /// Number of taxi trips to generate (accepts 5M, 100M, 1.5B).
    #[arg(long, value_parser = parse_count, default_value = "5M")]
    rows: u64,
    /// Working directory: CAS state, LAS key, owner key, policy, data and results.
    #[arg(long, value_name = "DIR", default_value = "cipherlake-demo")]
    workdir: PathBuf,
    /// Worker threads [default: number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Run the job's stages on this many attested workers (started in this process on
    /// loopback, each attesting as the policy's worker service and serving over mTLS); 0 runs
    /// the job in the driver alone.
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
}

/// Runs `cipherlake demo`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("creating {}", args.workdir.display()))?;
    let workdir = args
        .workdir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.workdir.display()))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut report = Report::new(&workdir);

    let started = Instant::now();
    let services = Services::start(&workdir).await?;
    report.phase(Phase::new(
        "start the LAS and the CAS",
        started.elapsed(),
        format!(
            "CAS {} (state in cas/), LAS {}",
            services.url,
            services.las_socket.display()
        ),
    ));
    let result = pipeline(
        &services,
        &workdir,
        &Scale {
            rows: args.rows,
            threads,
            workers: args.workers,
        },
        &mut report,
    )
    .await;
    services.stop().await;
    result?;
    report.print();
    Ok(())
}

/// How big the demo runs.
struct Scale {
    rows: u64,
    threads: usize,
    workers: usize,
}

async fn pipeline(
    services: &Services,
    workdir: &Path,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cas = &services.cas;
    report.audit_since = services.audit_as_operator().await?.head.count;
    let (taxi, results) = (workdir.join("data/taxi"), workdir.join("results"));
    let zones = taxi.join("zones.csv");

    // The custodian: owner key and policy.
    let started = Instant::now();
    let measurement = services.measurement().await?;
    let job = hex::encode(job_hash(JOB.as_bytes()));
    write_atomically(&workdir.join("taxi-job.sql"), JOB.as_bytes(), 0o644)?;
    let custodian_key = workdir.join("custodian.key");
    let custodian = super::generated_policy::key_file(&custodian_key)?
        .public_key()
        .to_string();
    let applied = policy::apply(
        cas,
        workdir,
        &policy::Inputs {
            measurement: &measurement,
            job: &job,
            taxi: &taxi,
            zones: &zones,
            results: &results,
            custodian: &custodian,
        },
    )
    .await?;
    report.measurement = measurement;
    report.job_hash = format!("sha256:{job}");
    report.phase(Phase::new(
        "custodian: owner key and policy",
        started.elapsed(),
        format!(
            "policy {} version {} ({}), owner {}",
            policy::NAME,
            applied.hash,
            if applied.reused {
                "unchanged, kept"
            } else {
                "applied"
            },
            applied.owner
        ),
    ));

    // The custodian's ingest tool: generate the trips encrypted with CAS-held keys.
    let started = Instant::now();
    let detail = ingest(services, workdir, &taxi, scale.rows, scale.threads).await?;
    report.phase(Phase::new(
        "custodian: generate and encrypt taxi trips",
        started.elapsed(),
        detail,
    ));

    // Attested workers, when the job is distributed.
    let started = Instant::now();
    let workers = start_workers(services, scale.workers).await?;
    if !workers.is_empty() {
        report.phase(Phase::new(
            "operator: start attested workers",
            started.elapsed(),
            format!(
                "{} workers on loopback ({}), each attested as {}/worker, mTLS with CAS-issued certificates, registered with the CAS",
                workers.len(),
                workers
                    .iter()
                    .map(|w| w.url.as_str().trim_end_matches('/'))
                    .collect::<Vec<_>>()
                    .join(", "),
                policy::NAME
            ),
        ));
    }

    // The engineer's job, as an attested driver.
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let started = Instant::now();
    let mut console = Vec::new();
    let distribution = if workers.is_empty() {
        DistributionArgs::local()
    } else {
        // Every worker gets scan tasks, however small the data (the planner's default keeps
        // tables under 16 MiB on one task).
        let bytes = parquet_bytes(&taxi)?;
        DistributionArgs::from_cas(Some((bytes / (2 * workers.len() as u64)).max(1) as usize))
    };
    let job_report = run_job(
        cas,
        &workload(services, "driver"),
        &distribution,
        JOB.as_bytes(),
        OutputFormat::Table,
        &mut console,
    )
    .await
    .context("the analytics job");
    let mut stopped = Ok(());
    for worker in workers {
        let result = worker.stop().await;
        stopped = stopped.and(result);
    }
    let job_report = job_report?;
    stopped?;
    report.attestation = job_report.attestation;
    report.console = String::from_utf8_lossy(&console).into_owned();
    report.phase(Phase::new(
        "engineer: attested analytics job",
        started.elapsed(),
        format!(
            "{} statements in {:.0} ms {} after {:.0} ms of attestation and key release; console: {}",
            job_report.statements,
            job_report.execution.as_secs_f64() * 1e3,
            match scale.workers {
                0 => "in the driver".to_owned(),
                n => format!("on {n} workers"),
            },
            job_report.attestation.as_secs_f64() * 1e3,
            job_report.console.as_str()
        ),
    ));

    // The custodian, a person outside every TEE, reads the encrypted results as a user.
    let started = Instant::now();
    let custodian = Credential::user(
        policy::NAME,
        policy::CUSTODIAN,
        super::workload::load_key(&custodian_key)?,
    );
    let as_custodian = cas.with_credential(custodian);
    report.results = report::read_results(&as_custodian, &results).await?;
    report.phase(Phase::new(
        "custodian: read the encrypted results",
        started.elapsed(),
        format!(
            "as user {}/{} (signed requests, no attestation; grant: unwrap results-key)",
            policy::NAME,
            policy::CUSTODIAN
        ),
    ));

    // The audit log, read by the custodian (read_audit).
    let started = Instant::now();
    let entries = report.audit(&as_custodian, &services.audit_key).await?;
    report.phase(Phase::new(
        "verify the audit log",
        started.elapsed(),
        format!(
            "{entries} entries, hash chain and signatures verified; exported to audit-log.json"
        ),
    ));
    Ok(())
}

/// The workload identity of `service` of the demo policy, attesting through the demo's LAS.
fn workload(services: &Services, service: &str) -> WorkloadArgs {
    WorkloadArgs {
        policy: Some(policy::NAME.to_string()),
        service: Some(service.to_string()),
        evidence: EvidenceArgs::las(&services.las_socket),
    }
}

/// Total size of the Parquet files in `dir`.
fn parquet_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "parquet") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Starts `count` attested workers in this process, on loopback.
async fn start_workers(services: &Services, count: usize) -> anyhow::Result<Vec<AttestedWorker>> {
    let serve = ServeArgs {
        listen: ([127, 0, 0, 1], 0).into(),
        advertise: None,
        clients: Vec::new(),
        memory_limit: None,
        spill_dir: None,
        spill_limit: None,
    };
    let mut workers = Vec::with_capacity(count);
    for _ in 0..count {
        let started =
            AttestedWorker::start(&services.cas, &workload(services, "worker"), &serve).await;
        match started {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                for worker in workers {
                    let _ = worker.stop().await;
                }
                return Err(e.context("starting a worker"));
            }
        }
    }
    Ok(workers)
}

/// Generates the encrypted trips unless the same number of rows was generated for this CAS.
async fn ingest(
    services: &Services,
    workdir: &Path,
    taxi: &Path,
    rows: u64,
    threads: usize,
) -> anyhow::Result<String> {
    let marker = workdir.join("data/taxi.generated");
    let stamp = format!("rows={rows} cas={}\n", hex::encode(services.audit_key));
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == stamp) {
        return Ok(format!("{rows} trips already in data/taxi, kept"));
    }
    let kms = EncryptKmsArgs {
        kms: KmsArgs {
            kms: Some(format!("cas:{}", services.url)),
            cas_cert: Some(workdir.join("cas/tls-cert.pem")),
            user: UserArgs {
                policy: Some(policy::NAME.to_string()),
                ..UserArgs::default()
            },
        },
        service: Some("ingest".to_string()),
        evidence: EvidenceArgs::las(&services.las_socket),
    }
    .require("ingest")
    .await?;
    let mut spec = EncryptionSpec::new("taxi-footer".to_string());
    spec.column_keys = parse_column_keys(TAXI_COLUMN_KEYS)?;
    let options = TaxiOptions {
        rows,
        files: None,
        seed: 42,
        threads,
        overwrite: true,
        encryption: Some(TaxiEncryption { kms, spec }),
    };
    let out = taxi.to_path_buf();
    let generated = tokio::task::spawn_blocking(move || generate_taxi(&out, &options, &|_| {}))
        .await
        .context("the generator thread failed")??;
    write_atomically(&marker, stamp.as_bytes(), 0o644)?;
    let seconds = generated.elapsed.as_secs_f64().max(1e-9);
    Ok(format!(
        "{} trips in {} file(s), {:.1} MB, {:.2} M rows/s; footer key taxi-footer, column keys taxi-money and taxi-location (attested as {}/ingest)",
        generated.rows,
        generated.files.len(),
        generated.parquet_bytes as f64 / 1e6,
        generated.rows as f64 / seconds / 1e6,
        policy::NAME
    ))
}

/// Creates `dir` (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

impl Phase {
    fn new(name: &'static str, elapsed: Duration, detail: String) -> Self {
        Phase {
            name,
            elapsed,
            detail,
        }
    }
}
