//! Semantic validation: everything the schema cannot say, every problem reported at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::digest::{Digest, DigestAlgorithm};
use crate::keyword::{Console, Keyword, KmsRight, Named, Operation, SecretKind};
use crate::model::{KmsGrants, PolicySpec, SecretSpec, SecretText, Service, User};
use crate::names::{MAX_NAME_LEN, file_path_problem, is_dns_name, is_env_name, is_name};
use crate::parse::{SourceMap, at_location};
use crate::path::{FieldPath, Location};
use crate::template::{Template, TemplateError, render_problem};

/// Largest `size` of a generated secret.
const MAX_GENERATED_SIZE: u32 = 65_536;

/// One problem found by validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {kind}", at_location(.location))]
pub struct Issue {
    /// The field concerned.
    pub path: FieldPath,
    /// Where it is in the text (the nearest written ancestor for absent fields).
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: IssueKind,
}

/// What validation can find wrong. Messages name the values concerned, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueKind {
    /// A policy, service or secret name breaks the naming rule.
    #[error(
        "invalid name {0:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-' or '_', starting with a letter or digit"
    )]
    InvalidName(String),
    /// `owners` is empty.
    #[error("list at least one owner key (ed25519:HEX)")]
    NoOwner,
    /// An owner key that cannot verify signatures.
    #[error("{0} is not a usable ed25519 public key (not a curve point, or a weak key)")]
    UnusableOwnerKey(String),
    /// `attestation.tees` is empty.
    #[error("list at least one TEE (sim, sgx, tdx, sev-snp or azure)")]
    NoTee,
    /// A word that is not a keyword of its field.
    #[error("unknown {field} {word:?} (expected {expected})")]
    UnknownKeyword {
        /// What kind of keyword (`TEE`, `tolerance`, ...).
        field: &'static str,
        /// The word as written.
        word: String,
        /// The accepted words.
        expected: &'static str,
    },
    /// The same entry twice in a list.
    #[error("duplicate {what} {value}")]
    Duplicate {
        /// What the list holds.
        what: &'static str,
        /// The repeated entry.
        value: String,
    },
    /// A digest whose length does not match its algorithm.
    #[error("{digest}: {problem}")]
    DigestLength {
        /// The digest as written (canonical spelling).
        digest: String,
        /// The length problem.
        problem: String,
    },
    /// A job hash that is not SHA-256.
    #[error("job hashes are SHA-256 (sha256:HEX, 32 bytes), found {0}")]
    JobNotSha256(String),
    /// A service that pins no code.
    #[error("a service must list at least one measurement or signer")]
    NoCodeIdentity,
    /// Platform keys listed although `sim` is not an accepted TEE.
    #[error(
        "platforms are LAS keys for sim evidence, but attestation.tees lists neither sim nor sim-vtpm"
    )]
    PlatformsWithoutSim,
    /// A TEE identity section although no TEE reporting those fields is accepted.
    #[error("{0} fields are pinned, but attestation.tees lists no TEE that reports them")]
    SectionWithoutTee(&'static str),
    /// A hex identity field of the wrong length.
    #[error("must be {expected} bytes ({} hex digits), found {found} bytes", expected * 2)]
    HexLength {
        /// The field's length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// `signers` on a service whose policy accepts SEV-SNP, which used to mean its key digests.
    #[error(
        "for SEV-SNP, signers is split: pin sev_snp.id_key_digest and/or sev_snp.author_key_digest (signers now means SGX MRSIGNER only)"
    )]
    SnpSignersSplit,
    /// PCR values pinned although no vTPM evidence kind is accepted.
    #[error(
        "PCRs are vTPM values, but attestation.tees lists no azure-snp-vtpm, azure-tdx-vtpm or sim-vtpm"
    )]
    PcrsWithoutVtpm,
    /// A PCR index outside the bank.
    #[error("PCR index {0} is outside 0 to 23")]
    PcrIndex(u8),
    /// A PCR value that is not a SHA-256 value.
    #[error("PCR values are of the SHA-256 bank (32 bytes), found {0}")]
    PcrNotSha256(String),
    /// A zero that would refuse everything.
    #[error("must be at least 1")]
    Zero,
    /// An environment variable name that is not one.
    #[error("invalid environment variable name {0:?}")]
    InvalidEnvName(String),
    /// A file path that is not an acceptable absolute path.
    #[error("file path {path:?} {problem}")]
    InvalidFilePath {
        /// The path.
        path: String,
        /// Why it is refused.
        problem: &'static str,
    },
    /// A template that does not parse.
    #[error("invalid template: {0}")]
    Template(TemplateError),
    /// A reference to a secret the policy does not define.
    #[error("references undefined secret {0:?}")]
    UndefinedSecret(String),
    /// A secret reference that cannot produce text for the secret's kind.
    #[error("cannot render secret {name:?}: {problem}")]
    NotRenderable {
        /// The secret.
        name: String,
        /// Why.
        problem: String,
    },
    /// `kms_keys` naming a secret that is not a key.
    #[error(
        "{name:?} is of kind {kind}, not a key the KMS can use (aes-256, rsa-2048, rsa-3072, ec-p256)"
    )]
    NotAKmsKey {
        /// The secret.
        name: String,
        /// Its kind.
        kind: SecretKind,
    },
    /// Two ways of obtaining a value at once.
    #[error("`{0}` and `{1}` exclude each other")]
    Conflict(&'static str, &'static str),
    /// An inline value for a kind that must be generated, imported or uploaded.
    #[error(
        "a {0} secret cannot be given inline: use `generate: true`, `import_from`, or upload it to the CAS"
    )]
    InlineValueNotAllowed(SecretKind),
    /// An inline value that does not decode (the message never contains the value).
    #[error("{0}")]
    BadInlineValue(String),
    /// A field that does not apply to this kind of secret.
    #[error("`{field}` does not apply here: {applies}")]
    NotApplicable {
        /// The field.
        field: &'static str,
        /// Where it applies.
        applies: &'static str,
    },
    /// An `x509` secret without an issuer.
    #[error("an x509 secret names its issuing x509-ca secret in `ca`")]
    MissingCa,
    /// `ca` naming something that is not a CA.
    #[error("`ca` must name an x509-ca secret, but {name:?} is of kind {kind}")]
    NotACa {
        /// The secret named.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// An invalid DNS name.
    #[error("invalid DNS name {0:?}")]
    InvalidDnsName(String),
    /// A value out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// An import or export naming this policy itself.
    #[error("a policy cannot import from or export to itself")]
    SelfReference,
    /// A service without `operation` (policies of the model before operations).
    #[error(
        "a service declares the one operation it admits: `operation: run` (with `jobs`), `worker`, `encrypt` or `serve`"
    )]
    MissingOperation,
    /// A `run` service without allow-listed jobs.
    #[error("an `operation: run` service allow-lists the job files it runs in `jobs` (sha256:HEX)")]
    RunWithoutJobs,
    /// A grant without any right.
    #[error("grant at least one right to {0:?} (unwrap, wrap)")]
    NoRights(String),
    /// An `encrypt` service granted `unwrap`.
    #[error(
        "an `encrypt` service only wraps new data keys; granting unwrap on {0:?} would let it decrypt"
    )]
    EncryptUnwraps(String),
    /// `debug: true` in a policy that does not list sim.
    #[error(
        "`debug: true` lets `cipherlake attest` print released values; only policies listing sim may set it"
    )]
    DebugWithoutSim,
    /// Two services the CAS cannot tell apart, with different grants.
    #[error(
        "services {first:?} and {second:?} admit the same code and operation ({operation}){jobs}, but receive different grants, console, configuration or database pins; the CAS cannot tell them apart, so either could take both: make them receive the same, or pin different code"
    )]
    IndistinguishableServices {
        /// One service.
        first: String,
        /// The other.
        second: String,
        /// Their operation.
        operation: Operation,
        /// `" and job"` when both are `run` services sharing a job.
        jobs: &'static str,
    },
    /// An export that pins the importer by name alone.
    #[error(
        "pin the importing policy by `owners` (keys of which one must own it) or `hash` (its exact version): anyone can create a policy under a name"
    )]
    UnpinnedExport,
    /// An imported secret listed for export again.
    #[error(
        "an imported secret cannot be exported again (its exporting policy decides who may import it)"
    )]
    ReExport,
}

/// All problems found in a policy, in the order they appear in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// The problems (at least one).
    pub issues: Vec<Issue>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.issues.len();
        write!(
            f,
            "the policy has {count} problem{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

/// Validates a parsed policy; `source` locates issues in the text.
pub(crate) fn validate(spec: &PolicySpec, source: &SourceMap) -> Result<(), Invalid> {
    let mut check = Checker {
        source,
        issues: Vec::new(),
        spec,
    };
    check.policy();
    let mut issues = check.issues;
    if issues.is_empty() {
        return Ok(());
    }
    issues.sort_by(|a, b| {
        (a.location.is_none(), a.location, a.path.to_string()).cmp(&(
            b.location.is_none(),
            b.location,
            b.path.to_string(),
        ))
    });
    Err(Invalid { issues })
}

struct Checker<'a> {
    source: &'a SourceMap,
    issues: Vec<Issue>,
    spec: &'a PolicySpec,
}

impl Checker<'_> {
    fn report(&mut self, path: FieldPath, kind: IssueKind) {
        let location = self.source.locate(&path);
        self.issues.push(Issue {
            path,
            location,
            kind,
        });
    }

    fn policy(&mut self) {
        let root = FieldPath::root();
        let spec = self.spec;
        if !is_name(&spec.name) {
            self.report(root.key("name"), IssueKind::InvalidName(spec.name.clone()));
        }
        let owners = root.key("owners");
        if spec.owners.is_empty() {
            self.report(owners.clone(), IssueKind::NoOwner);
        }
        let mut seen = HashSet::new();
        for (i, owner) in spec.owners.iter().enumerate() {
            if owner.verifying_key().is_none() {
                self.report(
                    owners.index(i),
                    IssueKind::UnusableOwnerKey(owner.to_string()),
                );
            }
            if !seen.insert(*owner) {
                self.duplicate(owners.index(i), "owner", owner.to_string());
            }
        }
        self.attestation(&root.key("attestation"));
        for (name, service) in &spec.services {
            self.service(&root.key("services").key(name.clone()), name, service);
        }
        for (name, user) in &spec.users {
            self.user(&root.key("users").key(name.clone()), name, user);
        }
        for (name, secret) in &spec.secrets {
            self.secret(&root.key("secrets").key(name.clone()), name, secret);
        }
        self.indistinguishable_services();
    }

    fn user(&mut self, path: &FieldPath, name: &str, user: &User) {
        if !is_name(name) {
            self.report(path.clone(), IssueKind::InvalidName(name.to_string()));
        }
        if user.key.verifying_key().is_none() {
            self.report(
                path.key("key"),
                IssueKind::UnusableOwnerKey(user.key.to_string()),
            );
        }
        self.grants(&path.key("kms_keys"), &user.kms_keys);
    }

    /// Services with the same operation whose code identities (and, for `run`, jobs) overlap
    /// are one identity to the CAS: whoever runs that code may attest as either, so they must
    /// receive the same (grants, console, configuration, database pins, debug).
    fn indistinguishable_services(&mut self) {
        let services: Vec<_> = self.spec.services.iter().collect();
        for (i, (first, a)) in services.iter().enumerate() {
            for (second, b) in &services[i + 1..] {
                let Some(operation) = a.operation().filter(|op| Some(*op) == b.operation()) else {
                    continue;
                };
                // As evaluation compares them: by bytes, and an empty list admits anything.
                let overlap = |x: &[Digest], y: &[Digest]| {
                    x.is_empty()
                        || y.is_empty()
                        || x.iter().any(|d| y.iter().any(|e| e.bytes == d.bytes))
                };
                let same_code =
                    overlap(&a.measurements, &b.measurements) && overlap(&a.signers, &b.signers);
                let same_jobs = operation != Operation::Run || overlap(&a.jobs, &b.jobs);
                let same_release = a.kms_keys == b.kms_keys
                    && a.console == b.console
                    && a.env == b.env
                    && a.args == b.args
                    && a.files == b.files
                    && a.databases == b.databases
                    && a.debug == b.debug;
                if same_code && same_jobs && !same_release {
                    self.report(
                        FieldPath::root().key("services").key(second.to_string()),
                        IssueKind::IndistinguishableServices {
                            first: first.to_string(),
                            second: second.to_string(),
                            operation,
                            jobs: if operation == Operation::Run {
                                " and job"
                            } else {
                                ""
                            },
                        },
                    );
                }
            }
        }
    }

    /// KMS grants: key secrets, known rights, at least one, no duplicates.
    fn grants(&mut self, path: &FieldPath, grants: &KmsGrants) {
        for (key, rights) in &grants.0 {
            let at = path.key(key.clone());
            match self.spec.secrets.get(key).map(|secret| secret.kind.known()) {
                None => self.report(at.clone(), IssueKind::UndefinedSecret(key.clone())),
                Some(Some(kind)) if !kind.is_kms_key() => self.report(
                    at.clone(),
                    IssueKind::NotAKmsKey {
                        name: key.clone(),
                        kind,
                    },
                ),
                // Unknown kinds are reported with the secret.
                Some(_) => {}
            }
            if rights.is_empty() {
                self.report(at.clone(), IssueKind::NoRights(key.clone()));
            }
            self.keywords::<KmsRight>(&at, "KMS right", rights);
        }
    }

    fn duplicate(&mut self, path: FieldPath, what: &'static str, value: String) {
        self.report(path, IssueKind::Duplicate { what, value });
    }

    fn keywords<T: Keyword + PartialEq>(
        &mut self,
        path: &FieldPath,
        field: &'static str,
        words: &[Named<T>],
    ) {
        let mut seen: Vec<T> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            match word {
                Named::Unknown(word) => self.report(
                    path.index(i),
                    IssueKind::UnknownKeyword {
                        field,
                        word: word.clone(),
                        expected: T::EXPECTED,
                    },
                ),
                Named::Known(value) if seen.contains(value) => {
                    self.duplicate(path.index(i), field, value.as_str().to_string());
                }
                Named::Known(value) => seen.push(*value),
            }
        }
    }

    fn sim_listed(&self) -> bool {
        self.spec
            .attestation
            .tees
            .iter()
            .any(|tee| tee.known().is_some_and(cipherlake_attest::Tee::is_sim))
    }

    fn vtpm_listed(&self) -> bool {
        self.spec
            .attestation
            .tees
            .iter()
            .any(|tee| tee.known().is_some_and(cipherlake_attest::Tee::is_vtpm))
    }

    /// Whether a TEE that reports `section`'s fields is accepted (sim emulates any).
    fn section_applies(&self, section: &str) -> bool {
        use cipherlake_attest::Tee;
        self.spec
            .attestation
            .tees
            .iter()
            .filter_map(|t| t.known())
            .any(|tee| {
                tee.is_sim()
                    || match section {
                        "sgx" => tee == Tee::Sgx,
                        "tdx" => matches!(tee, Tee::Tdx | Tee::AzureTdxVtpm),
                        _ => matches!(tee, Tee::SevSnp | Tee::AzureSnpVtpm),
                    }
            })
    }

    /// The TEE identity sections: listed TEEs, hex lengths, SEV-SNP signers split.
    fn identity(&mut self, path: &FieldPath, service: &Service) {
        let sections = [
            ("sgx", service.sgx.as_ref().map(|s| s.hex_fields())),
            ("tdx", service.tdx.as_ref().map(|s| s.hex_fields())),
            ("sev_snp", service.sev_snp.as_ref().map(|s| s.hex_fields())),
        ];
        for (section, fields) in sections {
            let Some(fields) = fields else { continue };
            let at = path.key(section);
            if !self.section_applies(section) {
                self.report(at.clone(), IssueKind::SectionWithoutTee(section));
            }
            for (name, index, value) in fields {
                let expected = crate::identity::hex_len(name).unwrap_or(value.0.len());
                if value.0.len() != expected {
                    let field = at.key(name);
                    let field = match index {
                        Some(i) => field.index(i),
                        None => field,
                    };
                    self.report(
                        field,
                        IssueKind::HexLength {
                            expected,
                            found: value.0.len(),
                        },
                    );
                }
            }
        }
        let snp_listed = self
            .spec
            .attestation
            .tees
            .iter()
            .filter_map(|t| t.known())
            .any(|t| {
                matches!(
                    t,
                    cipherlake_attest::Tee::SevSnp | cipherlake_attest::Tee::AzureSnpVtpm
                )
            });
        if snp_listed
            && !service.signers.is_empty()
            && !service.sev_snp.as_ref().is_some_and(|s| s.pins_signer())
        {
            self.report(path.key("signers"), IssueKind::SnpSignersSplit);
        }
    }

    fn pcrs(&mut self, path: &FieldPath, pcrs: &BTreeMap<u8, Digest>) {
        if !pcrs.is_empty() && !self.vtpm_listed() {
            self.report(path.clone(), IssueKind::PcrsWithoutVtpm);
        }
        for (index, value) in pcrs {
            let at = path.key(index.to_string());
            if *index > 23 {
                self.report(at.clone(), IssueKind::PcrIndex(*index));
            }
            if value.bytes.len() != 32
                || value
                    .algorithm
                    .is_some_and(|a| a != DigestAlgorithm::Sha256)
            {
                self.report(at, IssueKind::PcrNotSha256(value.to_string()));
            }
        }
    }

    fn platforms(&mut self, path: &FieldPath, keys: &[crate::keys::PublicKey]) {
        if !keys.is_empty() && !self.sim_listed() {
            self.report(path.clone(), IssueKind::PlatformsWithoutSim);
        }
        let mut seen = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if !seen.insert(*key) {
                self.duplicate(path.index(i), "platform key", key.to_string());
            }
        }
    }

    fn attestation(&mut self, path: &FieldPath) {
        let attestation = &self.spec.attestation;
        if attestation.tees.is_empty() {
            self.report(path.key("tees"), IssueKind::NoTee);
        }
        self.keywords(&path.key("tees"), "TEE", &attestation.tees);
        self.keywords(&path.key("tolerate"), "tolerance", &attestation.tolerate);
        self.platforms(&path.key("platforms"), &attestation.platforms);
        if attestation.max_evidence_age == Some(0) {
            self.report(path.key("max_evidence_age"), IssueKind::Zero);
        }
        if attestation.max_collateral_age == Some(0) {
            self.report(path.key("max_collateral_age"), IssueKind::Zero);
        }
    }

    fn digests(&mut self, path: &FieldPath, what: &'static str, digests: &[Digest]) {
        let mut seen = HashSet::new();
        for (i, digest) in digests.iter().enumerate() {
            if !digest.has_valid_length() {
                let found = digest.bytes.len();
                let problem = match digest.algorithm {
                    Some(algorithm) => format!(
                        "a {} digest has {} bytes ({} hex digits), found {found} bytes",
                        algorithm.as_str(),
                        algorithm.byte_len(),
                        algorithm.byte_len() * 2
                    ),
                    None => format!(
                        "a digest without prefix has 32 bytes (sha256) or 48 bytes (sha384), found {found} bytes"
                    ),
                };
                self.report(
                    path.index(i),
                    IssueKind::DigestLength {
                        digest: digest.to_string(),
                        problem,
                    },
                );
            }
            if !seen.insert(digest.to_string()) {
                self.duplicate(path.index(i), what, digest.to_string());
            }
        }
    }

    fn service(&mut self, path: &FieldPath, name: &str, service: &Service) {
        if !is_name(name) {
            self.report(path.clone(), IssueKind::InvalidName(name.to_string()));
        }
        if !service.pins_code() {
            self.report(path.clone(), IssueKind::NoCodeIdentity);
        }
        self.digests(
            &path.key("measurements"),
            "measurement",
            &service.measurements,
        );
        self.digests(&path.key("signers"), "signer", &service.signers);
        self.digests(&path.key("jobs"), "job", &service.jobs);
        for (i, job) in service.jobs.iter().enumerate() {
            if job.has_valid_length() && job.effective_algorithm() != Some(DigestAlgorithm::Sha256)
            {
                self.report(
                    path.key("jobs").index(i),
                    IssueKind::JobNotSha256(job.to_string()),
                );
            }
        }
        self.platforms(&path.key("platforms"), &service.platforms);
        self.pcrs(&path.key("pcrs"), &service.pcrs);
        self.identity(path, service);
        if let Named::Unknown(word) = &service.console {
            self.report(
                path.key("console"),
                IssueKind::UnknownKeyword {
                    field: "console mode",
                    word: word.clone(),
                    expected: crate::keyword::Console::EXPECTED,
                },
            );
        }
        for (variable, template) in &service.env {
            let at = path.key("env").key(variable.clone());
            if !is_env_name(variable) {
                self.report(at.clone(), IssueKind::InvalidEnvName(variable.clone()));
            }
            self.template(at, template);
        }
        for (i, template) in service.args.iter().enumerate() {
            self.template(path.key("args").index(i), template);
        }
        for (file, template) in &service.files {
            let at = path.key("files").key(file.clone());
            if let Some(problem) = file_path_problem(file) {
                self.report(
                    at.clone(),
                    IssueKind::InvalidFilePath {
                        path: file.clone(),
                        problem,
                    },
                );
            }
            self.template(at, template);
        }
        self.grants(&path.key("kms_keys"), &service.kms_keys);
        self.operation(path, service);
    }

    /// The operation and the fields that depend on it.
    fn operation(&mut self, path: &FieldPath, service: &Service) {
        let operation = match &service.operation {
            None => return self.report(path.key("operation"), IssueKind::MissingOperation),
            Some(Named::Unknown(word)) => {
                return self.report(
                    path.key("operation"),
                    IssueKind::UnknownKeyword {
                        field: "operation",
                        word: word.clone(),
                        expected: Operation::EXPECTED,
                    },
                );
            }
            Some(Named::Known(operation)) => *operation,
        };
        if operation == Operation::Run && service.jobs.is_empty() {
            self.report(path.key("jobs"), IssueKind::RunWithoutJobs);
        }
        if operation != Operation::Run && !service.jobs.is_empty() {
            self.report(
                path.key("jobs"),
                IssueKind::NotApplicable {
                    field: "jobs",
                    applies: "only `operation: run` services run job files",
                },
            );
        }
        if operation != Operation::Run && service.console != Named::Known(Console::None) {
            self.report(
                path.key("console"),
                IssueKind::NotApplicable {
                    field: "console",
                    applies: "only `operation: run` prints, under its console setting",
                },
            );
        }
        if operation == Operation::Encrypt {
            for (key, rights) in &service.kms_keys.0 {
                if rights.contains(&Named::Known(KmsRight::Unwrap)) {
                    self.report(
                        path.key("kms_keys").key(key.clone()),
                        IssueKind::EncryptUnwraps(key.clone()),
                    );
                }
            }
        }
        if service.debug && !self.sim_listed() {
            self.report(path.key("debug"), IssueKind::DebugWithoutSim);
        }
        if operation != Operation::Run && !service.databases.is_empty() {
            self.report(
                path.key("databases"),
                IssueKind::NotApplicable {
                    field: "databases",
                    applies: "only `operation: run` jobs open SQL databases",
                },
            );
        }
        for (name, pin) in &service.databases {
            let at = path.key("databases").key(name.clone());
            if !is_name(name) || name.chars().any(|c| c.is_ascii_uppercase()) {
                self.report(at.clone(), IssueKind::InvalidName(name.clone()));
            }
            for (i, column) in pin.columns.iter().enumerate() {
                if column.table.is_empty() || column.column.is_empty() {
                    self.report(
                        at.key("columns").index(i),
                        IssueKind::OutOfRange("name the table and the column".into()),
                    );
                }
            }
        }
    }

    fn template(&mut self, path: FieldPath, text: &str) {
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(e) => return self.report(path, IssueKind::Template(e)),
        };
        for reference in template.secret_refs() {
            match self
                .spec
                .secrets
                .get(&reference.name)
                .map(|s| s.kind.known())
            {
                None => self.report(
                    path.clone(),
                    IssueKind::UndefinedSecret(reference.name.clone()),
                ),
                Some(Some(kind)) => {
                    if let Some(problem) = render_problem(kind, reference.part, reference.filter) {
                        self.report(
                            path.clone(),
                            IssueKind::NotRenderable {
                                name: reference.name.clone(),
                                problem,
                            },
                        );
                    }
                }
                Some(None) => {}
            }
        }
    }

    fn secret(&mut self, path: &FieldPath, name: &str, secret: &SecretSpec) {
        if !is_name(name) {
            self.report(path.clone(), IssueKind::InvalidName(name.to_string()));
        }
        let kind = match &secret.kind {
            Named::Known(kind) => Some(*kind),
            Named::Unknown(word) => {
                self.report(
                    path.key("kind"),
                    IssueKind::UnknownKeyword {
                        field: "secret kind",
                        word: word.clone(),
                        expected: SecretKind::EXPECTED,
                    },
                );
                None
            }
        };
        self.sources(path, secret, kind);
        if let Some(kind) = kind {
            self.certificate_fields(path, secret, kind);
            if secret.size.is_some()
                && !(secret.generate && matches!(kind, SecretKind::Ascii | SecretKind::Binary))
            {
                self.report(
                    path.key("size"),
                    IssueKind::NotApplicable {
                        field: "size",
                        applies: "generated ascii and binary secrets only",
                    },
                );
            }
        }
        if let Some(size) = secret.size
            && !(1..=MAX_GENERATED_SIZE).contains(&size)
        {
            self.report(
                path.key("size"),
                IssueKind::OutOfRange(format!("size must be 1 to {MAX_GENERATED_SIZE}")),
            );
        }
        self.exports(path, secret);
    }

    /// `value`, `generate` and `import_from`: at most one (none: uploaded to the CAS later).
    fn sources(&mut self, path: &FieldPath, secret: &SecretSpec, kind: Option<SecretKind>) {
        let value = secret.value.is_some();
        let import = secret.import_from.is_some();
        if value && secret.generate {
            self.report(
                path.key("generate"),
                IssueKind::Conflict("value", "generate"),
            );
        }
        if value && import {
            self.report(
                path.key("import_from"),
                IssueKind::Conflict("value", "import_from"),
            );
        }
        if secret.generate && import {
            self.report(
                path.key("import_from"),
                IssueKind::Conflict("generate", "import_from"),
            );
        }
        if let (Some(text), Some(kind)) = (&secret.value, kind) {
            self.inline_value(path.key("value"), kind, text);
        }
        if let Some(import) = &secret.import_from {
            let at = path.key("import_from");
            if import.policy == self.spec.name {
                self.report(at.key("policy"), IssueKind::SelfReference);
            } else if !is_name(&import.policy) {
                self.report(
                    at.key("policy"),
                    IssueKind::InvalidName(import.policy.clone()),
                );
            }
            if !is_name(&import.secret) {
                self.report(
                    at.key("secret"),
                    IssueKind::InvalidName(import.secret.clone()),
                );
            }
        }
    }

    /// An inline value must be allowed for its kind and decode (base64 for bytes and keys).
    fn inline_value(&mut self, at: FieldPath, kind: SecretKind, text: &SecretText) {
        if !kind.allows_inline_value() {
            return self.report(at, IssueKind::InlineValueNotAllowed(kind));
        }
        if kind == SecretKind::Ascii {
            return;
        }
        let problem = match STANDARD.decode(text.expose()).map(Zeroizing::new) {
            Err(_) => format!("a {kind} value is base64, and this is not"),
            Ok(bytes) if kind == SecretKind::Aes256 && bytes.len() != 32 => format!(
                "an aes-256 key has 32 bytes, this value decodes to {}",
                bytes.len()
            ),
            Ok(bytes) if bytes.is_empty() => "a binary value must not be empty".into(),
            Ok(_) => return,
        };
        self.report(at, IssueKind::BadInlineValue(problem));
    }

    fn certificate_fields(&mut self, path: &FieldPath, secret: &SecretSpec, kind: SecretKind) {
        const CERTS: &str = "x509 and x509-ca secrets only";
        if !kind.is_certificate() {
            for (field, set) in [
                ("common_name", secret.common_name.is_some()),
                ("valid_days", secret.valid_days.is_some()),
            ] {
                if set {
                    self.report(
                        path.key(field),
                        IssueKind::NotApplicable {
                            field,
                            applies: CERTS,
                        },
                    );
                }
            }
        }
        if kind != SecretKind::X509 {
            for (field, set) in [("ca", secret.ca.is_some()), ("dns", !secret.dns.is_empty())] {
                if set {
                    self.report(
                        path.key(field),
                        IssueKind::NotApplicable {
                            field,
                            applies: "x509 secrets only",
                        },
                    );
                }
            }
        }
        if secret.valid_days == Some(0) {
            self.report(path.key("valid_days"), IssueKind::Zero);
        }
        if kind == SecretKind::X509 && secret.import_from.is_none() {
            match &secret.ca {
                None => self.report(path.clone(), IssueKind::MissingCa),
                Some(ca) => match self.spec.secrets.get(ca).map(|s| &s.kind) {
                    None => self.report(path.key("ca"), IssueKind::UndefinedSecret(ca.clone())),
                    Some(Named::Known(SecretKind::X509Ca)) => {}
                    Some(other) => self.report(
                        path.key("ca"),
                        IssueKind::NotACa {
                            name: ca.clone(),
                            kind: other.to_string(),
                        },
                    ),
                },
            }
        }
        let mut seen = HashSet::new();
        for (i, dns) in secret.dns.iter().enumerate() {
            if !is_dns_name(dns) {
                self.report(
                    path.key("dns").index(i),
                    IssueKind::InvalidDnsName(dns.clone()),
                );
            } else if !seen.insert(dns.to_ascii_lowercase()) {
                self.duplicate(path.key("dns").index(i), "DNS name", dns.clone());
            }
        }
    }

    fn exports(&mut self, path: &FieldPath, secret: &SecretSpec) {
        if !secret.export_to.is_empty() && secret.import_from.is_some() {
            self.report(path.key("export_to"), IssueKind::ReExport);
        }
        let mut seen = HashSet::new();
        for (i, export) in secret.export_to.iter().enumerate() {
            let at = path.key("export_to").index(i);
            if export.policy == self.spec.name {
                self.report(at.key("policy"), IssueKind::SelfReference);
            } else if !is_name(&export.policy) {
                self.report(
                    at.key("policy"),
                    IssueKind::InvalidName(export.policy.clone()),
                );
            }
            if let Some(name) = &export.secret
                && !is_name(name)
            {
                self.report(at.key("secret"), IssueKind::InvalidName(name.clone()));
            }
            if export.owners.is_empty() && export.hash.is_none() {
                self.report(at.clone(), IssueKind::UnpinnedExport);
            }
            for (j, owner) in export.owners.iter().enumerate() {
                if owner.verifying_key().is_none() {
                    self.report(
                        at.key("owners").index(j),
                        IssueKind::UnusableOwnerKey(owner.to_string()),
                    );
                }
            }
            if !seen.insert((&export.policy, &export.secret)) {
                self.duplicate(at, "export", format!("to policy {:?}", export.policy));
            }
        }
    }
}
