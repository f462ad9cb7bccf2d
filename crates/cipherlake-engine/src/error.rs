//! Engine errors: each names what was wrong (table, path, statement) in one line.

use datafusion::error::DataFusionError;

/// An error from registering tables or running SQL.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A `--table NAME=LOCATION` argument is malformed.
    #[error("bad table argument '{arg}': {reason}")]
    TableArg {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A table's location cannot be used.
    #[error("table '{table}': {reason}")]
    Table {
        /// The table name.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// The SQL text does not parse.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// A statement failed to plan or execute.
    #[error("statement {index} ({summary}): {message}")]
    Statement {
        /// 1-based position of the statement in the script.
        index: usize,
        /// The statement's first characters.
        summary: String,
        /// DataFusion's message.
        message: String,
    },
    /// Any other DataFusion failure.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// A cloud storage setting (`AZURE_*`, `AWS_*`) that object_store does not know.
    #[error(
        "unknown storage setting {name} (see object_store's AzureConfigKey / AmazonS3ConfigKey names)"
    )]
    StoreSetting {
        /// The setting's name (never its value).
        name: String,
    },
    /// Writing output failed.
    #[error("writing output: {0}")]
    Output(String),
}

/// DataFusion's message without its nested "Error during planning:" style prefixes repeated,
/// on one line.
pub fn one_line(e: &DataFusionError) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
