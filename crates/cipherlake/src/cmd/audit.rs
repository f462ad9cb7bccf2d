//! `cipherlake audit show|verify`: the CAS audit log, from a CAS or an exported file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cipherlake_cas::audit::{Export, Head, verify_log, verify_since};
use cipherlake_cas::client::Credential;

use super::cas::CasConnection;
use super::workload::load_key;

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
    /// public key; detects edited, removed, reordered and truncated entries. With --since, also
    /// detects a log truncated or rolled back in the CAS's database since a head saved earlier
    /// (--save-head).
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
    /// Read the log as the operator, with the token in this file (DATA_DIR/operator.token).
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    token_file: Option<PathBuf>,
    /// Read the log as an owner of --policy (or, with --user, as that user, who needs
    /// read_audit), signing with this key file.
    #[arg(long, value_name = "FILE", requires = "policy")]
    key: Option<PathBuf>,
    /// The policy whose owner or user reads the log.
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,
    /// The user of --policy reading the log (default: an owner).
    #[arg(long, value_name = "NAME", requires = "key")]
    user: Option<String>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// The trusted CAS audit public key: 64 hex digits, or a file holding them (the CAS writes
    /// DATA_DIR/audit-public-key).
    #[arg(long, value_name = "HEX|FILE")]
    audit_key: String,
    /// A signed head saved earlier (--save-head): the log must still extend it.
    #[arg(long, value_name = "HEAD_FILE")]
    since: Option<PathBuf>,
    /// Save the verified log's signed head to this file, for a later --since.
    #[arg(long, value_name = "HEAD_FILE")]
    save_head: Option<PathBuf>,
}

async fn load(source: &Source) -> anyhow::Result<Export> {
    let export = match (&source.file, &source.url, &source.cert) {
        (Some(file), _, _) => serde_json::from_slice(
            &std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("{} is not an exported audit log", file.display()))?,
        (None, Some(url), Some(cert)) => {
            let cas = CasConnection {
                url: url.clone(),
                cert: cert.clone(),
            }
            .client()?;
            match (&source.token_file, &source.key, &source.policy) {
                (Some(file), _, _) => {
                    let token = zeroize::Zeroizing::new(
                        std::fs::read_to_string(file)
                            .with_context(|| format!("reading {}", file.display()))?,
                    );
                    cas.audit_as_operator(token.trim()).await?
                }
                (None, Some(key), Some(policy)) => {
                    let key = load_key(key)?;
                    let credential = match &source.user {
                        Some(user) => Credential::user(policy, user, key),
                        None => Credential::owner(policy, key),
                    };
                    cas.with_credential(credential).audit().await?
                }
                _ => bail!(
                    "reading the log from the CAS needs --token-file FILE (operator), or --policy NAME --key FILE [--user NAME] (an owner, or a user with read_audit)"
                ),
            }
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
            let count = match &args.since {
                Some(file) => {
                    let saved: Head = serde_json::from_slice(
                        &std::fs::read(file)
                            .with_context(|| format!("reading {}", file.display()))?,
                    )
                    .with_context(|| format!("{} is not a saved audit head", file.display()))?;
                    verify_since(&export, &saved, &key)
                        .with_context(|| format!("against the head saved in {}", file.display()))?
                }
                None => verify_log(&export, &key)?,
            };
            if let Some(file) = &args.save_head {
                super::demo::write_atomically(
                    file,
                    &serde_json::to_vec_pretty(&export.head)?,
                    0o644,
                )?;
            }
            println!(
                "audit log verified: {count} entries, head {} signed at {} (unix){}",
                export.head.hash,
                export.head.time,
                if args.since.is_some() {
                    ", extends the saved head"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
