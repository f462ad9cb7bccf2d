//! This process as a principal of a policy: an attested **service** performing one operation,
//! or a **user** proving itself with its key (DESIGN.md, "Principals, operations and grants").
//!
//! * A service attests through [`WorkloadArgs::attest`], which takes the operation as a value
//!   of a [`Performed`] type. That trait is sealed here, and each implementing type has a
//!   private constructor in the module that performs the operation (`run`'s job, `worker`'s
//!   server, `encrypt`'s writer), so no other command can bind an operation it does not
//!   perform. The result is one [`AttestedWorkload`]: principal, operation, certificate, CAS
//!   client with identity, KMS client and TLS identity.
//! * Commands whose purpose is plaintext on the host (`parquet decrypt`, `sql`, `bench`, …)
//!   never attest: with `--kms cas:URL` they act as a policy user (`--user NAME --key FILE`),
//!   and the CAS authorises each KMS call by the user's signature and grants.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cipherlake_attest::attester::{DEFAULT_LAS_SOCKET, DetectConfig, detect};
use cipherlake_attest::tpm::device::TpmPath;
use cipherlake_cas::api::ReleasedConfig;
use cipherlake_cas::client::{
    Attested, CasClient, Credential, attester_evidence, fingerprint_of_pem,
};
use cipherlake_cluster::tls::Identity;
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::encryption::{CasKms, KmsSpec};
use cipherlake_policy::{Keyword, Operation, OwnerSigningKey};

/// The policy and service this process attests as, and where it finds evidence.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadArgs {
    /// The policy to attest under.
    #[arg(long, value_name = "NAME", env = "CIPHERLAKE_POLICY")]
    pub policy: Option<String>,
    /// The service of the policy to attest as (its operation must be this command's).
    #[arg(long, value_name = "SERVICE", env = "CIPHERLAKE_SERVICE")]
    pub service: Option<String>,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

/// Where this process's evidence comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct EvidenceArgs {
    /// The LAS socket (simulation mode; configfs-tsm and Gramine are used first when present).
    #[arg(
        long,
        value_name = "PATH",
        env = "CIPHERLAKE_LAS_SOCKET",
        default_value = DEFAULT_LAS_SOCKET
    )]
    pub las_socket: PathBuf,
    /// The TPM (`/dev/tpmrm0`, or `tcp:HOST:PORT` for swtpm). An Azure confidential VM's
    /// vTPM is found at /dev/tpmrm0 without this; given beside a LAS socket it means
    /// sim-vtpm (the LAS makes the HCL report, the TPM quotes).
    #[arg(long, value_name = "DEVICE|tcp:HOST:PORT", env = "CIPHERLAKE_TPM")]
    pub tpm: Option<TpmPath>,
    /// Where an Azure confidential VM fetches its VCEK (SEV-SNP) or TD quote (TDX), e.g.
    /// http://169.254.169.254. No default: without it, SEV-SNP evidence carries no VCEK and
    /// TDX confidential VMs cannot attest.
    #[arg(long, value_name = "URL", env = "CIPHERLAKE_PLATFORM_ENDPOINT")]
    pub platform_endpoint: Option<String>,
}

impl EvidenceArgs {
    /// The LAS at `socket`.
    pub fn las(socket: &std::path::Path) -> Self {
        EvidenceArgs {
            las_socket: socket.to_path_buf(),
            tpm: None,
            platform_endpoint: None,
        }
    }

    /// The first attestation interface found, in [`detect`]'s order: configfs-tsm,
    /// /dev/sev-guest, an Azure vTPM, Gramine, the LAS (sim-vtpm with --tpm, else sim).
    pub fn attester(&self) -> anyhow::Result<cipherlake_attest::attester::Attester> {
        Ok(detect(&DetectConfig {
            las_socket: self.las_socket.clone(),
            tpm: self.tpm.clone(),
            platform_endpoint: self.platform_endpoint.clone(),
            ..DetectConfig::default()
        })?)
    }
}

mod sealed {
    /// Only the types listed in this module can be operations.
    pub trait Sealed {}
}

impl sealed::Sealed for super::run::JobRun {}
impl sealed::Sealed for super::worker::Serving {}
impl sealed::Sealed for super::encrypt::Encrypting {}

/// An operation this binary performs, bound into its evidence. Implemented only by the types
/// sealed above, each constructed only by the code that performs the operation.
pub trait Performed: sealed::Sealed {
    /// The operation.
    fn operation(&self) -> Operation;
    /// The job file's hash (`run` only).
    fn job_hash(&self) -> Option<[u8; 32]> {
        None
    }
}

impl WorkloadArgs {
    /// The policy and service named, or a clear error.
    pub fn names(&self) -> anyhow::Result<(&str, &str)> {
        let policy = self
            .policy
            .as_deref()
            .context("--policy NAME is required to attest (or set CIPHERLAKE_POLICY)")?;
        let service = self
            .service
            .as_deref()
            .context("--service SERVICE is required to attest (or set CIPHERLAKE_SERVICE)")?;
        Ok((policy, service))
    }

    /// Attests to `cas` as the named service performing `operation` (its job hash bound too),
    /// through the first attestation interface found (configfs-tsm, Gramine, the LAS).
    pub async fn attest(
        &self,
        cas: &CasClient,
        operation: &impl Performed,
    ) -> anyhow::Result<AttestedWorkload> {
        let (policy, service) = self.names()?;
        let attester = self.evidence.attester()?;
        let op = operation.operation();
        let attested = cas
            .attest(
                policy,
                service,
                op,
                operation.job_hash(),
                |report_data| async move { attester_evidence(&attester, report_data).await },
            )
            .await
            .with_context(|| format!("attesting as {policy}/{service} ({op})"))?;
        tracing::info!(
            policy,
            service,
            operation = op.as_str(),
            policy_hash = %attested.policy_hash,
            "attested"
        );
        AttestedWorkload::new(cas, attested, op)
    }
}

/// A service of a policy that attested performing one operation: everything a command needs
/// to act as it, built once.
pub struct AttestedWorkload {
    operation: Operation,
    attested: Attested,
    cas: CasClient,
    kms: Arc<dyn KmsClient>,
}

impl AttestedWorkload {
    fn new(base: &CasClient, attested: Attested, operation: Operation) -> anyhow::Result<Self> {
        let cas = base.with_identity(&attested)?;
        let kms = cas_kms(&cas)?;
        Ok(AttestedWorkload {
            operation,
            attested,
            cas,
            kms,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &str {
        &self.attested.policy
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.attested.service
    }

    /// The operation bound into the evidence.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The policy version that admitted the workload.
    pub fn policy_hash(&self) -> &str {
        &self.attested.policy_hash
    }

    /// Certificate expiry, unix seconds.
    pub fn expires(&self) -> u64 {
        self.attested.expires
    }

    /// The released configuration.
    pub fn config(&self) -> &ReleasedConfig {
        &self.attested.config
    }

    /// The CAS client presenting the workload certificate (mTLS).
    pub fn cas(&self) -> &CasClient {
        &self.cas
    }

    /// The CAS KMS, authorised by the workload certificate.
    pub fn kms(&self) -> Arc<dyn KmsClient> {
        Arc::clone(&self.kms)
    }

    /// The TLS identity for mTLS between workloads of the policy.
    pub fn tls_identity(&self) -> anyhow::Result<Identity> {
        Ok(Identity::from_attested(&self.attested)?)
    }
}

/// The CAS KMS for Parquet, calling as `cas` does (workload certificate or user credential).
pub fn cas_kms(cas: &CasClient) -> anyhow::Result<Arc<dyn KmsClient>> {
    Ok(Arc::new(
        CasKms::new(cas.clone()).context("starting the CAS KMS client")?,
    ))
}

/// A client of the CAS at `url` pinned to the certificate in `cert`.
pub fn cas_client(url: &str, cert: &std::path::Path) -> anyhow::Result<CasClient> {
    let pem = std::fs::read_to_string(cert)
        .with_context(|| format!("reading the CAS certificate {}", cert.display()))?;
    Ok(CasClient::new(url, fingerprint_of_pem(&pem)?)?)
}

/// Loads an ed25519 key file as written by `cipherlake policy keygen`.
pub fn load_key(file: &std::path::Path) -> anyhow::Result<OwnerSigningKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("reading the key {}", file.display()))?,
    );
    OwnerSigningKey::from_file_text(&text).with_context(|| format!("the key {}", file.display()))
}

/// The KMS for encrypted Parquet, for commands acting as a person (never attested).
#[derive(Debug, Clone, clap::Args)]
pub struct KmsArgs {
    /// The KMS: local:FILE (a parquet-java style master key list, ID:BASE64 entries) or
    /// cas:URL (the CAS KMS: master keys never leave the CAS; each call is signed with the key
    /// of --user, a user of --policy, and allowed by that user's grants).
    #[arg(long, env = "CIPHERLAKE_KMS", value_name = "SPEC")]
    pub kms: Option<String>,
    /// The CAS certificate to pin, for --kms cas:URL.
    #[arg(long = "cas-cert", value_name = "FILE", env = "CIPHERLAKE_CAS_CERT")]
    pub cas_cert: Option<PathBuf>,
    #[command(flatten)]
    pub user: UserArgs,
}

/// A user of a policy: who signs CAS requests.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserArgs {
    /// The policy whose user this is (with --kms cas:URL).
    #[arg(long, value_name = "NAME", env = "CIPHERLAKE_POLICY")]
    pub policy: Option<String>,
    /// The user of the policy (its `users:` entry) signing the CAS requests.
    #[arg(long, value_name = "NAME", env = "CIPHERLAKE_USER")]
    pub user: Option<String>,
    /// The user's private key file (from `cipherlake policy keygen`).
    #[arg(long = "key", value_name = "FILE", env = "CIPHERLAKE_USER_KEY")]
    pub key: Option<PathBuf>,
}

impl UserArgs {
    /// The credential these options name.
    pub fn credential(&self) -> anyhow::Result<Credential> {
        let policy = self
            .policy
            .as_deref()
            .context("--kms cas:URL acts as a user of a policy: give --policy NAME")?;
        let user = self
            .user
            .as_deref()
            .context("--kms cas:URL acts as a user of the policy: give --user NAME --key FILE")?;
        let key = self
            .key
            .as_deref()
            .context("--user needs --key FILE, the user's private key")?;
        Ok(Credential::user(policy, user, load_key(key)?))
    }
}

/// An opened KMS selection.
#[derive(Default)]
pub struct OpenedKms {
    /// The KMS for encrypted Parquet.
    pub kms: Option<Arc<dyn KmsClient>>,
    /// With `cas:`, the CAS client signing as the user (for the CAS-held column master keys of
    /// SQL databases).
    pub cas_user: Option<CasClient>,
}

impl KmsArgs {
    /// Opens the selected KMS, if any.
    pub async fn open(&self) -> anyhow::Result<Option<Arc<dyn KmsClient>>> {
        Ok(self.open_with_user()?.kms)
    }

    /// As [`KmsArgs::open`], also keeping the user's CAS client.
    pub fn open_with_user(&self) -> anyhow::Result<OpenedKms> {
        let Some(spec) = &self.kms else {
            return Ok(OpenedKms::default());
        };
        match spec.parse::<KmsSpec>()? {
            KmsSpec::Cas(url) => {
                let cas = self.cas(&url)?.with_credential(self.user.credential()?);
                Ok(OpenedKms {
                    kms: Some(cas_kms(&cas)?),
                    cas_user: Some(cas),
                })
            }
            local => Ok(OpenedKms {
                kms: Some(local.open()?),
                cas_user: None,
            }),
        }
    }

    /// The CAS client for `url`, pinned with --cas-cert.
    pub fn cas(&self, url: &str) -> anyhow::Result<CasClient> {
        let cert = self
            .cas_cert
            .as_deref()
            .context("--kms cas:URL needs --cas-cert FILE (the CAS's tls-cert.pem)")?;
        cas_client(url, cert)
    }

    /// Opens the selected KMS; fails when none is selected.
    pub async fn require(&self, what: &str) -> anyhow::Result<Arc<dyn KmsClient>> {
        self.open()
            .await?
            .with_context(|| format!("{what} needs --kms local:FILE|cas:URL"))
    }
}
