//! `cipherlake policy`: the custodian's policy tools (keys, checks, hashes, signatures) and
//! their use on a CAS (apply, show).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cipherlake_policy::{OwnerSigningKey, Policy, PolicyError, sign};
use zeroize::Zeroizing;

/// Write, check, hash and sign policies offline, and apply them on a CAS.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Generate an owner key: write the private key (mode 0600) and print the public key to list
    /// under `owners`.
    Keygen(KeygenArgs),
    /// Print a policy's hash (sha256:…): it identifies this version, and the next version names
    /// it as `predecessor`.
    Hash(FileArgs),
    /// Validate a policy and print every problem as FILE:LINE:COLUMN: FIELD PATH: MESSAGE.
    Check(FileArgs),
    /// Sign a policy with an owner key and write the signed envelope (JSON) the CAS accepts.
    Sign(SignArgs),
    /// Sign a policy with an owner key and apply it on a CAS (create or update).
    Apply(super::cas::ApplyArgs),
    /// Show a policy on a CAS as JSON: the public view, or with an owner key the full document
    /// (secret values are never shown: only each secret's kind, source and public part).
    Show(ShowArgs),
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The policy name.
    name: String,
    #[command(flatten)]
    cas: super::cas::CasConnection,
    /// An owner's private key file: read the full document as that owner (or, with --user,
    /// as that user of the policy, who needs read_policy).
    #[arg(long, value_name = "OWNER_KEY")]
    key: Option<PathBuf>,
    /// Read as this user of the policy (signs with --key).
    #[arg(long, value_name = "NAME", requires = "key")]
    user: Option<String>,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// Where to write the private key; an existing file is never overwritten.
    #[arg(long, value_name = "FILE", default_value = "owner.key")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct FileArgs {
    /// The policy's YAML file.
    file: PathBuf,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The policy's YAML file.
    file: PathBuf,
    /// The owner's private key file (as written by `cipherlake policy keygen`).
    #[arg(long, value_name = "OWNER_KEY")]
    key: PathBuf,
    /// Where to write the signed envelope (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `cipherlake policy`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Keygen(args) => keygen(&args),
        Command::Hash(args) => {
            let policy = load(&args.file)?;
            println!("{}", policy.hash());
            Ok(())
        }
        Command::Check(args) => {
            let policy = load(&args.file)?;
            println!(
                "{}: policy {:?} is valid, hash {}",
                args.file.display(),
                policy.name(),
                policy.hash()
            );
            Ok(())
        }
        Command::Sign(args) => sign_file(&args),
        Command::Apply(args) => super::cas::apply(args).await,
        Command::Show(args) => show(&args).await,
    }
}

async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let client = args.cas.client()?;
    let json = match &args.key {
        None => serde_json::to_string_pretty(&client.policy(&args.name).await?)?,
        Some(path) => {
            let key = OwnerSigningKey::from_file_text(&read_text(path)?)
                .with_context(|| format!("reading owner key {}", path.display()))?;
            let document = match &args.user {
                Some(user) => {
                    let credential =
                        cipherlake_cas::client::Credential::user(&args.name, user, key);
                    client
                        .with_credential(credential)
                        .policy_document_signed(&args.name)
                        .await?
                }
                None => client.policy_document(&args.name, &key).await?,
            };
            serde_json::to_string_pretty(&document)?
        }
    };
    println!("{json}");
    Ok(())
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = OwnerSigningKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&args.out)
        .with_context(|| format!("creating {} (it must not exist yet)", args.out.display()))?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("private key written to {}", args.out.display());
    println!("{}", key.public_key());
    Ok(())
}

fn sign_file(args: &SignArgs) -> anyhow::Result<()> {
    let text = read_text(&args.file)?;
    let key_text = read_text(&args.key)?;
    let key = OwnerSigningKey::from_file_text(&key_text)
        .with_context(|| format!("reading owner key {}", args.key.display()))?;
    let signed = sign(&text, &key).map_err(|e| problems(&args.file, e))?;
    let policy = Policy::parse(&text).map_err(|e| problems(&args.file, e))?;
    if !policy.is_owner(&key.public_key()) {
        eprintln!(
            "note: {} is not an owner of this version; the CAS accepts it only as an update signed by an owner of the current version",
            key.public_key()
        );
    }
    let json = Zeroizing::new(serde_json::to_string_pretty(&signed)? + "\n");
    match &args.out {
        Some(out) => std::fs::write(out, json.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?,
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    eprintln!("signed {} by {}", policy.hash(), key.public_key());
    Ok(())
}

/// Reads and validates a policy file, printing every problem on failure.
fn load(path: &Path) -> anyhow::Result<Policy> {
    let text = read_text(path)?;
    Policy::parse(&text).map_err(|e| problems(path, e))
}

/// Prints each problem of a refused policy as `FILE:LINE:COLUMN: PATH: MESSAGE` on standard
/// error and returns a summary error.
fn problems(path: &Path, error: PolicyError) -> anyhow::Error {
    let file = path.display();
    let at = |location: Option<cipherlake_policy::Location>| match location {
        Some(l) => format!("{file}:{}:{}", l.line, l.column),
        None => file.to_string(),
    };
    match error {
        PolicyError::Parse(e) => {
            eprintln!("{}: {}: {}", at(e.location), e.path, e.message);
            anyhow::anyhow!("{file}: the policy does not parse")
        }
        PolicyError::Invalid(invalid) => {
            for issue in &invalid.issues {
                eprintln!("{}: {}: {}", at(issue.location), issue.path, issue.kind);
            }
            let count = invalid.issues.len();
            anyhow::anyhow!(
                "{file}: the policy has {count} problem{}",
                if count == 1 { "" } else { "s" }
            )
        }
        other => anyhow::anyhow!("{file}: {other}"),
    }
}

fn read_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.is_empty() {
        bail!("{}: the file is empty", path.display());
    }
    Ok(Zeroizing::new(text))
}
