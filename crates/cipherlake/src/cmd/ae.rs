//! `cipherlake ae`: SQL Server Always Encrypted tools: cells, and the custodian's keys and
//! encrypted columns in PostgreSQL and SQLite databases.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cipherlake_crypto::always_encrypted::{
    CellKey, EncryptionType, SqlType, SqlValue, Zeroizing, denormalize, encrypt_value,
};
use cipherlake_engine::sqldb::catalog;
use cipherlake_engine::sqldb::conn::Conn;
use cipherlake_engine::sqldb::custodian::{
    ColumnRequest, Progress, create_cek, create_cmk, decrypt_columns, describe_catalog,
    encrypt_columns,
};
use cipherlake_engine::sqldb::keystore::{CAS_PROVIDER, LOCAL_PROVIDER};
use cipherlake_engine::sqldb::sample::create_contoso;
use cipherlake_engine::sqldb::url::UrlArg;
use cipherlake_engine::sqldb::{CasKeyStore, DbUrl, KeyStores};

use super::workload::{UserArgs, cas_client};

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
    /// Record a column master key in the database's key catalog (creating the catalog), with
    /// its metadata signed by the key. The key stays where it is: a local PEM file or the CAS.
    CreateCmk {
        #[command(flatten)]
        db: DbArgs,
        /// The key's name in the catalog.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// FILE.pem (an RSA private key, PKCS#8 or PKCS#1) or cas:KEYID (an RSA key pair
        /// secret held by the CAS; needs --cas and an attested identity).
        #[arg(long, value_name = "FILE.pem|cas:KEYID")]
        key_path: String,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// Generate a column encryption key, wrap it with the column master key (RSA-OAEP-SHA1),
    /// sign it and record the value in the catalog. The key itself is never shown.
    CreateCek {
        #[command(flatten)]
        db: DbArgs,
        /// The key's name in the catalog.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The column master key that wraps it.
        #[arg(long, value_name = "NAME")]
        cmk: String,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// Encrypt existing plaintext columns of a table in place, in batches, each its own
    /// transaction; the encrypted column replaces the plaintext one in a final transaction.
    /// Interrupted, the same command resumes where it stopped.
    EncryptColumns {
        #[command(flatten)]
        db: DbArgs,
        /// The table.
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// NAME:deterministic|randomized[:SQLTYPE], comma-separated, e.g.
        /// SSN:deterministic:char(11),Salary:randomized:money. Without SQLTYPE it follows the
        /// column's database type.
        #[arg(long, value_name = "COLUMNS", value_delimiter = ',', required = true)]
        columns: Vec<ColumnRequest>,
        /// The column encryption key.
        #[arg(long, value_name = "NAME")]
        cek: String,
        #[command(flatten)]
        batches: BatchArgs,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// Decrypt encrypted columns of a table back into plaintext columns in place (resumable,
    /// like encrypt-columns).
    DecryptColumns {
        #[command(flatten)]
        db: DbArgs,
        /// The table.
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// Column names, comma-separated.
        #[arg(long, value_name = "COLUMNS", value_delimiter = ',', required = true)]
        columns: Vec<String>,
        #[command(flatten)]
        batches: BatchArgs,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// List the key catalog: column master keys, column encryption keys and encrypted
    /// columns (never key bytes).
    Show {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create sample data.
    #[command(subcommand)]
    Sample(SampleCommand),
}

#[derive(clap::Subcommand, Debug)]
enum SampleCommand {
    /// A ContosoHR-like Employees table: SSN char(11) encrypted deterministically, Salary
    /// money encrypted randomized, under CEK --cek (created with a CMK from --key-path when
    /// missing).
    Contoso {
        #[command(flatten)]
        db: DbArgs,
        /// Number of employees.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        /// The column encryption key to use.
        #[arg(long, value_name = "NAME", default_value = "ContosoCEK")]
        cek: String,
        /// Column master key for a new CEK: FILE.pem or cas:KEYID (recorded as ContosoCMK).
        #[arg(long, value_name = "FILE.pem|cas:KEYID")]
        key_path: Option<String>,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
}

/// The database a custodian command works on.
#[derive(clap::Args, Debug)]
struct DbArgs {
    /// The database: postgres://USER:PASSWORD@HOST:PORT/DB or sqlite:PATH. Prefer the
    /// environment variable: a password on a command line is visible to other users.
    #[arg(
        long = "db",
        value_name = "URL",
        env = "CIPHERLAKE_DB",
        hide_env_values = true
    )]
    url: UrlArg,
}

impl DbArgs {
    /// The URL, parsed here rather than by clap so that errors never echo a password.
    fn url(&self) -> anyhow::Result<DbUrl> {
        Ok(self.url.0.parse()?)
    }

    async fn open(&self) -> anyhow::Result<Conn> {
        Ok(Conn::open(&self.url()?).await?)
    }
}

/// Batch size and interruption of in-place column conversion.
#[derive(clap::Args, Debug)]
struct BatchArgs {
    /// Rows per batch (each batch is one transaction).
    #[arg(long, default_value_t = 10_000)]
    batch_rows: usize,
    /// Stop after this many batches (resume later with the same command).
    #[arg(long)]
    max_batches: Option<usize>,
}

/// Access to column master keys held by the CAS (key paths cas:KEYID): this process signs as
/// --user of --policy (a person, never attested) and the CAS decrypts (unwrap) and signs (wrap)
/// with the keys that user is granted.
#[derive(clap::Args, Debug)]
struct KeyStoreArgs {
    /// The CAS URL (https://HOST:PORT), for column master keys held by the CAS.
    #[arg(long, value_name = "URL", env = "CIPHERLAKE_CAS")]
    cas: Option<String>,
    /// The CAS certificate to pin.
    #[arg(long = "cas-cert", value_name = "FILE", env = "CIPHERLAKE_CAS_CERT")]
    cas_cert: Option<PathBuf>,
    #[command(flatten)]
    user: UserArgs,
}

impl KeyStoreArgs {
    /// The key stores: local PEM files always, the CAS when --cas is given (which also gives
    /// the public half of the keys the user is granted).
    async fn stores(&self) -> anyhow::Result<KeyStores> {
        let stores = KeyStores::default();
        let Some(url) = &self.cas else {
            return Ok(stores);
        };
        let cert = self
            .cas_cert
            .as_deref()
            .context("--cas URL needs --cas-cert FILE (the CAS's tls-cert.pem)")?;
        let cas = cas_client(url, cert)?;
        let store = CasKeyStore::new(cas.with_credential(self.user.credential()?));
        Ok(stores.with(Arc::new(store)))
    }
}

/// `FILE.pem` or `cas:KEYID` as (provider, key path).
fn key_location(key_path: &str) -> (&'static str, &str) {
    match key_path.strip_prefix("cas:") {
        Some(id) => (CAS_PROVIDER, id),
        None => (LOCAL_PROVIDER, key_path),
    }
}

fn report(verb: &str, table: &str, progress: Progress) {
    if progress.finished {
        println!("{verb} {} cell(s) of table {table}; done", progress.cells);
    } else {
        println!(
            "{verb} {} cell(s) of table {table}; stopped before the end: run the same command again to resume",
            progress.cells
        );
    }
}

#[derive(clap::Subcommand, Debug)]
enum CellCommand {
    /// Encrypt a value and print the cell as lowercase hex.
    Encrypt {
        #[command(flatten)]
        cell: CellOptions,
        /// The value as text, e.g. 42, -1, 12.50, 2024-02-29 13:45:10.1234567, 0xDEADBEEF
        /// (negative numbers are values, not options).
        #[arg(allow_negative_numbers = true)]
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
        Command::CreateCmk {
            db,
            name,
            key_path,
            keys,
        } => {
            let (provider, path) = key_location(&key_path);
            let stores = keys.stores().await?;
            create_cmk(&db.open().await?, &stores, &name, provider, path).await?;
            println!("column master key {name} recorded ({provider}:{path})");
        }
        Command::CreateCek {
            db,
            name,
            cmk,
            keys,
        } => {
            let conn = db.open().await?;
            let stores = keys.stores().await?;
            create_cek(&conn, &stores, &name, &cmk).await?;
            println!("column encryption key {name} created under {cmk}");
        }
        Command::EncryptColumns {
            db,
            table,
            columns,
            cek,
            batches,
            keys,
        } => {
            let stores = keys.stores().await?;
            let progress = encrypt_columns(
                &db.open().await?,
                &stores,
                &table,
                &columns,
                &cek,
                batches.batch_rows,
                batches.max_batches,
            )
            .await?;
            report("encrypted", &table, progress);
        }
        Command::DecryptColumns {
            db,
            table,
            columns,
            batches,
            keys,
        } => {
            let stores = keys.stores().await?;
            let progress = decrypt_columns(
                &db.open().await?,
                &stores,
                &table,
                &columns,
                batches.batch_rows,
                batches.max_batches,
            )
            .await?;
            report("decrypted", &table, progress);
        }
        Command::Show { db } => {
            print!(
                "{}",
                describe_catalog(&catalog::load(&db.open().await?).await?)
            );
        }
        Command::Sample(SampleCommand::Contoso {
            db,
            rows,
            cek,
            key_path,
            keys,
        }) => {
            let conn = db.open().await?;
            let existing = catalog::load(&conn).await?;
            let has_cek = existing.ceks.iter().any(|k| k.name == cek);
            let stores = keys.stores().await?;
            if !has_cek {
                let key_path = key_path.as_deref().with_context(|| {
                    format!("column encryption key {cek} does not exist: give --key-path FILE.pem|cas:KEYID to create it")
                })?;
                let (provider, path) = key_location(key_path);
                let cmk = "ContosoCMK";
                if existing.cmk(cmk).is_err() {
                    create_cmk(&conn, &stores, cmk, provider, path).await?;
                }
                create_cek(&conn, &stores, &cek, cmk).await?;
            }
            let rows = create_contoso(&db.url()?, &stores, &cek, rows).await?;
            println!(
                "created table Employees with {rows} rows (SSN deterministic, Salary randomized, key {cek})"
            );
        }
    }
    Ok(())
}
