//! Registering tables from `NAME=PATH_OR_URL`: Parquet files or directories, CSV files, and
//! Delta Lake tables (a directory with `_delta_log`), from local paths or `file://` URLs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use url::Url;

use crate::error::{EngineError, one_line};

/// CSV files up to this size are loaded into memory when registered, so the planner knows their
/// row count (a small dimension table then becomes the build side of a join, not the probe).
const IN_MEMORY_CSV_BYTES: u64 = 64 * 1024 * 1024;

/// A `--table NAME=PATH_OR_URL` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table name used in SQL.
    pub name: String,
    /// A local path or a `file://` URL.
    pub location: String,
}

impl FromStr for TableSpec {
    type Err = EngineError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| EngineError::TableArg {
            arg: arg.to_string(),
            reason: reason.to_string(),
        };
        let (name, location) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=PATH_OR_URL"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("the name must be letters, digits and underscores"));
        }
        if location.trim().is_empty() {
            return Err(bad("the location is empty"));
        }
        Ok(Self {
            name: name.to_string(),
            location: location.trim().to_string(),
        })
    }
}

/// The kinds of table a location can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// A Parquet file or a directory of `.parquet` files.
    Parquet,
    /// A CSV file with a header row, or a directory of `.csv` files.
    Csv,
    /// A Delta Lake table.
    Delta,
}

impl TableSpec {
    fn error(&self, reason: impl Into<String>) -> EngineError {
        EngineError::Table {
            table: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// The local path this table's location names.
    pub fn local_path(&self) -> Result<PathBuf, EngineError> {
        // A one-letter "scheme" is a Windows drive letter, not a URL.
        let url = Url::parse(&self.location)
            .ok()
            .filter(|u| u.scheme().len() > 1);
        match url {
            Some(url) if url.scheme() == "file" => url
                .to_file_path()
                .map_err(|()| self.error(format!("'{}' is not a valid file URL", self.location))),
            Some(url) => Err(self.error(format!(
                "unsupported URL scheme '{}' (supported: local paths and file://)",
                url.scheme()
            ))),
            None => Ok(PathBuf::from(&self.location)),
        }
    }

    /// Detects the table's format from what is at its location.
    pub fn detect_format(&self, path: &Path) -> Result<TableFormat, EngineError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| self.error(format!("cannot open {}: {e}", path.display())))?;
        if meta.is_file() {
            return match extension(path).as_deref() {
                Some("parquet") => Ok(TableFormat::Parquet),
                Some("csv") => Ok(TableFormat::Csv),
                _ => Err(self.error(format!(
                    "{}: unknown file type (expected .parquet or .csv)",
                    path.display()
                ))),
            };
        }
        if path.join("_delta_log").is_dir() {
            return Ok(TableFormat::Delta);
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| self.error(format!("cannot list {}: {e}", path.display())))?;
        let mut extensions = Vec::new();
        for entry in entries.flatten() {
            let p = entry.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(['.', '_']));
            if !hidden {
                extensions.extend(extension(&p));
            }
        }
        if extensions.iter().any(|e| e == "parquet") {
            Ok(TableFormat::Parquet)
        } else if extensions.iter().any(|e| e == "csv") {
            Ok(TableFormat::Csv)
        } else {
            Err(self.error(format!(
                "{} holds no .parquet or .csv files and is not a Delta table",
                path.display()
            )))
        }
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Registers `spec` in `ctx`, detecting its format.
pub async fn register_table(
    ctx: &SessionContext,
    spec: &TableSpec,
) -> Result<TableFormat, EngineError> {
    let path = spec.local_path()?;
    let format = spec.detect_format(&path)?;
    let fail = |e: datafusion::error::DataFusionError| spec.error(one_line(&e));
    let location = path.to_string_lossy().to_string();
    match format {
        TableFormat::Parquet => ctx
            .register_parquet(&spec.name, &location, ParquetReadOptions::default())
            .await
            .map_err(fail)?,
        TableFormat::Csv => register_csv(ctx, spec, &path).await?,
        TableFormat::Delta => {
            let url = Url::from_directory_path(
                std::path::absolute(&path).map_err(|e| spec.error(e.to_string()))?,
            )
            .map_err(|()| spec.error(format!("{} is not an absolute path", path.display())))?;
            let table = deltalake::open_table(url)
                .await
                .map_err(|e| spec.error(format!("opening Delta table {}: {e}", path.display())))?;
            let provider = table
                .table_provider()
                .with_session(Arc::new(ctx.state()))
                .await
                .map_err(|e| spec.error(format!("opening Delta table {}: {e}", path.display())))?;
            ctx.register_table(spec.name.as_str(), provider)
                .map_err(fail)?;
        }
    }
    Ok(format)
}

async fn register_csv(
    ctx: &SessionContext,
    spec: &TableSpec,
    path: &Path,
) -> Result<(), EngineError> {
    let fail = |e: datafusion::error::DataFusionError| spec.error(one_line(&e));
    let location = path.to_string_lossy().to_string();
    let small =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= IN_MEMORY_CSV_BYTES);
    if !small {
        return ctx
            .register_csv(&spec.name, &location, CsvReadOptions::new())
            .await
            .map_err(fail);
    }
    let df = ctx
        .read_csv(&location, CsvReadOptions::new())
        .await
        .map_err(fail)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(fail)?;
    let table = MemTable::try_new(schema, vec![batches]).map_err(fail)?;
    ctx.register_table(spec.name.as_str(), Arc::new(table))
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_arguments() {
        let spec: TableSpec = "trips=/data/trips".parse().unwrap();
        assert_eq!(spec.name, "trips");
        assert_eq!(spec.location, "/data/trips");
        assert!(matches!(
            "trips".parse::<TableSpec>(),
            Err(EngineError::TableArg { .. })
        ));
        assert!(matches!(
            "=x".parse::<TableSpec>(),
            Err(EngineError::TableArg { .. })
        ));
        assert!(matches!(
            "a b=x".parse::<TableSpec>(),
            Err(EngineError::TableArg { .. })
        ));
        assert!(matches!(
            "t=".parse::<TableSpec>(),
            Err(EngineError::TableArg { .. })
        ));
    }

    #[test]
    fn resolves_file_urls_and_refuses_other_schemes() {
        let spec: TableSpec = "t=file:///tmp/x.parquet".parse().unwrap();
        assert_eq!(spec.local_path().unwrap(), PathBuf::from("/tmp/x.parquet"));
        let spec: TableSpec = "t=gopher://host/x".parse().unwrap();
        let err = spec.local_path().unwrap_err().to_string();
        assert!(err.contains("unsupported URL scheme 'gopher'"), "{err}");
    }
}
