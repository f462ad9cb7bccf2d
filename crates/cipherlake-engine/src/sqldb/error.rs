//! Errors of SQL database access: each names the database (URL without password), table,
//! column or key concerned, and never carries a password, key or plaintext value.

use datafusion::error::DataFusionError;

use super::pinning::PolicyViolation;

fn join(violations: &[PolicyViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error reading or writing a SQL database, or managing its Always Encrypted keys.
#[derive(Debug, thiserror::Error)]
pub enum SqlDbError {
    /// The connection URL is malformed or names an unsupported database.
    #[error("bad database URL {url}: {reason}")]
    Url {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The database could not be opened or connected to.
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// The driver's reason.
        reason: String,
    },
    /// A statement failed.
    #[error("{context}: {reason}")]
    Database {
        /// What was being done (naming the table).
        context: String,
        /// The driver's reason.
        reason: String,
    },
    /// A column's value, type or encryption metadata is unusable.
    #[error("table {table}, column {column}: {reason}")]
    Column {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// A column master key or column encryption key is unusable.
    #[error("{kind} {name}: {reason}")]
    Key {
        /// `column master key` or `column encryption key`.
        kind: &'static str,
        /// The key's name in the catalog.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The database's key catalog breaks the job's [`DatabasePolicy`](super::DatabasePolicy):
    /// refused before any key is unwrapped or any row read or written.
    #[error("database {database}: {}", join(violations))]
    Policy {
        /// The database (schema) name.
        database: String,
        /// Every violation found.
        violations: Vec<PolicyViolation>,
    },
    /// Any other invalid request.
    #[error("{0}")]
    Invalid(String),
}

impl SqlDbError {
    /// A [`SqlDbError::Column`] error.
    pub fn column(table: &str, column: &str, reason: impl std::fmt::Display) -> Self {
        SqlDbError::Column {
            table: table.to_owned(),
            column: column.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// A [`SqlDbError::Database`] error.
    pub fn database(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        SqlDbError::Database {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// A [`SqlDbError::Key`] error about a column master key.
    pub fn cmk(name: &str, reason: impl std::fmt::Display) -> Self {
        SqlDbError::Key {
            kind: "column master key",
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// A [`SqlDbError::Key`] error about a column encryption key.
    pub fn cek(name: &str, reason: impl std::fmt::Display) -> Self {
        SqlDbError::Key {
            kind: "column encryption key",
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl From<SqlDbError> for DataFusionError {
    fn from(e: SqlDbError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}
