//! `cipherlake audit show|verify`: the CAS audit log, from a CAS or an exported file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cipherlake_cas::audit::{Export, verify_log};

use super::cas::CasConnection;

/// Show or verify the CAS audit log.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the log (one JSON event per line, with its sequence number).
    Show(Source),
    /// Verify the hash chain, every signature and the signed head against the trusted audit
    /// public key; detects edited, removed, reordered and truncated entries.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct Source {
    /// An exported log (JSON, as `GET /v1/audit` returns); otherwise fetched from the CAS.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "cert"])]
    file: Option<PathBuf>,
    /// The CAS URL.
    #[arg(long = "cas", value_name = "URL", requires = "cert")]
    url: Option<String>,
    /// The CAS certificate (PEM) to pin.
    #[arg(long = "cas-cert", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Write the fetched log to this file as well.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// The trusted CAS audit public key: 64 hex digits, or a file holding them (the CAS writes
    /// DATA_DIR/audit-public-key).
    #[arg(long, value_name = "HEX|FILE")]
    audit_key: String,
}

async fn load(source: &Source) -> anyhow::Result<Export> {
    let export = match (&source.file, &source.url, &source.cert) {
        (Some(file), _, _) => serde_json::from_slice(
            &std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("{} is not an exported audit log", file.display()))?,
        (None, Some(url), Some(cert)) => {
            CasConnection {
                url: url.clone(),
                cert: cert.clone(),
            }
            .client()?
            .audit()
            .await?
        }
        _ => bail!("give --file FILE, or --cas URL --cas-cert FILE"),
    };
    if let Some(save) = &source.save {
        std::fs::write(save, serde_json::to_vec_pretty(&export)?)
            .with_context(|| format!("writing {}", save.display()))?;
    }
    Ok(export)
}

fn audit_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let text = match std::fs::read_to_string(text) {
        Ok(contents) => contents,
        Err(_) => text.to_string(),
    };
    let text = text.trim();
    let mut key = [0u8; 32];
    if text.len() != 64 {
        bail!("the audit key must be 64 hex digits");
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .context("the audit key must be 64 hex digits")?;
    }
    Ok(key)
}

/// Runs `cipherlake audit`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Show(source) => {
            let export = load(&source).await?;
            for entry in &export.entries {
                println!("{} {}", entry.seq, entry.body);
            }
            Ok(())
        }
        Command::Verify(args) => {
            let key = audit_key(&args.audit_key)?;
            let export = load(&args.source).await?;
            let count = verify_log(&export, &key)?;
            println!(
                "audit log verified: {count} entries, head {}",
                export.head.hash
            );
            Ok(())
        }
    }
}
