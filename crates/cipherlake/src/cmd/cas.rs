//! `cipherlake cas`: run the Configuration and Attestation Service, and the custodian's
//! `policy apply` against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use cipherlake_attest::tpm::device::TpmPath;
use cipherlake_cas::client::CasClient;
use cipherlake_cas::sealing::{DEFAULT_PCRS, Sealing, TpmSealing};
use cipherlake_cas::service::Config;
use cipherlake_policy::{OwnerSigningKey, sign};

mod verify;

/// Run the CAS.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve the CAS over HTTPS. At first start the data directory receives the master key
    /// (master.key, 0600), the database (cas.db), the TLS certificate clients pin
    /// (tls-cert.pem), the audit public key (audit-public-key) and the operator token for
    /// registering LAS platforms (operator.token, 0600).
    Serve(ServeArgs),
    /// Register a LAS platform public key (as printed by `cipherlake las init-key`), so the CAS
    /// accepts sim-mode reports signed by it. Needs the operator token from the data directory.
    RegisterPlatform(RegisterPlatformArgs),
    /// Check a CAS before trusting it: its evidence must verify, show the expected measurement
    /// and bind a fresh nonce and the TLS key it presents. Prints the certificate fingerprint
    /// and can write the certificate to pin with --cas-cert.
    Verify(verify::Args),
}

#[derive(clap::Args)]
struct RegisterPlatformArgs {
    #[command(flatten)]
    cas: CasConnection,
    /// The operator token file (DATA_DIR/operator.token).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The LAS platform public key (64 hex characters).
    public_key: String,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// State directory (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// DNS names or IP addresses for the TLS certificate generated at first start.
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
    /// The LAS socket from which the CAS gets its own evidence (simulation mode), so
    /// custodians can check it with `cipherlake cas verify`. Without it the CAS has no evidence.
    #[arg(long, value_name = "PATH")]
    las_socket: Option<PathBuf>,
    /// Lifetime of the workload certificates the CAS issues, in seconds (long-running
    /// workers re-attest when a third of it is left).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..))]
    cert_ttl: u64,
    /// An AMD CRL (DER or PEM, as AMD's KDS serves it at /vcek/v1/{product}/crl and
    /// /vlek/v1/{product}/crl) to check every SEV-SNP chain against. Repeat for several.
    #[arg(long = "amd-crl", value_name = "FILE")]
    amd_crls: Vec<PathBuf>,
    /// Where the master key lives: `file` (DATA_DIR/master.key; simulation and development
    /// only) or `tpm` (sealed by the TPM to --seal-pcrs; a restored older data directory is
    /// caught by a TPM counter).
    #[arg(long, value_name = "KIND", default_value = "file", value_parser = ["file", "tpm"])]
    sealing: String,
    /// The TPM for `--sealing tpm`: /dev/tpmrm0, or tcp:HOST:PORT for swtpm.
    #[arg(
        long,
        value_name = "DEVICE|tcp:HOST:PORT",
        default_value = "/dev/tpmrm0"
    )]
    tpm: TpmPath,
    /// SHA-256 PCRs the master key is sealed to.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_values_t = DEFAULT_PCRS.to_vec(),
          value_parser = clap::value_parser!(u8).range(0..24))]
    seal_pcrs: Vec<u8>,
    /// NV index of the TPM epoch counter (hex).
    #[arg(long, value_name = "HEX", default_value = "0x01500c1a", value_parser = parse_nv_index)]
    epoch_index: u32,
}

fn parse_nv_index(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0x");
    let index = u32::from_str_radix(digits, 16).map_err(|e| format!("{text:?}: {e}"))?;
    if (0x0100_0000..0x0200_0000).contains(&index) {
        Ok(index)
    } else {
        Err(format!(
            "{text}: not an NV index (0x01000000 to 0x01ffffff)"
        ))
    }
}

/// How to reach a CAS: its URL and the certificate to pin (it is self-signed).
#[derive(clap::Args, Clone)]
pub struct CasConnection {
    /// The CAS URL, e.g. https://cas:8443.
    #[arg(long = "cas", value_name = "URL", env = "CIPHERLAKE_CAS")]
    pub url: String,
    /// The CAS certificate (PEM; the CAS writes it to DATA_DIR/tls-cert.pem), pinned by its
    /// SHA-256 fingerprint.
    #[arg(long = "cas-cert", value_name = "FILE", env = "CIPHERLAKE_CAS_CERT")]
    pub cert: PathBuf,
}

impl CasConnection {
    /// A client pinned to the certificate.
    pub fn client(&self) -> anyhow::Result<CasClient> {
        super::workload::cas_client(&self.url, &self.cert)
    }
}

/// Runs `cipherlake cas`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Serve(args) => serve(args).await,
        Command::RegisterPlatform(args) => register_platform(args).await,
        Command::Verify(args) => verify::run(args).await,
    }
}

async fn register_platform(args: RegisterPlatformArgs) -> anyhow::Result<()> {
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("reading {}", args.token_file.display()))?,
    );
    args.cas
        .client()?
        .register_platform(token.trim(), args.public_key.trim())
        .await?;
    println!("registered LAS platform {}", args.public_key.trim());
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::new(&args.data_dir);
    if !args.tls_names.is_empty() {
        config.tls_names = args.tls_names;
    }
    config.cert_ttl = std::time::Duration::from_secs(args.cert_ttl);
    for path in &args.amd_crls {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let crl = cipherlake_attest::snp::AmdCrl::parse(&bytes)
            .with_context(|| format!("--amd-crl {}", path.display()))?;
        config.amd_crls.push(crl);
    }
    config.attester = args
        .las_socket
        .map(|socket| cipherlake_attest::attester::Attester::Sim { socket });
    if args.sealing == "tpm" {
        config.sealing = Sealing::Tpm(TpmSealing {
            tpm: args.tpm.clone(),
            pcrs: args.seal_pcrs.clone(),
            counter_index: args.epoch_index,
        });
        eprintln!(
            "CAS master key sealed by the TPM at {} to PCRs {:?} (sealing: tpm)",
            args.tpm, args.seal_pcrs
        );
    } else {
        eprintln!(
            "CAS master key in {} (sealing: none): whoever administers this host can read it, \
             and with it every secret and the integrity keys of cas.db; for simulation and \
             development only",
            args.data_dir.join("master.key").display()
        );
    }
    let server = cipherlake_cas::server::start(config, args.listen).await?;
    eprintln!(
        "CAS serving on https://{} (certificate {}, audit key {})",
        server.addr,
        args.data_dir.join("tls-cert.pem").display(),
        args.data_dir.join("audit-public-key").display()
    );
    let signal = shutdown_signal().await?;
    eprintln!("{signal}: shutting down (in-flight requests may finish)");
    server.shutdown().await;
    eprintln!("CAS stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its name.
pub async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// `cipherlake policy apply FILE --cas URL --cas-cert FILE --key OWNER_KEY`: sign the policy
/// with the owner key and apply it.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The policy's YAML file.
    pub file: PathBuf,
    /// The owner's private key file (as written by `cipherlake policy keygen`).
    #[arg(long, value_name = "OWNER_KEY")]
    pub key: PathBuf,
    #[command(flatten)]
    pub cas: CasConnection,
}

/// Runs `cipherlake policy apply`: prints the applied version's hash.
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let key_text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.key)
            .with_context(|| format!("reading {}", args.key.display()))?,
    );
    let key = OwnerSigningKey::from_file_text(&key_text)?;
    let signed = sign(&text, &key).with_context(|| format!("{}", args.file.display()))?;
    let name = cipherlake_policy::Policy::parse(&text)?.name().to_string();
    let info = args.cas.client()?.apply_policy(&name, &signed).await?;
    println!("applied policy {:?} version {}", info.name, info.hash);
    Ok(())
}
