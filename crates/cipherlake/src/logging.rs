//! Logs go to stderr through `tracing`; `-v` raises the level, `RUST_LOG` overrides it (except
//! for confidential commands, see [`init`]);
//! `--log-format json` writes one JSON object per line (fields, not interpolated text).
//! Log lines carry names, routes, statuses and decisions, never secrets, tokens, keys, CSRs or
//! evidence bytes.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// cipherlake's own crates: the only ones whose logs a confidential command raises.
const OWN_CRATES: [&str; 7] = [
    "cipherlake",
    "cipherlake_attest",
    "cipherlake_cas",
    "cipherlake_cluster",
    "cipherlake_crypto",
    "cipherlake_engine",
    "cipherlake_policy",
];

/// Installs the global subscriber. For a `confidential` command (one that runs a job on
/// protected data) `-v` raises only cipherlake's own logs and `RUST_LOG` is ignored: DataFusion
/// and its SQL parser log plans, with their literals (secrets, data values), at debug level.
pub fn init(verbose: u8, format: LogFormat, confidential: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = if confidential {
        let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}={level}")).collect();
        EnvFilter::new(format!("warn,{}", own.join(",")))
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
