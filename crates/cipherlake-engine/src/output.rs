//! Printing query results as a table, CSV or JSON lines.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::error::EngineError;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown format '{other}' (expected table, csv or json)"
            )),
        }
    }
}

fn output_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Output(e.to_string())
}

/// Writes `batches` to `out` in `format`.
pub fn write_batches(
    format: OutputFormat,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches(batches).map_err(output_err)?;
            writeln!(out, "{table}").map_err(output_err)
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            Ok(())
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(out);
            writer
                .write_batches(&batches.iter().collect::<Vec<_>>())
                .map_err(output_err)?;
            writer.finish().map_err(output_err)
        }
    }
}
