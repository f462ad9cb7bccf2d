//! Keywords of the policy language (TEE names, tolerances, secret kinds, console modes).
//!
//! A keyword field is parsed leniently into [`Named`] so that every misspelt keyword in a policy
//! is reported by validation at once, with its path and line, instead of stopping the parse at
//! the first one.

use std::fmt;

use cipherlake_attest::Tee;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A closed set of words with one canonical spelling each.
pub trait Keyword: Sized + Copy {
    /// The accepted spellings, for error messages (`sim, sgx, tdx, sev-snp or azure`).
    const EXPECTED: &'static str;
    /// Parses one spelling (aliases allowed).
    fn parse(word: &str) -> Option<Self>;
    /// The canonical spelling (used in the canonical form and in messages).
    fn as_str(self) -> &'static str;
}

/// A keyword as written in a policy: known, or unknown (a validation error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named<T> {
    /// A recognised keyword.
    Known(T),
    /// A word that is not a keyword of this kind, kept verbatim for the error message.
    Unknown(String),
}

impl<T: Keyword> Named<T> {
    /// The keyword, if recognised.
    pub fn known(&self) -> Option<T> {
        match self {
            Named::Known(value) => Some(*value),
            Named::Unknown(_) => None,
        }
    }
}

impl<T: Keyword> fmt::Display for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Known(value) => f.write_str(value.as_str()),
            Named::Unknown(word) => f.write_str(word),
        }
    }
}

impl<T: Keyword + Default> Default for Named<T> {
    fn default() -> Self {
        Named::Known(T::default())
    }
}

impl<T: Keyword> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Named::Known(value) => serializer.serialize_str(value.as_str()),
            Named::Unknown(word) => serializer.serialize_str(word),
        }
    }
}

impl<'de, T: Keyword> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Ok(match T::parse(&word) {
            Some(value) => Named::Known(value),
            None => Named::Unknown(word),
        })
    }
}

impl Keyword for Tee {
    const EXPECTED: &'static str =
        "sim, sgx, tdx, sev-snp, azure, azure-snp-vtpm, azure-tdx-vtpm or sim-vtpm";

    fn parse(word: &str) -> Option<Self> {
        word.parse().ok()
    }

    fn as_str(self) -> &'static str {
        Tee::as_str(self)
    }
}

/// A deviation from a fully trustworthy platform that a policy may accept (each is refused
/// unless listed in `attestation.tolerate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tolerance {
    /// `debug`: the TEE runs in debug mode (the host can read its memory).
    Debug,
    /// `outdated-tcb`: the platform's TCB is out of date (or, for TDX, a TD relaunch is
    /// advised).
    OutdatedTcb,
    /// `sw-hardening-needed`: the platform is up to date but needs software mitigations.
    SwHardeningNeeded,
    /// `configuration-needed`: the platform's configuration needs changing.
    ConfigurationNeeded,
    /// `migration-agent`: an SEV-SNP guest policy allows a migration agent.
    MigrationAgent,
    /// `unevaluated-tcb`: SEV-SNP evidence without `sev_snp.min_reported_tcb` (no TCB verdict).
    UnevaluatedTcb,
}

impl Keyword for Tolerance {
    const EXPECTED: &'static str = "debug, outdated-tcb, sw-hardening-needed, configuration-needed, migration-agent or unevaluated-tcb";

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "debug" => Tolerance::Debug,
            "outdated-tcb" => Tolerance::OutdatedTcb,
            "sw-hardening-needed" => Tolerance::SwHardeningNeeded,
            "configuration-needed" => Tolerance::ConfigurationNeeded,
            "migration-agent" => Tolerance::MigrationAgent,
            "unevaluated-tcb" => Tolerance::UnevaluatedTcb,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Tolerance::Debug => "debug",
            Tolerance::OutdatedTcb => "outdated-tcb",
            Tolerance::SwHardeningNeeded => "sw-hardening-needed",
            Tolerance::ConfigurationNeeded => "configuration-needed",
            Tolerance::MigrationAgent => "migration-agent",
            Tolerance::UnevaluatedTcb => "unevaluated-tcb",
        }
    }
}

/// The kind of a secret, which decides how it is generated, what it may be used for (KMS keys)
/// and how it can be rendered into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// `ascii`: text.
    Ascii,
    /// `binary`: arbitrary bytes.
    Binary,
    /// `aes-256`: a 32-byte symmetric key (KMS wrap/unwrap).
    Aes256,
    /// `rsa-2048`: an RSA key pair (KMS RSA-OAEP decrypt and sign).
    Rsa2048,
    /// `rsa-3072`: an RSA key pair (KMS RSA-OAEP decrypt and sign).
    Rsa3072,
    /// `ec-p256`: an ECDSA P-256 key pair (KMS sign).
    EcP256,
    /// `x509-ca`: a certificate authority (key pair and self-signed certificate).
    X509Ca,
    /// `x509`: a certificate and its key, issued by an `x509-ca` secret.
    X509,
}

impl SecretKind {
    /// Whether a secret of this kind is a key the CAS KMS can use (`kms_keys`).
    pub fn is_kms_key(self) -> bool {
        matches!(
            self,
            SecretKind::Aes256 | SecretKind::Rsa2048 | SecretKind::Rsa3072 | SecretKind::EcP256
        )
    }

    /// Whether the policy may give the value inline (`value:`).
    pub fn allows_inline_value(self) -> bool {
        matches!(
            self,
            SecretKind::Ascii | SecretKind::Binary | SecretKind::Aes256
        )
    }

    /// Whether the value is a certificate (`x509`, `x509-ca`).
    pub fn is_certificate(self) -> bool {
        matches!(self, SecretKind::X509 | SecretKind::X509Ca)
    }

    /// Whether the value is an asymmetric key pair without a certificate.
    pub fn is_key_pair(self) -> bool {
        matches!(
            self,
            SecretKind::Rsa2048 | SecretKind::Rsa3072 | SecretKind::EcP256
        )
    }
}

impl Keyword for SecretKind {
    const EXPECTED: &'static str =
        "ascii, binary, aes-256, rsa-2048, rsa-3072, ec-p256, x509-ca or x509";

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "ascii" => SecretKind::Ascii,
            "binary" => SecretKind::Binary,
            "aes-256" => SecretKind::Aes256,
            "rsa-2048" => SecretKind::Rsa2048,
            "rsa-3072" => SecretKind::Rsa3072,
            "ec-p256" => SecretKind::EcP256,
            "x509-ca" => SecretKind::X509Ca,
            "x509" => SecretKind::X509,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SecretKind::Ascii => "ascii",
            SecretKind::Binary => "binary",
            SecretKind::Aes256 => "aes-256",
            SecretKind::Rsa2048 => "rsa-2048",
            SecretKind::Rsa3072 => "rsa-3072",
            SecretKind::EcP256 => "ec-p256",
            SecretKind::X509Ca => "x509-ca",
            SecretKind::X509 => "x509",
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job of a service may print to its console (stdout/stderr of the job runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Console {
    /// `none`: nothing but progress and errors without data (the default).
    #[default]
    None,
    /// `row-counts`: row counts of results, no values.
    RowCounts,
    /// `full`: result rows in the clear (for non-confidential or test data only).
    Full,
}

impl Keyword for Console {
    const EXPECTED: &'static str = "none, row-counts or full";

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "none" => Console::None,
            "row-counts" => Console::RowCounts,
            "full" => Console::Full,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Console::None => "none",
            Console::RowCounts => "row-counts",
            Console::Full => "full",
        }
    }
}

/// The one operation a service admits: what the attested code does with what it receives. The
/// code binds it into its evidence's report data, so a process cannot attest as a service whose
/// operation it does not perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `run`: runs an allow-listed SQL job (`jobs:`); the only operation that prints rows, under
    /// the service's `console` setting.
    Run,
    /// `worker`: serves plan fragments of distributed jobs over mTLS.
    Worker,
    /// `encrypt`: writes encrypted data (ingest); wraps data keys, never unwraps.
    Encrypt,
    /// `serve`: answers queries of policy users over attested connections.
    Serve,
}

impl Operation {
    /// Every operation, in the order documented.
    pub const ALL: [Operation; 4] = [
        Operation::Run,
        Operation::Worker,
        Operation::Encrypt,
        Operation::Serve,
    ];
}

impl Keyword for Operation {
    const EXPECTED: &'static str = "run, worker, encrypt or serve";

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "run" => Operation::Run,
            "worker" => Operation::Worker,
            "encrypt" => Operation::Encrypt,
            "serve" => Operation::Serve,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Operation::Run => "run",
            Operation::Worker => "worker",
            Operation::Encrypt => "encrypt",
            Operation::Serve => "serve",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a grant allows with one KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KmsRight {
    /// `unwrap`: unwrap data keys (AES keys) or decrypt with the private key (RSA-OAEP, as
    /// Always Encrypted unwraps column encryption keys): reading data.
    Unwrap,
    /// `wrap`: wrap new data keys (AES keys) or sign with the private key (column master key
    /// metadata): writing data that readers will trust.
    Wrap,
}

impl Keyword for KmsRight {
    const EXPECTED: &'static str = "unwrap or wrap";

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "unwrap" => KmsRight::Unwrap,
            "wrap" => KmsRight::Wrap,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            KmsRight::Unwrap => "unwrap",
            KmsRight::Wrap => "wrap",
        }
    }
}

impl fmt::Display for KmsRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
