//! `cipherlake ae`: SQL Server Always Encrypted tools.

use anyhow::{Context, bail};
use cipherlake_crypto::always_encrypted::{
    CellKey, EncryptionType, SqlType, SqlValue, Zeroizing, denormalize, encrypt_value,
};

/// SQL Server Always Encrypted: cells, keys and encrypted columns.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Encrypt or decrypt a single cell (a debugging aid).
    #[command(subcommand)]
    Cell(CellCommand),
}

#[derive(clap::Subcommand, Debug)]
enum CellCommand {
    /// Encrypt a value and print the cell as lowercase hex.
    Encrypt {
        #[command(flatten)]
        cell: CellOptions,
        /// The value as text, e.g. 42, 12.50, 2024-02-29 13:45:10.1234567, 0xDEADBEEF.
        value: String,
    },
    /// Decrypt a cell given as hex and print its value as text.
    Decrypt {
        #[command(flatten)]
        cell: CellOptions,
        /// The cell as hex (with or without 0x).
        cell_hex: String,
    },
}

#[derive(clap::Args)]
struct CellOptions {
    /// The column encryption key as 64 hex digits. For debugging only: a key on a command line
    /// can be seen in process listings and shell history.
    #[arg(long, value_name = "HEX")]
    cek: String,
    /// The column's SQL Server type, e.g. bigint, nvarchar(50), decimal(18,2), datetime2(7),
    /// varchar(20) COLLATE Latin1_General_100_BIN2_UTF8.
    #[arg(long = "type", value_name = "SQLTYPE")]
    sql_type: SqlType,
    /// How the column is encrypted. On decrypt, a deterministic cell is also checked to be
    /// the deterministic encryption of its value.
    #[arg(long, value_name = "deterministic|randomized")]
    mode: EncryptionType,
}

impl std::fmt::Debug for CellOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellOptions")
            .field("cek", &"<redacted>")
            .field("sql_type", &self.sql_type)
            .field("mode", &self.mode)
            .finish()
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Derives the cell key from the hex CEK and wipes the CEK text and bytes.
fn cell_key(cek: &mut String) -> anyhow::Result<CellKey> {
    let text = Zeroizing::new(std::mem::take(cek));
    let bytes = Zeroizing::new(
        decode_hex(&text).context("--cek must be hex (64 digits for a 32-byte key)")?,
    );
    CellKey::new(&bytes).context("invalid --cek")
}

/// Runs `cipherlake ae`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Cell(CellCommand::Encrypt { mut cell, value }) => {
            let key = cell_key(&mut cell.cek)?;
            let value = SqlValue::parse(&cell.sql_type, &value)?;
            let bytes = encrypt_value(&key, &cell.sql_type, &value, cell.mode)?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
        }
        Command::Cell(CellCommand::Decrypt { mut cell, cell_hex }) => {
            let key = cell_key(&mut cell.cek)?;
            let bytes = decode_hex(&cell_hex).context("CELL_HEX must be hex")?;
            let plaintext = Zeroizing::new(key.decrypt(&bytes)?);
            let value = denormalize(&cell.sql_type, &plaintext)?;
            if cell.mode == EncryptionType::Deterministic
                && key.encrypt(&plaintext, EncryptionType::Deterministic)? != bytes
            {
                bail!("the cell is authentic but was not encrypted deterministically");
            }
            println!("{value}");
        }
    }
    Ok(())
}
