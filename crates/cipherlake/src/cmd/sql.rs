//! `cipherlake sql`: SQL over Parquet, CSV and Delta Lake tables.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cipherlake_engine::output::{OutputFormat, write_batches};
use cipherlake_engine::script::run_script;
use cipherlake_engine::session::{SessionOptions, new_session};
use cipherlake_engine::stores::StoreConfig;
use cipherlake_engine::tables::{TableSpec, register_table};

/// Run SQL over Parquet, CSV and Delta Lake tables.
///
/// Tables come from --table or from CREATE EXTERNAL TABLE statements in the script. A script may
/// hold several statements separated by `;` (CREATE EXTERNAL TABLE, SELECT, COPY … TO, SET …).
/// Identifiers are case-sensitive: write `VendorID` as the schema spells it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A table: NAME=PATH_OR_URL, a Parquet file or directory, a CSV file (with a header row)
    /// or a Delta Lake table directory; local paths or file:// URLs. Repeatable.
    #[arg(long = "table", value_name = "NAME=PATH_OR_URL")]
    tables: Vec<TableSpec>,
    /// A SQL database: NAME=URL (postgres://USER:PASSWORD@HOST:PORT/DB or sqlite:PATH). Every
    /// user table becomes NAME.table; Always Encrypted columns are decrypted inside the engine
    /// and INSERT INTO NAME.table encrypts them (column master keys in local PEM files).
    /// Repeatable.
    #[arg(long = "database", value_name = "NAME=URL")]
    databases: Vec<cipherlake_engine::sqldb::url::UrlArg>,
    /// Output format for result rows.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// Read the SQL script from this file instead of the command line.
    #[arg(long, short = 'f', conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// Encrypted files are read with no options once a KMS is given; write them with
    /// COPY … TO … OPTIONS ('format.crypto.factory_options.footer_key' 'ID',
    /// 'format.crypto.factory_options.column_keys' 'ID:col1,col2;ID2:col3').
    #[command(flatten)]
    kms: super::workload::KmsArgs,
    /// The SQL to run.
    sql: Option<String>,
}

/// Runs `cipherlake sql`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let sql = match (&args.sql, &args.file) {
        (Some(sql), None) => sql.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        _ => bail!("give the SQL as an argument or with --file FILE"),
    };
    let format: OutputFormat = args.format.parse().map_err(anyhow::Error::msg)?;
    let opened = args.kms.open_with_user()?;
    let ctx = new_session(&SessionOptions {
        kms: opened.kms,
        stores: StoreConfig::from_env(),
        ..SessionOptions::default()
    });
    for table in &args.tables {
        let kind = register_table(&ctx, table).await?;
        tracing::info!(table = %table.name, ?kind, "registered table");
    }
    let mut key_stores = cipherlake_engine::sqldb::KeyStores::default();
    if let Some(cas) = opened.cas_user {
        key_stores = key_stores.with(Arc::new(cipherlake_engine::sqldb::CasKeyStore::new(cas)));
    }
    for database in &args.databases {
        let database: cipherlake_engine::sqldb::DatabaseSpec = database.0.parse()?;
        let tables =
            cipherlake_engine::sqldb::register_database(&ctx, &database, &key_stores).await?;
        tracing::info!(database = %database.name, ?tables, "registered database");
    }
    let stdout = std::io::stdout();
    run_script(&ctx, &sql, &mut |output| {
        if output.has_columns {
            let mut out = stdout.lock();
            write_batches(format, &output.batches, &mut out)?;
            out.flush()
                .map_err(|e| cipherlake_engine::EngineError::Output(e.to_string()))?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}
