//! `cipherlake probe`: readiness and liveness checks for container images that hold nothing
//! but this binary (no shell, no `test`): a Kubernetes exec probe runs `cipherlake probe PATH`.

use std::path::PathBuf;

/// Succeed when every PATH exists: the LAS's socket, a worker's --ready-file.
#[derive(clap::Args)]
pub struct Args {
    /// Files or sockets that must exist.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Runs `cipherlake probe`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let missing: Vec<String> = args
        .paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "not ready: no {}",
        missing.join(", no ")
    );
    Ok(())
}
