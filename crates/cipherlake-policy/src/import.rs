//! Secrets shared between policies: the check the CAS runs when it resolves an `import_from`.
//!
//! Each policy is validated on its own; whether an import is allowed depends on both policies,
//! so the CAS calls [`check_import`] with the current versions of the importer and the exporter
//! whenever it releases an imported secret.

use crate::model::{Export, Import};
use crate::policy::Policy;

/// Why an imported secret cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The importer has no such secret, or it is not imported.
    #[error("policy {policy:?} has no imported secret {secret:?}")]
    NotAnImport {
        /// The importing policy.
        policy: String,
        /// The secret.
        secret: String,
    },
    /// The exporter given is not the policy the import names.
    #[error("secret {secret:?} is imported from policy {expected:?}, not {found:?}")]
    WrongExporter {
        /// The importing secret.
        secret: String,
        /// The policy named by `import_from`.
        expected: String,
        /// The policy given.
        found: String,
    },
    /// The exporter has no such secret.
    #[error("policy {policy:?} has no secret {secret:?}")]
    NoSuchSecret {
        /// The exporting policy.
        policy: String,
        /// The secret.
        secret: String,
    },
    /// The exporter does not export the secret to the importer (under this name).
    #[error(
        "policy {exporter:?} does not export secret {secret:?} to policy {importer:?} as {name:?}"
    )]
    NotExported {
        /// The exporting policy.
        exporter: String,
        /// The exported secret.
        secret: String,
        /// The importing policy.
        importer: String,
        /// The importer's secret name.
        name: String,
    },
    /// The export names the importer, but the importer's owners or hash are not the pinned
    /// ones (a policy that took the name).
    #[error(
        "policy {exporter:?} exports secret {secret:?} to a policy named {importer:?}, but pinned to other owners or another version: this {importer:?} is not the one it trusts"
    )]
    NotPinned {
        /// The exporting policy.
        exporter: String,
        /// The exported secret.
        secret: String,
        /// The importing policy.
        importer: String,
    },
    /// The kinds differ.
    #[error("secret {name:?} is declared {declared}, but the exported secret is {exported}")]
    KindMismatch {
        /// The importer's secret name.
        name: String,
        /// The importer's declared kind.
        declared: String,
        /// The exporter's kind.
        exported: String,
    },
}

/// Checks that `importer`'s secret `name` may take its value from `exporter`: the import names
/// the exporter and one of its secrets, that secret lists the importer in `export_to` (with
/// this name, if the export names one), and both declare the same kind. Returns the import.
pub fn check_import<'a>(
    importer: &'a Policy,
    name: &str,
    exporter: &Policy,
) -> Result<&'a Import, ImportError> {
    let declared = importer.secret(name);
    let import = declared
        .and_then(|secret| secret.import_from.as_ref())
        .ok_or_else(|| ImportError::NotAnImport {
            policy: importer.name().to_string(),
            secret: name.to_string(),
        })?;
    if import.policy != exporter.name() {
        return Err(ImportError::WrongExporter {
            secret: name.to_string(),
            expected: import.policy.clone(),
            found: exporter.name().to_string(),
        });
    }
    let exported = exporter
        .secret(&import.secret)
        .ok_or_else(|| ImportError::NoSuchSecret {
            policy: exporter.name().to_string(),
            secret: import.secret.clone(),
        })?;
    let named: Vec<&Export> = exported
        .export_to
        .iter()
        .filter(|export| {
            export.policy == importer.name() && export.secret.as_deref().is_none_or(|s| s == name)
        })
        .collect();
    if named.is_empty() {
        return Err(ImportError::NotExported {
            exporter: exporter.name().to_string(),
            secret: import.secret.clone(),
            importer: importer.name().to_string(),
            name: name.to_string(),
        });
    }
    if !named.iter().any(|export| pins(export, importer)) {
        return Err(ImportError::NotPinned {
            exporter: exporter.name().to_string(),
            secret: import.secret.clone(),
            importer: importer.name().to_string(),
        });
    }
    let declared_kind = declared.map(|s| s.kind.to_string()).unwrap_or_default();
    let exported_kind = exported.kind.to_string();
    if declared_kind != exported_kind {
        return Err(ImportError::KindMismatch {
            name: name.to_string(),
            declared: declared_kind,
            exported: exported_kind,
        });
    }
    Ok(import)
}

/// Whether `export` pins `importer`: its hash is the pinned one, or every owner of it is a
/// pinned key. Listing a pinned key beside one's own is not enough: public keys are public,
/// so a squatter could name the victim's key as a co-owner. An export pinning neither (refused
/// by validation) pins nothing.
fn pins(export: &Export, importer: &Policy) -> bool {
    let by_hash = export.hash.is_some_and(|hash| hash == importer.hash());
    let by_owner = !export.owners.is_empty()
        && importer
            .owners()
            .iter()
            .all(|owner| export.owners.contains(owner));
    by_hash || by_owner
}
