//! `cipherlake evidence`: verify TEE evidence and print its normalised claims.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use cipherlake_attest::dcap::DcapCollateral;
use cipherlake_attest::encoding::decode_binary_or_hex;
use cipherlake_attest::maa::MaaTrust;
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_attest::snp::{AmdCrl, SnpCollateral};
use cipherlake_attest::{Collateral, Evidence, Tee, Verifier, VerifyOptions};

/// Work with TEE attestation evidence.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Verify evidence and print its claims as JSON (exit 1 with the reason if refused).
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// TEE that produced the evidence: sgx, tdx, sev-snp, azure, sim, azure-snp-vtpm,
    /// azure-tdx-vtpm or sim-vtpm.
    #[arg(long, value_parser = clap::value_parser!(TeeArg))]
    tee: TeeArg,
    /// Evidence file, binary or hex: DCAP quote, SEV-SNP report, Azure Attestation token or
    /// sim report; for the vTPM kinds, the evidence JSON (CoCo trustee layouts 0, 1 and 2).
    file: PathBuf,
    /// The nonce the vTPM quote must carry, hex, at most 64 bytes (vTPM kinds).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// DCAP collateral as JSON (sgx, tdx; azure-tdx-vtpm for its TD quote).
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// VCEK or VLEK certificate, DER or PEM (sev-snp; azure-snp-vtpm, where it replaces the
    /// one the evidence carries).
    #[arg(long)]
    vcek: Option<PathBuf>,
    /// ASK/ARK certificate chain, PEM (sev-snp); default: AMD's built-in certificates.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// AMD CRL, DER or PEM, as KDS serves it at /vcek/v1/{product}/crl or /vlek/v1/{product}/crl
    /// (sev-snp, azure-snp-vtpm); a revoked ASK or ASVK is refused. Repeat for several.
    #[arg(long = "crl", value_name = "FILE")]
    crls: Vec<PathBuf>,
    /// Pinned JWKS of the attestation provider, as served at https://<provider>/certs (azure).
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Expected token issuer, https://<provider> (azure).
    #[arg(long)]
    issuer: Option<String>,
    /// Registered LAS platform public key: 64 hex digits, or a file holding them (sim).
    /// Repeat for several platforms.
    #[arg(long = "platform-key", value_name = "HEX_OR_FILE")]
    platform_keys: Vec<String>,
    /// Verification time, RFC 3339 (e.g. 2025-07-01T00:00:00Z); default: now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
}

/// A TEE name as accepted on the command line.
#[derive(Clone, Copy)]
struct TeeArg(Tee);

impl std::str::FromStr for TeeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(TeeArg)
    }
}

/// Runs `cipherlake evidence`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let tee = args.tee.0;
    let options = match &args.at {
        Some(at) => VerifyOptions::at(cipherlake_attest::time::parse_rfc3339(at)?),
        None => VerifyOptions::now(),
    };
    let raw = read(&args.file)?;
    let bytes = if tee.is_vtpm() {
        raw
    } else {
        decode_binary_or_hex(&raw)
    };
    let options = match (&args.nonce, tee.is_vtpm()) {
        (Some(nonce), true) => options.with_nonce(
            &hex::decode(nonce.trim()).with_context(|| format!("--nonce {nonce:?} is not hex"))?,
        ),
        (None, true) => bail!("--nonce HEX is required for {tee} evidence"),
        (Some(_), false) => {
            bail!("--nonce is for the vTPM kinds; {tee} evidence binds report data instead")
        }
        (None, false) => options,
    };
    let mut evidence = Evidence::new(tee, bytes);
    let mut verifier = Verifier::new();
    if !args.crls.is_empty() && !matches!(tee, Tee::SevSnp | Tee::AzureSnpVtpm) {
        bail!("--crl is for AMD CRLs (sev-snp, azure-snp-vtpm), not {tee} evidence");
    }
    for path in &args.crls {
        let crl = AmdCrl::parse(&read(path)?).with_context(|| path.display().to_string())?;
        verifier = verifier.with_amd_crl(crl);
    }
    match tee {
        Tee::AzureSnpVtpm => {
            if let Some(vcek) = &args.vcek {
                let chain = args.chain.as_deref().map(read).transpose()?;
                let collateral = SnpCollateral::new(&read(vcek)?, chain.as_deref())?;
                evidence = evidence.with_collateral(Collateral::Snp(Arc::new(collateral)));
            }
        }
        Tee::Sgx | Tee::Tdx | Tee::AzureTdxVtpm => {
            let path = args
                .collateral
                .as_deref()
                .with_context(|| format!("--collateral FILE is required for {tee} evidence"))?;
            let collateral = DcapCollateral::from_json(&read(path)?)?;
            evidence = evidence.with_collateral(Collateral::Dcap(Arc::new(collateral)));
        }
        Tee::SevSnp => {
            let vcek = args
                .vcek
                .as_deref()
                .context("--vcek FILE is required for sev-snp reports")?;
            let chain = args.chain.as_deref().map(read).transpose()?;
            let collateral = SnpCollateral::new(&read(vcek)?, chain.as_deref())?;
            evidence = evidence.with_collateral(Collateral::Snp(Arc::new(collateral)));
        }
        Tee::Azure => {
            let jwks = args
                .jwks
                .as_deref()
                .context("--jwks FILE is required for azure tokens")?;
            let issuer = args
                .issuer
                .as_deref()
                .context("--issuer URL is required for azure tokens")?;
            verifier = verifier.with_maa(MaaTrust::new(&read(jwks)?, issuer)?);
        }
        Tee::Sim | Tee::SimVtpm => {
            if args.platform_keys.is_empty() {
                bail!("--platform-key HEX_OR_FILE is required for {tee} evidence");
            }
            for key in &args.platform_keys {
                verifier = verifier.with_sim_platform_key(platform_key(key)?);
            }
        }
    }
    let claims = verifier.verify(&evidence, &options)?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A platform public key given as hex or as a file holding the hex.
fn platform_key(arg: &str) -> anyhow::Result<PlatformPublicKey> {
    if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(PlatformPublicKey::from_hex(arg)?);
    }
    let content = read(Path::new(arg))?;
    let text = std::str::from_utf8(&content).ok().map(str::trim);
    match text {
        Some(hex) if hex.len() == 64 => Ok(PlatformPublicKey::from_hex(hex)?),
        _ => bail!(
            "{arg}: expected a public key as 64 hex digits (as printed by `cipherlake las init-key`), \
             not a platform key file"
        ),
    }
}
