//! The policy document as written by the data custodian (`apiVersion: cipherlake/v1`).
//!
//! These types are the result of parsing only; [`crate::Policy`] is a document that also passed
//! validation and carries its hash. Unknown fields are rejected everywhere, so typos are caught.

use std::collections::BTreeMap;
use std::fmt;

use cipherlake_attest::Tee;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::digest::Digest;
use crate::hash::PolicyHash;
use crate::keys::PublicKey;
use crate::keyword::{Console, Named, SecretKind, Tolerance};

/// The schema version line, `apiVersion: cipherlake/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiVersion {
    /// `cipherlake/v1`.
    #[serde(rename = "cipherlake/v1")]
    V1,
}

/// A policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Schema version: `cipherlake/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// The policy's name; versions of one policy share it.
    pub name: String,
    /// Hash of the version this one replaces; `null` (or absent) for the first version.
    #[serde(default)]
    pub predecessor: Option<PolicyHash>,
    /// Public keys that may read this policy and sign its next version.
    pub owners: Vec<PublicKey>,
    /// Which TEEs are accepted and which platform deviations are tolerated.
    pub attestation: Attestation,
    /// The workloads this policy admits, by service name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Secrets and keys, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
}

/// Platform requirements common to all services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// Accepted TEEs: `sim`, `sgx`, `tdx`, `sev-snp`, `azure`. Simulation must be listed
    /// explicitly.
    pub tees: Vec<Named<Tee>>,
    /// Tolerated deviations: `debug`, `outdated-tcb`, `sw-hardening-needed`,
    /// `configuration-needed`. Each is refused unless listed.
    #[serde(default)]
    pub tolerate: Vec<Named<Tolerance>>,
    /// Sim only: LAS platform public keys accepted for every service (empty: any platform the
    /// CAS has registered).
    #[serde(default)]
    pub platforms: Vec<PublicKey>,
    /// Evidence carrying a timestamp older than this many seconds is refused (default: no
    /// limit beyond the CAS's nonce lifetime).
    #[serde(default)]
    pub max_evidence_age: Option<u64>,
}

/// A workload the policy admits (a driver, a worker, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Accepted code measurements (MRENCLAVE, MRTD, SNP launch digest, sim executable hash).
    #[serde(default)]
    pub measurements: Vec<Digest>,
    /// Accepted code signers (SGX MRSIGNER, SNP author/ID key digest).
    #[serde(default)]
    pub signers: Vec<Digest>,
    /// Required SGX ISV product id.
    #[serde(default)]
    pub product_id: Option<u16>,
    /// Minimum security version (SGX ISV SVN, SNP guest SVN, sim SVN).
    #[serde(default)]
    pub min_svn: Option<u32>,
    /// Sim only: LAS platform keys accepted for this service (in addition to the policy-wide
    /// list, which also applies).
    #[serde(default)]
    pub platforms: Vec<PublicKey>,
    /// Allow-listed job-file hashes (`sha256:HEX`). Empty: the service runs without a job file
    /// and a request naming one is refused.
    #[serde(default)]
    pub jobs: Vec<Digest>,
    /// Environment variables (templates).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Command-line arguments (templates).
    #[serde(default)]
    pub args: Vec<String>,
    /// Files by absolute path, with their content (templates).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Secrets of key kinds the service may use through the CAS KMS.
    #[serde(default)]
    pub kms_keys: Vec<String>,
    /// What the job may print: `none` (default), `row-counts`, `full`.
    #[serde(default)]
    pub console: Named<Console>,
}

/// A secret or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// What the secret is.
    pub kind: Named<SecretKind>,
    /// Inline value (`ascii`: the text; `binary`, `aes-256`: base64). Prefer `generate` or an
    /// upload to the CAS: an inline value is part of the policy text.
    #[serde(default)]
    pub value: Option<SecretText>,
    /// The CAS generates the value when the policy is first applied.
    #[serde(default)]
    pub generate: bool,
    /// `binary` with `generate`: number of random bytes (default 32).
    #[serde(default)]
    pub size: Option<u32>,
    /// Other policies that may import this secret.
    #[serde(default)]
    pub export_to: Vec<Export>,
    /// The value comes from another policy's exported secret.
    #[serde(default)]
    pub import_from: Option<Import>,
    /// `x509`: the `x509-ca` secret that issues the certificate.
    #[serde(default)]
    pub ca: Option<String>,
    /// `x509`, `x509-ca`: the certificate's subject common name.
    #[serde(default)]
    pub common_name: Option<String>,
    /// `x509`: DNS subject alternative names.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `x509`, `x509-ca`: certificate validity in days.
    #[serde(default)]
    pub valid_days: Option<u32>,
}

/// Permission for another policy to import a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The importing policy's name.
    pub policy: String,
    /// The importing policy's secret name that may receive it (default: any).
    #[serde(default)]
    pub secret: Option<String>,
}

/// Where an imported secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// The exporting policy's name.
    pub policy: String,
    /// The secret's name in the exporting policy.
    pub secret: String,
}

/// An inline secret value: zeroized on drop, compared in constant time, never printed by
/// `Debug`.
#[derive(Clone)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the CAS to store (encrypted) or decode.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(redacted)")
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretText {}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}
