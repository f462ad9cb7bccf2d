//! `cipherlake cluster up|down`: a local cluster for development and demos. `up` starts a LAS,
//! a CAS and N attested workers on loopback as background processes (their logs, state and
//! process list in the workdir), applies a development policy, and prints how to submit jobs;
//! `down` stops them.

mod processes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cipherlake_attest::las::{init_key, load_key};
use cipherlake_cas::binding::job_hash;
use cipherlake_cas::client::{CasClient, fingerprint_of_pem};

use super::demo::create_private_dir;
use super::generated_policy;
use processes::{Launched, Processes};

/// The policy `cluster up` applies.
pub const POLICY: &str = "local-cluster";
const TEMPLATE: &str = include_str!("cluster/policy.yaml");

/// Start or stop a local cluster (CAS, LAS and attested workers on loopback).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Start a LAS, a CAS and N attested workers on loopback in the background, apply the
    /// development policy `local-cluster` (services ingest, driver, worker; the user custodian,
    /// key custodian.key; KMS keys data-key and results-key), and print how to submit jobs.
    Up(UpArgs),
    /// Stop the cluster started in the workdir (workers first, then the CAS and the LAS).
    Down(DownArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Number of workers.
    #[arg(long, value_name = "N", default_value_t = 2)]
    workers: usize,
    /// Working directory: logs, CAS state, LAS key, owner key, policy, process list.
    #[arg(long, value_name = "DIR", default_value = "cipherlake-cluster")]
    workdir: PathBuf,
    /// A job the driver service may run (its SHA-256 goes into the policy); repeatable.
    /// Running `up` again on a running cluster is refused: `down` first.
    #[arg(long = "job", value_name = "FILE")]
    jobs: Vec<PathBuf>,
    /// Memory limit of each worker in MiB (beyond it they spill, encrypted).
    #[arg(long, value_name = "MIB")]
    memory_limit: Option<usize>,
}

#[derive(clap::Args)]
struct DownArgs {
    /// The working directory given to `cluster up`.
    #[arg(long, value_name = "DIR", default_value = "cipherlake-cluster")]
    workdir: PathBuf,
}

/// Runs `cipherlake cluster`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Up(args) => up(args).await,
        Command::Down(args) => down(&args.workdir),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    let mut job_hashes = Vec::new();
    for job in &args.jobs {
        let bytes =
            std::fs::read(job).with_context(|| format!("reading the job {}", job.display()))?;
        job_hashes.push(format!("sha256:{}", hex::encode(job_hash(&bytes))));
    }
    create_private_dir(&args.workdir)?;
    let workdir = args
        .workdir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.workdir.display()))?;
    if Processes::load(&workdir)?.is_some_and(|p| p.any_alive(&workdir)) {
        anyhow::bail!(
            "a cluster is already running in {}; stop it with `cipherlake cluster down --workdir {}`",
            workdir.display(),
            workdir.display()
        );
    }
    create_private_dir(&workdir.join("logs"))?;
    let mut launched = Launched::new(&workdir);
    match start(&args, &workdir, &job_hashes, &mut launched).await {
        Ok(summary) => {
            launched.save()?;
            print!("{summary}");
            Ok(())
        }
        Err(e) => {
            launched.stop_all();
            Err(e)
        }
    }
}

/// Starts everything; returns what to print.
async fn start(
    args: &UpArgs,
    workdir: &Path,
    job_hashes: &[String],
    launched: &mut Launched,
) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let key_file = workdir.join("las/platform.key");
    if !key_file.exists() {
        create_private_dir(&workdir.join("las"))?;
        init_key(&key_file)?;
    }
    let platform = load_key(&key_file)?.public_key();
    let socket = workdir.join("las.sock");
    let _ = std::fs::remove_file(&socket);
    launched.spawn(
        "las",
        &exe,
        &[
            "las",
            "--platform-key",
            path(&key_file),
            "--socket",
            path(&socket),
        ],
    )?;
    processes::wait_until("the LAS", Duration::from_secs(20), || socket.exists())?;

    let cas_dir = workdir.join("cas");
    let cert = cas_dir.join("tls-cert.pem");
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    launched.spawn(
        "cas",
        &exe,
        &[
            "cas",
            "serve",
            "--data-dir",
            path(&cas_dir),
            "--listen",
            &listen,
            "--las-socket",
            path(&socket),
        ],
    )?;
    processes::wait_until("the CAS", Duration::from_secs(30), || {
        cert.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let url = format!("https://{listen}");
    let pem =
        std::fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?;
    let cas = CasClient::new(&url, fingerprint_of_pem(&pem)?)?;
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(cas_dir.join("operator.token"))
            .context("reading the operator token")?,
    );
    cas.register_platform(token.trim(), &platform.to_string())
        .await?;

    let measurement = generated_policy::measurement(&socket, platform).await?;
    // The driver runs the jobs given to `cluster up --job`; without jobs there is no driver.
    let driver = match job_hashes {
        [] => String::new(),
        hashes => format!(
            "  driver:                    # runs the jobs given to `cluster up --job`\n    operation: run\n    measurements: [sha384:{measurement}]\n    jobs: [{}]\n    kms_keys: {{ data-key: [unwrap], results-key: [wrap] }}\n    console: full            # a development cluster: jobs print their results\n",
            hashes.join(", ")
        ),
    };
    let custodian = generated_policy::key_file(&workdir.join("custodian.key"))?
        .public_key()
        .to_string();
    let applied = generated_policy::apply(&cas, workdir, POLICY, |owner, predecessor| {
        TEMPLATE
            .replace("@PREDECESSOR@", predecessor)
            .replace("@OWNER@", owner)
            .replace("@MEASUREMENT@", &measurement)
            .replace("@DRIVER@", &driver)
            .replace("@CUSTODIAN@", &custodian)
    })
    .await?;

    let mut urls = Vec::new();
    for i in 1..=args.workers {
        let mut worker_args = vec![
            "worker".to_owned(),
            "--cas".to_owned(),
            url.clone(),
            "--cas-cert".to_owned(),
            path(&cert).to_owned(),
            "--policy".to_owned(),
            POLICY.to_owned(),
            "--las-socket".to_owned(),
            path(&socket).to_owned(),
        ];
        if let Some(mib) = args.memory_limit {
            worker_args.extend(["--memory-limit".to_owned(), mib.to_string()]);
        }
        let name = format!("worker-{i}");
        let out = launched.spawn(
            &name,
            &exe,
            &worker_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        let worker_url = launched.wait_for_line(&name, &out, "worker ", Duration::from_secs(60))?;
        let worker_url = worker_url
            .trim_end_matches(" serving")
            .trim_end_matches('/')
            .to_owned();
        launched.set_url(&name, &worker_url);
        urls.push(worker_url);
    }

    let env_file = workdir.join("cluster.env");
    let env = format!(
        "export CIPHERLAKE_CAS={url}\nexport CIPHERLAKE_CAS_CERT={cert}\nexport CIPHERLAKE_LAS_SOCKET={socket}\nexport CIPHERLAKE_POLICY={POLICY}\nexport CIPHERLAKE_SERVICE=driver\n",
        cert = cert.display(),
        socket = socket.display()
    );
    super::demo::write_atomically(&env_file, env.as_bytes(), 0o644)?;
    Ok(format!(
        "cluster up in {dir}\n  CAS     {url} (state in cas/, log in logs/cas.log)\n  LAS     {socket}\n  policy  {POLICY} version {hash} ({state}; owner key owner.key)\n{workers}\
         Submit a job (the driver attests as {POLICY}/driver; the job must be one given with --job):\n  \
         source {env}\n  cipherlake run --workers-from-cas JOB.sql\n\
         Encrypt data for it (attested as {POLICY}/ingest, an encrypt service: wraps data-key):\n  \
         cipherlake datagen taxi --rows 5M --out DIR --encrypt --footer-key data-key --kms cas:$CIPHERLAKE_CAS --service ingest\n\
         Read results as the custodian (a user: signs with custodian.key):\n  \
         cipherlake parquet decrypt --kms cas:$CIPHERLAKE_CAS --user custodian --key {dir}/custodian.key --in RESULTS --out PLAIN\n\
         Stop it:\n  cipherlake cluster down --workdir {dir}\n",
        dir = workdir.display(),
        socket = socket.display(),
        hash = applied.hash,
        state = if applied.reused { "kept" } else { "applied" },
        workers = urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!(
                "  worker  {u} (attested as {POLICY}/worker, log in logs/worker-{}.log)\n",
                i + 1
            ))
            .collect::<String>(),
        env = env_file.display(),
    ))
}

fn down(workdir: &Path) -> anyhow::Result<()> {
    let workdir = &workdir
        .canonicalize()
        .with_context(|| format!("no cluster in {}", workdir.display()))?;
    let Some(processes) = Processes::load(workdir)? else {
        anyhow::bail!("no cluster in {} (no cluster.json)", workdir.display());
    };
    let stopped = processes.stop(workdir)?;
    println!(
        "cluster in {} stopped ({stopped} processes)",
        workdir.display()
    );
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}
