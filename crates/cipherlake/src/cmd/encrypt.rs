//! The `encrypt` operation: commands that write encrypted data (`datagen taxi --encrypt`,
//! `parquet encrypt`) either act as a policy user with wrap grants, or attest as an
//! `operation: encrypt` service, whose grants only wrap. Either way the output stays encrypted
//! and nothing here unwraps a key.

use std::sync::Arc;

use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::encryption::KmsSpec;
use cipherlake_policy::Operation;

use super::workload::{EvidenceArgs, KmsArgs, Performed, WorkloadArgs};

/// The encrypt operation; constructed only here, by the writers of encrypted data.
pub struct Encrypting(());

impl Performed for Encrypting {
    fn operation(&self) -> Operation {
        Operation::Encrypt
    }
}

/// The KMS of a command that writes encrypted data.
#[derive(Debug, Clone, clap::Args)]
pub struct EncryptKmsArgs {
    #[command(flatten)]
    pub kms: KmsArgs,
    /// With --kms cas:URL: attest as this `operation: encrypt` service of --policy (wrap-only
    /// grants) instead of signing as --user.
    #[arg(long, value_name = "SERVICE", conflicts_with = "user")]
    pub service: Option<String>,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

impl EncryptKmsArgs {
    /// The KMS to encrypt with: the attested encrypt service's with --service, else the
    /// user's or the local one.
    pub async fn require(&self, what: &str) -> anyhow::Result<Arc<dyn KmsClient>> {
        let (Some(service), Some(spec)) = (&self.service, &self.kms.kms) else {
            return self.kms.require(what).await;
        };
        let KmsSpec::Cas(url) = spec.parse::<KmsSpec>()? else {
            anyhow::bail!("--service attests to a CAS: it needs --kms cas:URL");
        };
        let workload = WorkloadArgs {
            policy: self.kms.user.policy.clone(),
            service: Some(service.clone()),
            evidence: self.evidence.clone(),
        };
        let attested = workload
            .attest(&self.kms.cas(&url)?, &Encrypting(()))
            .await?;
        Ok(attested.kms())
    }
}
