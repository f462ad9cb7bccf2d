//! `cipherlake las`: the local attestation service (node agent) of simulation mode.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_attest::attester::DEFAULT_LAS_SOCKET;
use cipherlake_attest::las::{Las, init_key, load_key};

/// Serve sim reports to local workloads, measuring each caller's executable.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Platform key file, created by `cipherlake las init-key`.
    #[arg(long, value_name = "FILE")]
    platform_key: Option<PathBuf>,
    /// Unix socket to serve on.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LAS_SOCKET)]
    socket: PathBuf,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a new platform key file (mode 0600) and print its public key (hex), which the
    /// CAS and `evidence verify --platform-key` accept.
    InitKey {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
}

/// Runs `cipherlake las`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::InitKey { file }) => {
            let public = init_key(&file)?;
            println!("{public}");
            Ok(())
        }
        None => {
            let key_file = args
                .platform_key
                .context("--platform-key FILE is required to serve (create one with `cipherlake las init-key FILE`)")?;
            let key = load_key(&key_file)?;
            eprintln!(
                "LAS serving on {} with platform key {}",
                args.socket.display(),
                key.public_key()
            );
            Las::serve(key, &args.socket).await?;
            Ok(())
        }
    }
}
