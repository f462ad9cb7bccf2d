//! `cipherlake`: confidential big-data analytics. This binary only parses the command line and
//! wires the crates together; each subcommand lives in `cmd/`.

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

/// Confidential big-data analytics: SQL over Parquet, Delta Lake and SQL databases, with data,
/// keys and code in plaintext only inside attested TEEs.
#[derive(Parser)]
#[command(
    name = "cipherlake",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides, except for
    /// run and demo, which raise only cipherlake's own logs).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Log format on stderr: text, or json (one object per line, for log collectors).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic data sets (NYC taxi trips).
    Datagen(cmd::datagen::Args),
    /// Run SQL over Parquet, CSV and Delta Lake tables.
    Sql(cmd::sql::Args),
    /// Run benchmark suites.
    Bench(cmd::bench::Args),
    /// Verify TEE attestation evidence (SGX, TDX, SEV-SNP, Azure Attestation, sim).
    Evidence(cmd::evidence::Args),
    /// Run the local attestation service (node agent) that signs sim-mode reports.
    Las(cmd::las::Args),
    /// Work with policies offline: owner keys, hashes, validation, signing.
    Policy(cmd::policy::Args),
    /// SQL Server Always Encrypted: keys and encrypted columns in PostgreSQL and SQLite
    /// databases, and single cells (debugging).
    Ae(cmd::ae::Args),
    /// Run the configuration and attestation service (CAS).
    Cas(cmd::cas::Args),
    /// Attest this process to a CAS and print the configuration it receives (debugging).
    Attest(cmd::attest::Args),
    /// Show or verify the CAS's hash-chained, signed audit log.
    Audit(cmd::audit::Args),
    /// Encrypt, decrypt and inspect Parquet files (Parquet modular encryption).
    Parquet(cmd::parquet::Args),
    /// Run a SQL job as an attested workload with configuration and keys from the CAS.
    Run(cmd::run::Args),
    /// Start or stop a local cluster for development: a CAS, a LAS and N attested workers on
    /// loopback.
    Cluster(cmd::cluster::Args),
    /// Serve plan fragments of distributed jobs as an attested worker (mTLS, CAS-issued
    /// certificate and KMS rights).
    Worker(cmd::worker::Args),
    /// Run the whole confidential pipeline on this machine (CAS, LAS, policy, encrypted data,
    /// attested job, encrypted results, audit) and explain what happened.
    Demo(cmd::demo::Args),
    /// Exit 0 when every given file or socket exists: readiness probes in images without a
    /// shell (the LAS socket, a worker's --ready-file).
    Probe(cmd::probe::Args),
}

impl Command {
    /// Whether the command runs a job on protected data, so that third-party logs (which carry
    /// plans and literals) stay quiet.
    fn is_confidential(&self) -> bool {
        matches!(
            self,
            Command::Run(_) | Command::Demo(_) | Command::Worker(_)
        )
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Datagen(args) => cmd::datagen::run(args).await,
        Command::Sql(args) => cmd::sql::run(args).await,
        Command::Bench(args) => cmd::bench::run(args).await,
        Command::Evidence(args) => cmd::evidence::run(args).await,
        Command::Las(args) => cmd::las::run(args).await,
        Command::Policy(args) => cmd::policy::run(args).await,
        Command::Ae(args) => cmd::ae::run(args).await,
        Command::Cas(args) => cmd::cas::run(args).await,
        Command::Attest(args) => cmd::attest::run(args).await,
        Command::Audit(args) => cmd::audit::run(args).await,
        Command::Parquet(args) => cmd::parquet::run(args).await,
        Command::Run(args) => cmd::run::run(args).await,
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Worker(args) => cmd::worker::run(args).await,
        Command::Cluster(args) => cmd::cluster::run(args).await,
        Command::Probe(args) => cmd::probe::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.log_format, cli.command.is_confidential());
    // Bad input must never reach a panic; if a bug does, say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error (a bug in cipherlake){place}: {message}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
