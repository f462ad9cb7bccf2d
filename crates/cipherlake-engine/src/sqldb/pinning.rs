//! Pinning a database's Always Encrypted metadata to a policy.
//!
//! The key catalog lives in the database, which is untrusted storage: whoever controls it could
//! point a column master key at a key they hold (the job would then encrypt results under the
//! attacker's key), or drop a column's row from `cipherlake_encrypted_columns` (the job would
//! read and write that column in plaintext). A [`DatabasePolicy`] is the trust anchor, like
//! SqlClient's `ColumnEncryptionTrustedMasterKeyPaths`: it is checked right after the catalog is
//! loaded, before any key is unwrapped and before any row is read or written.
//!
//! Key paths are spelled as `cipherlake ae create-cmk --key-path` takes them: `cas:KEYID` for a
//! CAS-held key, a PEM file path (or `local:PATH`) for the `local` store.

use std::collections::BTreeSet;
use std::fmt;

use super::catalog::Catalog;
use super::error::SqlDbError;
use super::keystore::{CAS_PROVIDER, LOCAL_PROVIDER};
use super::schema::{ColumnKind, TableDef};

/// A column that must be encrypted, optionally with a given column encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredColumn {
    /// The table, as the database spells it.
    pub table: String,
    /// The column, as the database spells it.
    pub column: String,
    /// The column encryption key's name, if the policy requires a specific one.
    pub cek: Option<String>,
}

/// What a job trusts in a database's key catalog.
///
/// [`DatabasePolicy::default`] trusts nothing: no key path, no local keys (an attested job
/// whose policy lists no key path can read only plaintext columns). The ad-hoc path (people
/// running `cipherlake sql --database` outside a TEE) uses [`DatabasePolicy::unrestricted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePolicy {
    /// The key paths of trusted column master keys (`cas:KEYID`, a PEM path or `local:PATH`).
    /// Every column master key that wraps a key of an encrypted column must have one of them;
    /// empty: no column master key is trusted. Not enforced for
    /// [`DatabasePolicy::unrestricted`].
    pub trusted_key_paths: Vec<String>,
    /// Columns that must exist and be marked encrypted in the catalog.
    pub required_columns: Vec<RequiredColumn>,
    /// Whether column master keys of the `local` (PEM file) store may be used at all.
    pub allow_local_keys: bool,
    /// Whether `trusted_key_paths` is enforced (false only for `unrestricted`).
    pin_key_paths: bool,
}

impl Default for DatabasePolicy {
    /// Trusts no key path and no local key, requires no column.
    fn default() -> Self {
        Self::pinned(Vec::new(), Vec::new(), false)
    }
}

impl DatabasePolicy {
    /// Trusts whatever the catalog says (any key path, local keys allowed, no column
    /// required): today's behaviour, for people running ad-hoc SQL outside a TEE on databases
    /// they control.
    pub fn unrestricted() -> Self {
        Self {
            trusted_key_paths: Vec::new(),
            required_columns: Vec::new(),
            allow_local_keys: true,
            pin_key_paths: false,
        }
    }

    /// The policy of an attested job: only `trusted_key_paths` are trusted (none when empty),
    /// `required_columns` must be encrypted, local keys only if `allow_local_keys`.
    pub fn pinned(
        trusted_key_paths: Vec<String>,
        required_columns: Vec<RequiredColumn>,
        allow_local_keys: bool,
    ) -> Self {
        Self {
            trusted_key_paths,
            required_columns,
            allow_local_keys,
            pin_key_paths: true,
        }
    }

    fn trusts(&self, provider: &str, key_path: &str) -> bool {
        !self.pin_key_paths
            || self
                .trusted_key_paths
                .iter()
                .any(|t| parse_key_path(t) == (provider, key_path))
    }

    /// Checks the catalog of database `database` (the schema name): the column master keys of
    /// every encrypted column's key, and that every required column is marked encrypted (with
    /// its CEK). Run before any key is unwrapped.
    pub fn check_catalog(&self, database: &str, catalog: &Catalog) -> Result<(), SqlDbError> {
        let mut violations = Vec::new();
        // Each (CMK, CEK) pair once, with the first column that uses it.
        let mut seen = BTreeSet::new();
        for column in &catalog.columns {
            // Every value of the CEK: unwrapping takes one of them, and a value added under
            // an attacker's key must not be the one taken.
            for value in catalog.ceks.iter().filter(|v| v.name == column.cek) {
                if !seen.insert((value.column_master_key.as_str(), value.name.as_str())) {
                    continue;
                }
                // A CMK missing from the catalog is refused when the CEK is unwrapped.
                let Some(cmk) = catalog
                    .cmks
                    .iter()
                    .find(|k| k.name == value.column_master_key)
                else {
                    continue;
                };
                let usage = Usage {
                    cmk: cmk.name.clone(),
                    key_path: spell_key_path(&cmk.provider, &cmk.key_path),
                    cek: value.name.clone(),
                    column: format!("{}.{}", column.table, column.column),
                };
                if cmk.provider == LOCAL_PROVIDER && !self.allow_local_keys {
                    violations.push(PolicyViolation::LocalKey(usage.clone()));
                }
                if !self.trusts(&cmk.provider, &cmk.key_path) {
                    violations.push(PolicyViolation::UntrustedKeyPath {
                        usage,
                        trusted: self.trusted_key_paths.clone(),
                    });
                }
            }
        }
        for required in &self.required_columns {
            let column = format!("{}.{}", required.table, required.column);
            match catalog.column(&required.table, &required.column) {
                None => violations.push(PolicyViolation::NotEncrypted {
                    column,
                    cek: required.cek.clone(),
                }),
                Some(enc) => {
                    if let Some(cek) = &required.cek
                        && *cek != enc.cek
                    {
                        violations.push(PolicyViolation::WrongCek {
                            column,
                            required: cek.clone(),
                            actual: enc.cek.clone(),
                        });
                    }
                }
            }
        }
        refuse(database, violations)
    }

    /// Checks that every required column exists in the described tables of database
    /// `database` as an encrypted column (its catalog row alone does not make it a column).
    pub(crate) fn check_tables(
        &self,
        database: &str,
        tables: &[TableDef],
    ) -> Result<(), SqlDbError> {
        let mut violations = Vec::new();
        for required in &self.required_columns {
            let table = tables.iter().find(|t| t.name == required.table);
            let column = table.and_then(|t| t.columns.iter().find(|c| c.name == required.column));
            let encrypted = column.is_some_and(|c| matches!(c.kind, ColumnKind::Encrypted(_)));
            if !encrypted {
                violations.push(PolicyViolation::MissingColumn {
                    table: required.table.clone(),
                    column: required.column.clone(),
                    table_exists: table.is_some(),
                    column_exists: column.is_some(),
                });
            }
        }
        refuse(database, violations)
    }
}

fn refuse(database: &str, violations: Vec<PolicyViolation>) -> Result<(), SqlDbError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SqlDbError::Policy {
            database: database.to_owned(),
            violations,
        })
    }
}

/// A trusted key path as (provider, key path in the store): `cas:KEYID`, `local:PATH`, or a
/// PEM file path.
fn parse_key_path(spelled: &str) -> (&str, &str) {
    for provider in [CAS_PROVIDER, LOCAL_PROVIDER] {
        if let Some(path) = spelled
            .strip_prefix(provider)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            return (provider, path);
        }
    }
    (LOCAL_PROVIDER, spelled)
}

/// A CMK's key path spelled as the policy spells it (the inverse of [`parse_key_path`]).
fn spell_key_path(provider: &str, key_path: &str) -> String {
    if provider == LOCAL_PROVIDER && parse_key_path(key_path) == (LOCAL_PROVIDER, key_path) {
        key_path.to_owned()
    } else {
        format!("{provider}:{key_path}")
    }
}

/// A column master key as an encrypted column uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The column master key's name.
    pub cmk: String,
    /// Its key path, spelled as in a policy (`cas:KEYID`, a PEM path).
    pub key_path: String,
    /// The column encryption key it wraps.
    pub cek: String,
    /// The first `table.column` encrypted with that CEK.
    pub column: String,
}

/// One way a database's catalog breaks its [`DatabasePolicy`]. Messages name keys and paths,
/// never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    /// A column master key's key path is not in `trusted_key_paths`.
    UntrustedKeyPath {
        /// The key and the column that uses it.
        usage: Usage,
        /// The policy's trusted key paths.
        trusted: Vec<String>,
    },
    /// A column master key is in the `local` store and the policy does not allow local keys.
    LocalKey(Usage),
    /// A required column (`table.column`) has no row in the catalog's encrypted columns.
    NotEncrypted {
        /// `table.column`.
        column: String,
        /// The CEK the policy requires, if any.
        cek: Option<String>,
    },
    /// A required column is encrypted with another CEK than the policy's.
    WrongCek {
        /// `table.column`.
        column: String,
        /// The policy's CEK.
        required: String,
        /// The catalog's CEK.
        actual: String,
    },
    /// A required column is not an (encrypted) column of the database's tables.
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Whether the table exists.
        table_exists: bool,
        /// Whether the column exists (then it was not read as encrypted).
        column_exists: bool,
    },
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyViolation::UntrustedKeyPath { usage, trusted } => {
                let trusted = if trusted.is_empty() {
                    "none".to_owned()
                } else {
                    trusted.join(", ")
                };
                write!(
                    f,
                    "column master key {} has key path {}, which the policy does not trust \
                     (trusted: {trusted}); it wraps CEK {} of {}",
                    usage.cmk, usage.key_path, usage.cek, usage.column
                )
            }
            PolicyViolation::LocalKey(usage) => write!(
                f,
                "column master key {} is in the local key store (key path {}), which the policy \
                 does not allow (local_keys: false); it wraps CEK {} of {}",
                usage.cmk, usage.key_path, usage.cek, usage.column
            ),
            PolicyViolation::NotEncrypted { column, cek } => {
                let with = cek
                    .as_ref()
                    .map(|c| format!(" (with {c})"))
                    .unwrap_or_default();
                write!(
                    f,
                    "the policy requires {column} to be encrypted{with}, but the catalog does \
                     not mark it encrypted"
                )
            }
            PolicyViolation::WrongCek {
                column,
                required,
                actual,
            } => write!(
                f,
                "the policy requires {column} to be encrypted with {required}, but the catalog \
                 encrypts it with {actual}"
            ),
            PolicyViolation::MissingColumn {
                table,
                column,
                table_exists,
                column_exists,
            } => {
                let why = match (table_exists, column_exists) {
                    (false, _) => format!("the database has no table {table}"),
                    (true, false) => format!("table {table} has no column {column}"),
                    (true, true) => "it is not read as an encrypted column".to_owned(),
                };
                write!(
                    f,
                    "the policy requires {table}.{column} to be encrypted, but {why}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip_and_do_not_alias_across_providers() {
        assert_eq!(parse_key_path("cas:results-cmk"), ("cas", "results-cmk"));
        assert_eq!(parse_key_path("/keys/cmk.pem"), ("local", "/keys/cmk.pem"));
        assert_eq!(
            parse_key_path("local:/keys/cmk.pem"),
            ("local", "/keys/cmk.pem")
        );
        assert_eq!(parse_key_path("cascade.pem"), ("local", "cascade.pem"));
        // A local PEM file named like a CAS key id is spelled with its provider.
        assert_eq!(
            spell_key_path("local", "cas:results-cmk"),
            "local:cas:results-cmk"
        );
        assert_eq!(spell_key_path("local", "/k.pem"), "/k.pem");
        assert_eq!(spell_key_path("cas", "results-cmk"), "cas:results-cmk");
        let policy = DatabasePolicy::pinned(vec!["cas:results-cmk".into()], vec![], true);
        assert!(policy.trusts("cas", "results-cmk"));
        assert!(!policy.trusts("local", "cas:results-cmk"));
        assert!(!policy.trusts("cas", "RESULTS-CMK"));
        assert!(DatabasePolicy::unrestricted().trusts("local", "/anything.pem"));
        assert!(!DatabasePolicy::default().trusts("cas", "results-cmk"));
    }
}
