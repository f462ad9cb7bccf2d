//! `cipherlake sql`: SQL over Parquet, CSV and Delta Lake tables.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cipherlake_engine::output::{OutputFormat, write_batches};
use cipherlake_engine::script::run_script;
use cipherlake_engine::session::{SessionOptions, new_session};
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
    /// Output format for result rows.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// Read the SQL script from this file instead of the command line.
    #[arg(long, short = 'f', conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// The KMS for encrypted Parquet: local:FILE (a parquet-java style master key list,
    /// ID:BASE64 entries) or cas:URL. Encrypted files are then read with no options; write
    /// them with COPY … TO … OPTIONS ('format.crypto.factory_options.footer_key' 'ID',
    /// 'format.crypto.factory_options.column_keys' 'ID:col1,col2;ID2:col3').
    #[arg(long, env = "CIPHERLAKE_KMS", value_name = "SPEC")]
    kms: Option<String>,
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
    let kms = args
        .kms
        .as_deref()
        .map(cipherlake_engine::encryption::open_kms)
        .transpose()?;
    let ctx = new_session(&SessionOptions {
        kms,
        ..SessionOptions::default()
    });
    for table in &args.tables {
        let kind = register_table(&ctx, table).await?;
        tracing::info!(table = %table.name, ?kind, "registered table");
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
