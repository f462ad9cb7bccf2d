//! A validated policy version: the parsed document and its canonical hash.

use crate::hash::{CanonicalError, PolicyHash, canonical_hash};
use crate::keys::PublicKey;
use crate::model::{PolicySpec, SecretSpec, Service};
use crate::parse::{ParseError, SourceMap, from_yaml};
use crate::validate::{Invalid, validate};

/// Why a policy text is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not YAML, or not the schema (unknown field, wrong type, bad hex, ...).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// Parsed, but breaks the rules; every problem is listed.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The canonical form could not be produced (not expected for parsed policies).
    #[error("{0}")]
    Canonical(#[from] CanonicalError),
}

/// A policy version that parsed, passed validation and has its hash. Immutable: a change is a
/// new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    spec: PolicySpec,
    hash: PolicyHash,
}

impl Policy {
    /// Parses and validates a policy's YAML text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let spec: PolicySpec = from_yaml(text)?;
        validate(&spec, &SourceMap::build(text))?;
        Self::hashed(spec)
    }

    /// Validates a document built in code (issues then have no line numbers).
    pub fn from_spec(spec: PolicySpec) -> Result<Self, PolicyError> {
        validate(&spec, &SourceMap::default())?;
        Self::hashed(spec)
    }

    fn hashed(spec: PolicySpec) -> Result<Self, PolicyError> {
        let hash = canonical_hash(&spec)?;
        Ok(Self { spec, hash })
    }

    /// The document.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// This version's hash (of its canonical form).
    pub fn hash(&self) -> PolicyHash {
        self.hash
    }

    /// The hash of the version this one replaces (`None` for a first version).
    pub fn predecessor(&self) -> Option<PolicyHash> {
        self.spec.predecessor
    }

    /// Keys that may read this policy and sign its next version.
    pub fn owners(&self) -> &[PublicKey] {
        &self.spec.owners
    }

    /// Whether `key` is an owner of this version.
    pub fn is_owner(&self, key: &PublicKey) -> bool {
        self.spec.owners.contains(key)
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.spec.services.get(name)
    }

    /// A secret by name.
    pub fn secret(&self, name: &str) -> Option<&SecretSpec> {
        self.spec.secrets.get(name)
    }
}
