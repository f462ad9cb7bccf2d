//! `cipherlake`: confidential big-data analytics. This binary only parses the command line and
//! wires the crates together; each subcommand lives in `cmd/`.

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

/// Confidential big-data analytics: SQL over Parquet, Delta Lake and SQL databases, with data,
/// keys and code in plaintext only inside attested TEEs.
#[derive(Debug, Parser)]
#[command(
    name = "cipherlake",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate synthetic data sets (NYC taxi trips).
    Datagen(cmd::datagen::Args),
    /// Run SQL over Parquet, CSV and Delta Lake tables.
    Sql(cmd::sql::Args),
    /// Run benchmark suites.
    Bench(cmd::bench::Args),
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Datagen(args) => cmd::datagen::run(args).await,
        Command::Sql(args) => cmd::sql::run(args).await,
        Command::Bench(args) => cmd::bench::run(args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
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
