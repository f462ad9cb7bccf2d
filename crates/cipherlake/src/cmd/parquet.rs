//! `cipherlake parquet`: the custodian's tools for Parquet modular encryption.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_engine::encryption::DataKeyLength;
use cipherlake_engine::encryption::custodian::{RewriteReport, inspect, rewrite};
use cipherlake_engine::encryption::{ColumnKeys, EncryptionSpec, parse_column_keys};

use super::encrypt::EncryptKmsArgs;
use super::workload::KmsArgs;

/// Encrypt, decrypt and inspect Parquet files (Parquet modular encryption, AES_GCM_V1, with
/// PKMT1 key material readable by parquet-java/Spark and pyarrow).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ParquetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ParquetCommand {
    /// Encrypt a Parquet file or a directory of them (other files in a directory are copied).
    ///
    /// Row groups and compression are kept; each output file is written under a temporary
    /// name and renamed when complete. Encrypted inputs are decrypted with the same KMS first.
    Encrypt(EncryptArgs),
    /// Decrypt a Parquet file or a directory of them into plaintext Parquet.
    Decrypt(DecryptArgs),
    /// Show row groups, rows, footer mode and which columns are encrypted under which master
    /// key id (never key bytes). Plaintext-footer files need no KMS.
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
struct EncryptArgs {
    /// Input Parquet file or directory.
    #[arg(long = "in", value_name = "PATH")]
    input: PathBuf,
    /// Output file or directory.
    #[arg(long = "out", value_name = "PATH")]
    output: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    kms: EncryptKmsArgs,
}

/// Key selection shared by `parquet encrypt` and `datagen taxi --encrypt`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Master key id of the footer key (also encrypts every column when no column keys are
    /// given).
    #[arg(long, value_name = "ID")]
    pub footer_key: Option<String>,
    /// Column keys: ID:col1,col2 (several entries separated by ';' or by repeating the
    /// option). Only the named columns are encrypted then.
    #[arg(long = "column-keys", value_name = "ID:COLS")]
    pub column_keys: Vec<String>,
    /// Write a plaintext footer (signed with the footer key): schema and plaintext columns stay
    /// readable without keys.
    #[arg(long)]
    pub plaintext_footer: bool,
    /// Have the KMS wrap every data key directly instead of through a key encryption key.
    #[arg(long)]
    pub single_wrapping: bool,
    /// Data key length in bits.
    #[arg(long, default_value = "128", value_parser = ["128", "256"])]
    pub data_key_bits: String,
}

impl KeyArgs {
    /// The encryption spec these options describe.
    pub fn spec(&self) -> anyhow::Result<EncryptionSpec> {
        let Some(footer_key) = &self.footer_key else {
            anyhow::bail!("--footer-key ID is required to encrypt");
        };
        let mut spec = EncryptionSpec::new(footer_key.clone());
        let mut column_keys: ColumnKeys = Vec::new();
        for text in &self.column_keys {
            column_keys.extend(parse_column_keys(text)?);
        }
        // Merge and re-check duplicates across repeated options.
        let joined = column_keys
            .iter()
            .map(|(id, cols)| format!("{id}:{}", cols.join(",")))
            .collect::<Vec<_>>()
            .join(";");
        spec.column_keys = parse_column_keys(&joined)?;
        spec.plaintext_footer = self.plaintext_footer;
        spec.double_wrapping = !self.single_wrapping;
        spec.data_key_length = if self.data_key_bits == "256" {
            DataKeyLength::Aes256
        } else {
            DataKeyLength::Aes128
        };
        Ok(spec)
    }
}

#[derive(Debug, clap::Args)]
struct DecryptArgs {
    /// Input Parquet file or directory.
    #[arg(long = "in", value_name = "PATH")]
    input: PathBuf,
    /// Output file or directory.
    #[arg(long = "out", value_name = "PATH")]
    output: PathBuf,
    #[command(flatten)]
    kms: KmsArgs,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// The Parquet file.
    file: PathBuf,
    /// The KMS is needed for details of files with an encrypted footer.
    #[command(flatten)]
    kms: KmsArgs,
}

/// Runs `cipherlake parquet`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ParquetCommand::Encrypt(args) => {
            let spec = args.keys.spec()?;
            let kms = args.kms.require("encrypting").await?;
            let (input, output) = (args.input.clone(), args.output.clone());
            let report = tokio::task::spawn_blocking(move || {
                rewrite(&input, &output, Some(kms), Some(&spec))
            })
            .await
            .context("encryption task failed")??;
            print_report("encrypted", &report, &args.output);
        }
        ParquetCommand::Decrypt(args) => {
            let kms = args.kms.require("decrypting").await?;
            let (input, output) = (args.input.clone(), args.output.clone());
            let report =
                tokio::task::spawn_blocking(move || rewrite(&input, &output, Some(kms), None))
                    .await
                    .context("decryption task failed")??;
            print_report("decrypted", &report, &args.output);
        }
        ParquetCommand::Inspect(args) => {
            let kms = args.kms.open().await?;
            print!("{}", inspect(&args.file, kms)?);
        }
    }
    Ok(())
}

fn print_report(verb: &str, report: &RewriteReport, output: &std::path::Path) {
    println!(
        "{verb} {} file(s), {} row group(s), {} rows into {}{}",
        report.files,
        report.row_groups,
        report.rows,
        output.display(),
        if report.copied > 0 {
            format!(" ({} other file(s) copied)", report.copied)
        } else {
            String::new()
        }
    );
}
