//! This process as an attested workload: which policy and service it claims, how it collects
//! evidence, and the KMS selection (`--kms local:FILE|cas:URL`) shared by every command that
//! reads or writes encrypted Parquet.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cipherlake_attest::attester::{DEFAULT_LAS_SOCKET, DetectConfig, detect};
use cipherlake_cas::client::{Attested, CasClient, attester_evidence, fingerprint_of_pem};
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::encryption::{CasKms, KmsSpec};

/// The policy and service this process attests as, and where it finds evidence.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadArgs {
    /// The policy to attest under.
    #[arg(long, value_name = "NAME", env = "CIPHERLAKE_POLICY")]
    pub policy: Option<String>,
    /// The service of the policy to attest as.
    #[arg(long, value_name = "SERVICE", env = "CIPHERLAKE_SERVICE")]
    pub service: Option<String>,
    /// The LAS socket (simulation mode; configfs-tsm and Gramine are used first when present).
    #[arg(
        long,
        value_name = "PATH",
        env = "CIPHERLAKE_LAS_SOCKET",
        default_value = DEFAULT_LAS_SOCKET
    )]
    pub las_socket: PathBuf,
}

impl WorkloadArgs {
    /// Attests to `cas` with `job_hash` bound into the report data, through the first
    /// attestation interface found (configfs-tsm, Gramine, the LAS).
    pub async fn attest(
        &self,
        cas: &CasClient,
        job_hash: Option<[u8; 32]>,
    ) -> anyhow::Result<Attested> {
        let policy = self
            .policy
            .as_deref()
            .context("--policy NAME is required to attest (or set CIPHERLAKE_POLICY)")?;
        let service = self
            .service
            .as_deref()
            .context("--service SERVICE is required to attest (or set CIPHERLAKE_SERVICE)")?;
        let attester = detect(&DetectConfig {
            las_socket: self.las_socket.clone(),
            ..DetectConfig::default()
        })?;
        let attested = cas
            .attest(policy, service, job_hash, |report_data| async move {
                attester_evidence(&attester, report_data).await
            })
            .await
            .with_context(|| format!("attesting as {policy}/{service}"))?;
        tracing::info!(
            policy,
            service,
            policy_hash = %attested.policy_hash,
            "attested"
        );
        Ok(attested)
    }
}

/// A client of the CAS at `url` pinned to the certificate in `cert`.
pub fn cas_client(url: &str, cert: &std::path::Path) -> anyhow::Result<CasClient> {
    let pem = std::fs::read_to_string(cert)
        .with_context(|| format!("reading the CAS certificate {}", cert.display()))?;
    Ok(CasClient::new(url, fingerprint_of_pem(&pem)?)?)
}

/// The CAS KMS for an attested workload: its certificate is the mTLS identity.
pub fn cas_kms(cas: &CasClient, attested: &Attested) -> anyhow::Result<Arc<dyn KmsClient>> {
    let kms = CasKms::new(cas.with_identity(attested)?).context("starting the CAS KMS client")?;
    Ok(Arc::new(kms))
}

/// The KMS for encrypted Parquet.
#[derive(Debug, Clone, clap::Args)]
pub struct KmsArgs {
    /// The KMS: local:FILE (a parquet-java style master key list, ID:BASE64 entries) or
    /// cas:URL (the CAS KMS: this process first attests as --policy/--service and the CAS
    /// wraps and unwraps keys for it; master keys never leave the CAS).
    #[arg(long, env = "CIPHERLAKE_KMS", value_name = "SPEC")]
    pub kms: Option<String>,
    /// The CAS certificate to pin, for --kms cas:URL.
    #[arg(long = "cas-cert", value_name = "FILE", env = "CIPHERLAKE_CAS_CERT")]
    pub cas_cert: Option<PathBuf>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// An opened KMS selection.
#[derive(Default)]
pub struct OpenedKms {
    /// The KMS for encrypted Parquet.
    pub kms: Option<Arc<dyn KmsClient>>,
    /// With `cas:`, the CAS client presenting this workload's certificate (for the CAS-held
    /// column master keys of SQL databases).
    pub cas_identity: Option<CasClient>,
}

impl KmsArgs {
    /// Opens the selected KMS, if any; `cas:` attests this process first.
    pub async fn open(&self) -> anyhow::Result<Option<Arc<dyn KmsClient>>> {
        Ok(self.open_with_identity().await?.kms)
    }

    /// As [`KmsArgs::open`], also keeping the attested CAS identity.
    pub async fn open_with_identity(&self) -> anyhow::Result<OpenedKms> {
        let Some(spec) = &self.kms else {
            return Ok(OpenedKms::default());
        };
        match spec.parse::<KmsSpec>()? {
            KmsSpec::Cas(url) => {
                let cert = self
                    .cas_cert
                    .as_deref()
                    .context("--kms cas:URL needs --cas-cert FILE (the CAS's tls-cert.pem)")?;
                let cas = cas_client(&url, cert)?;
                let attested = self.workload.attest(&cas, None).await?;
                Ok(OpenedKms {
                    kms: Some(cas_kms(&cas, &attested)?),
                    cas_identity: Some(cas.with_identity(&attested)?),
                })
            }
            local => Ok(OpenedKms {
                kms: Some(local.open()?),
                cas_identity: None,
            }),
        }
    }

    /// Opens the selected KMS; fails when none is selected.
    pub async fn require(&self, what: &str) -> anyhow::Result<Arc<dyn KmsClient>> {
        self.open()
            .await?
            .with_context(|| format!("{what} needs --kms local:FILE|cas:URL"))
    }
}
