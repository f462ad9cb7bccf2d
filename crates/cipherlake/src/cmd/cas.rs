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
    /// Collateral the CAS trusts instead of what attestees bring: import DCAP collateral (as
    /// PCCS serves it) or AMD CRLs, and list what is held. Needs the operator token.
    #[command(subcommand)]
    Collateral(CollateralCommand),
    /// Create the policy owners' recovery key pair (X25519): writes the private key to FILE
    /// (0600) and prints the public key for `cas serve --sealing tpm --recovery-key`.
    RecoveryKeygen {
        /// Where to write the private key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// After a legitimate platform change (firmware update, new boot chain) a TPM-sealed CAS
    /// no longer unseals its master key: open it from DATA_DIR/master.recovery with the
    /// owners' recovery private key, check it against the database, and seal it again to the
    /// PCRs' current values. Run on the CAS host, with the CAS stopped.
    Recover(RecoverArgs),
}

#[derive(clap::Subcommand)]
enum CollateralCommand {
    /// Import a file: DCAP collateral JSON (TCB info, QE identity, CRLs) or an AMD CRL. A TCB
    /// info older than the one held for its FMSPC is refused.
    Import {
        /// The collateral file.
        file: PathBuf,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// List the collateral held, with its TCB evaluation data number and expiry.
    Show {
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

/// A CAS connection with the operator token.
#[derive(clap::Args)]
struct OperatorArgs {
    #[command(flatten)]
    cas: CasConnection,
    /// The operator token file (DATA_DIR/operator.token).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
}

impl OperatorArgs {
    fn token(&self) -> anyhow::Result<zeroize::Zeroizing<String>> {
        Ok(zeroize::Zeroizing::new(
            std::fs::read_to_string(&self.token_file)
                .with_context(|| format!("reading {}", self.token_file.display()))?
                .trim()
                .to_string(),
        ))
    }
}

async fn collateral(command: CollateralCommand) -> anyhow::Result<()> {
    match command {
        CollateralCommand::Import { file, operator } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let held = operator
                .cas
                .client()?
                .import_collateral(&operator.token()?, &bytes)
                .await?;
            println!("imported {}", describe_collateral(&held));
        }
        CollateralCommand::Show { operator } => {
            for held in operator
                .cas
                .client()?
                .collateral(&operator.token()?)
                .await?
            {
                println!("{}", describe_collateral(&held));
            }
        }
    }
    Ok(())
}

fn describe_collateral(c: &cipherlake_cas::store::StoredCollateral) -> String {
    let time = |t: Option<u64>| t.map_or_else(|| "-".into(), cipherlake_attest::time::format_unix);
    let number = c
        .number
        .map_or_else(String::new, |n| format!(" tcb-evaluation-data-number {n}"));
    format!(
        "{}{number} issued {} expires {}",
        c.id,
        time(c.issued),
        time(c.expires)
    )
}

#[derive(clap::Args)]
struct RecoverArgs {
    /// The CAS data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The recovery private key file (from `cas recovery-keygen`).
    #[arg(long, value_name = "FILE")]
    recovery_key: PathBuf,
    #[command(flatten)]
    tpm: TpmSealArgs,
}

/// The TPM sealing settings, shared by `cas serve` and `cas recover`.
#[derive(clap::Args, Clone)]
struct TpmSealArgs {
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

impl TpmSealArgs {
    fn sealing(&self, recovery_key: Option<Vec<u8>>) -> TpmSealing {
        TpmSealing {
            tpm: self.tpm.clone(),
            pcrs: self.seal_pcrs.clone(),
            counter_index: self.epoch_index,
            recovery_key,
        }
    }
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
    /// custodians can check it with `cipherlake cas verify`; the CAS refuses to start when it
    /// is given and no attester answers. Without it the CAS looks for a TEE device, else it
    /// has no evidence.
    #[arg(long, value_name = "PATH")]
    las_socket: Option<PathBuf>,
    /// Take the operator token from this file (e.g. a mounted Kubernetes Secret; at least 32
    /// characters, not readable by others) instead of generating DATA_DIR/operator.token.
    #[arg(long, value_name = "FILE")]
    operator_token_file: Option<PathBuf>,
    /// Where the CAS, on an Azure confidential VM, fetches its VCEK or TD quote (e.g.
    /// http://169.254.169.254); no default.
    #[arg(long, value_name = "URL")]
    platform_endpoint: Option<String>,
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
    #[arg(long, value_name = "KIND", default_value = "file",
          value_parser = ["file", "tpm", "sev-snp", "gramine"])]
    sealing: String,
    /// The SEV-SNP guest device for `--sealing sev-snp` (a key the firmware derives for this
    /// guest's launch measurement and policy wraps the master key).
    #[arg(long, value_name = "PATH", default_value = "/dev/sev-guest")]
    sev_guest: PathBuf,
    /// With `--sealing sev-snp`: also bind the derived key to the family id.
    #[arg(long)]
    snp_bind_family_id: bool,
    /// Gramine's attestation directory for `--sealing gramine` (its MRENCLAVE sealing key
    /// wraps the master key).
    #[arg(long, value_name = "PATH", default_value = "/dev/attestation")]
    gramine_root: PathBuf,
    #[command(flatten)]
    tpm: TpmSealArgs,
    /// The policy owners' recovery public key (64 hex digits, or a file holding them, from
    /// `cas recovery-keygen`): at first start with --sealing tpm the master key is also sealed
    /// to it, so `cas recover` can re-seal after a platform change.
    #[arg(long, value_name = "HEX_OR_FILE")]
    recovery_key: Option<String>,
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
        Command::Collateral(command) => collateral(command).await,
        Command::RecoveryKeygen { out } => recovery_keygen(&out),
        Command::Recover(args) => recover(args),
    }
}

fn recovery_keygen(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pair = cipherlake_cas::seal::HpkeKeyPair::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let private = zeroize::Zeroizing::new(format!(
        "{}\n",
        hex::encode(pair.private_bytes().as_slice())
    ));
    file.write_all(private.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", hex::encode(pair.public_key()));
    Ok(())
}

fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.recovery_key)
            .with_context(|| format!("reading {}", args.recovery_key.display()))?,
    );
    let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).with_context(|| {
        format!(
            "{}: not a recovery private key (hex)",
            args.recovery_key.display()
        )
    })?);
    let pair = cipherlake_cas::seal::HpkeKeyPair::from_private_bytes(&bytes)?;
    cipherlake_cas::sealing::TpmMasterKey::recover(&args.data_dir, &args.tpm.sealing(None), &pair)?;
    println!(
        "master key of {} sealed again to PCRs {:?} of the TPM at {}",
        args.data_dir.display(),
        args.tpm.seal_pcrs,
        args.tpm.tpm
    );
    Ok(())
}

/// A 32-byte public key as 64 hex digits, or a file holding them.
fn public_key_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    let text = if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    };
    let key = hex::decode(text.trim()).with_context(|| format!("{arg}: not 64 hex digits"))?;
    anyhow::ensure!(key.len() == 32, "{arg}: a recovery public key is 32 bytes");
    Ok(key)
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
    config.operator_token_file = args.operator_token_file.clone();
    for path in &args.amd_crls {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let crl = cipherlake_attest::snp::AmdCrl::parse(&bytes)
            .with_context(|| format!("--amd-crl {}", path.display()))?;
        config.amd_crls.push(crl);
    }
    // The CAS finds its own attester as workloads do (configfs-tsm, /dev/sev-guest, an Azure
    // vTPM, Gramine, the LAS); without one it has no evidence for `cas verify`.
    config.attester =
        match cipherlake_attest::attester::detect(&cipherlake_attest::attester::DetectConfig {
            las_socket: args
                .las_socket
                .clone()
                .unwrap_or_else(|| cipherlake_attest::attester::DEFAULT_LAS_SOCKET.into()),
            platform_endpoint: args.platform_endpoint.clone(),
            ..Default::default()
        }) {
            Ok(attester) => Some(attester),
            // Asked for the LAS's evidence: a CAS that clients cannot verify must not start (a
            // container restarts it until the node's LAS is up).
            Err(e) if args.las_socket.is_some() => {
                anyhow::bail!("the CAS cannot get its own evidence for `cas verify`: {e}")
            }
            Err(e) => {
                eprintln!("the CAS has no evidence of its own for `cas verify`: {e}");
                None
            }
        };
    if args.sealing == "sev-snp" {
        config.sealing = Sealing::SevSnp {
            device: args.sev_guest.clone(),
            family_id: args.snp_bind_family_id,
        };
        eprintln!("CAS master key wrapped under an SEV-SNP derived key (sealing: sev-snp)");
    } else if args.sealing == "gramine" {
        config.sealing = Sealing::Gramine {
            root: args.gramine_root.clone(),
        };
        eprintln!(
            "CAS master key wrapped under Gramine's MRENCLAVE sealing key (sealing: gramine)"
        );
    } else if args.sealing == "tpm" {
        let recovery = args
            .recovery_key
            .as_deref()
            .map(public_key_arg)
            .transpose()?;
        if recovery.is_none() {
            eprintln!(
                "no --recovery-key: if the platform's PCRs change, the master key cannot be \
                 re-sealed and every secret is lost"
            );
        }
        config.sealing = Sealing::Tpm(args.tpm.sealing(recovery));
        eprintln!(
            "CAS master key sealed by the TPM at {} to PCRs {:?} (sealing: tpm)",
            args.tpm.tpm, args.tpm.seal_pcrs
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
