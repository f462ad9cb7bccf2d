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
use crate::identity::{SgxIdentity, SnpIdentity, TdxIdentity};
use crate::keys::PublicKey;
use crate::keyword::{Console, KmsRight, Named, Operation, SecretKind, Tolerance};

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
    /// The people and outside systems this policy grants rights to, by user name. They prove
    /// themselves by signatures of their keys, never by attestation.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
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
    /// DCAP evidence must have been judged with a TCB info of at least this TCB evaluation
    /// data number (Intel raises it with each TCB recovery): older collateral is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb_evaluation_data_number: Option<u32>,
    /// Collateral issued longer ago than this many seconds is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_collateral_age: Option<u64>,
}

/// A workload the policy admits (a driver, a worker, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The one operation the service admits (`run`, `worker`, `encrypt`, `serve`); evidence
    /// binding another operation is refused. Required: validation reports its absence.
    #[serde(default)]
    pub operation: Option<Named<Operation>>,
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
    /// vTPM kinds only: required SHA-256 PCR values by PCR index (0 to 23), for example 4, 7
    /// and 11 for the boot chain or 8 for init data. Evidence without PCRs is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pcrs: BTreeMap<u8, Digest>,
    /// SGX identity beyond MRENCLAVE and MRSIGNER (KSS config id and SVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgx: Option<SgxIdentity>,
    /// TDX identity: MRTD, RTMRs, MRCONFIGID, owner fields, TDX module, attributes, TCB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxIdentity>,
    /// SEV-SNP identity: measurement, HOST_DATA, key digests, ids, VMPL, TCB, guest SVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sev_snp: Option<SnpIdentity>,
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
    /// KMS keys the service may use through the CAS KMS, and how.
    #[serde(default)]
    pub kms_keys: KmsGrants,
    /// What the job may print: `none` (default), `row-counts`, `full`. Only for `run`.
    #[serde(default)]
    pub console: Named<Console>,
    /// Sim only: `cipherlake attest` may print this service's released values (debugging a
    /// policy). Otherwise it prints names and sizes.
    #[serde(default)]
    pub debug: bool,
    /// SQL databases with Always Encrypted columns the job opens (`DATABASE_NAME` variables),
    /// by lower-case name: the column master key paths trusted and the columns that must be
    /// encrypted. A database not listed here opens with no trusted key path.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabasePin>,
}

impl Service {
    /// Whether the service pins the code it admits: a measurement or a signer of any TEE.
    pub fn pins_code(&self) -> bool {
        !self.measurements.is_empty()
            || !self.signers.is_empty()
            || self.tdx.as_ref().is_some_and(|t| !t.mr_td.is_empty())
            || self
                .sev_snp
                .as_ref()
                .is_some_and(|s| !s.measurement.is_empty() || s.pins_signer())
    }

    /// The declared operation, if it is a known one.
    pub fn operation(&self) -> Option<Operation> {
        self.operation.as_ref().and_then(Named::known)
    }
}

/// A person or outside system with rights under a policy (MarbleRun's Users with Roles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's ed25519 public key (`cipherlake policy keygen` makes one). Requests are
    /// signed with it over a fresh CAS nonce and the request.
    pub key: PublicKey,
    /// KMS keys the user may use, and how (e.g. a custodian unwraps results; an ingest tool
    /// only wraps).
    #[serde(default)]
    pub kms_keys: KmsGrants,
    /// May read the CAS audit log (`GET /v1/audit`).
    #[serde(default)]
    pub read_audit: bool,
    /// May read this policy's full document (without secret values), as owners can.
    #[serde(default)]
    pub read_policy: bool,
}

/// KMS grants: key (a secret name) → what may be done with it (`unwrap`, `wrap`).
///
/// Written `kms_keys: { taxi-footer: [unwrap], results-key: [wrap] }`. The old form, a list of
/// key names that allowed everything, is refused with a message naming the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KmsGrants(pub BTreeMap<String, Vec<Named<KmsRight>>>);

impl KmsGrants {
    /// Whether `key` is granted `right`.
    pub fn allows(&self, key: &str, right: KmsRight) -> bool {
        self.0
            .get(key)
            .is_some_and(|rights| rights.contains(&Named::Known(right)))
    }

    /// The granted keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

impl<'de> Deserialize<'de> for KmsGrants {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GrantsVisitor;
        impl<'de> serde::de::Visitor<'de> for GrantsVisitor {
            type Value = KmsGrants;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of key names to rights, e.g. { taxi-footer: [unwrap] }")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<KmsGrants, A::Error> {
                Err(serde::de::Error::custom(
                    "a list of key names is the old form of kms_keys, which allowed every use; \
                     say what each key allows: kms_keys: { KEY: [unwrap], OTHER: [wrap] }",
                ))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<KmsGrants, A::Error> {
                BTreeMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(KmsGrants)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<KmsGrants, E> {
                Ok(KmsGrants::default())
            }
        }
        deserializer.deserialize_any(GrantsVisitor)
    }
}

/// What a service trusts of one SQL database's Always Encrypted catalog (SqlClient's
/// `ColumnEncryptionTrustedMasterKeyPaths`): the catalog is read from the database, which is
/// untrusted storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabasePin {
    /// Column master key paths the job may use, as the catalog spells them (`cas:KEY` for
    /// CAS-held keys). A CMK whose path is not listed stops the job before any row is read.
    #[serde(default)]
    pub trusted_key_paths: Vec<String>,
    /// Columns that must be encrypted (optionally with a named column encryption key).
    #[serde(default)]
    pub columns: Vec<RequiredColumn>,
    /// Whether column master keys in local PEM files may be used (default: no).
    #[serde(default)]
    pub local_keys: bool,
}

/// A column the catalog must mark encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredColumn {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The column encryption key it must use (any when absent).
    #[serde(default)]
    pub cek: Option<String>,
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

/// Permission for another policy to import a secret. The importer is pinned by its owners or
/// its hash, never by its name alone (names can be taken by anyone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The importing policy's name.
    pub policy: String,
    /// The importing policy's secret name that may receive it (default: any).
    #[serde(default)]
    pub secret: Option<String>,
    /// Keys of which at least one must own the importing policy's current version.
    #[serde(default)]
    pub owners: Vec<PublicKey>,
    /// The importing policy's exact version.
    #[serde(default)]
    pub hash: Option<PolicyHash>,
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
