//! JSON bodies of the HTTP API (see `docs/api.md`), shared by server and client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::Sealed;

/// The public parts of a policy's current version (`GET /v1/policies/{name}`, and the reply
/// to `PUT`). Never the text (which may hold inline secrets) nor any secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy name.
    pub name: String,
    /// The current version's hash, `sha256:HEX`.
    pub hash: String,
    /// Its predecessor's hash.
    pub predecessor: Option<String>,
    /// The owner key that signed it.
    pub signer: String,
    /// The owners of this version.
    pub owners: Vec<String>,
    /// Its services.
    pub services: Vec<String>,
    /// Its secrets' names (never values).
    pub secrets: Vec<String>,
    /// When it was applied, unix seconds.
    pub applied: u64,
    /// The policy's workload CA certificate, PEM.
    pub ca_pem: String,
}

/// `POST /v1/attest/nonce` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceResponse {
    /// 32 random bytes, hex.
    pub nonce: String,
    /// Expiry, unix seconds.
    pub expires: u64,
}

/// Evidence as sent to the CAS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBody {
    /// `sim`, `sgx`, `tdx`, `sev-snp` or `azure`.
    pub tee: String,
    /// The evidence bytes, base64.
    pub bytes: String,
    /// Collateral for DCAP quotes and SEV-SNP reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<CollateralBody>,
}

/// Collateral as sent to the CAS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum CollateralBody {
    /// Intel DCAP collateral, the JSON document, base64.
    Dcap {
        /// base64 of the collateral JSON.
        json: String,
    },
    /// AMD SEV-SNP: the VCEK/VLEK (DER or PEM, base64) and optionally its ASK/ARK chain, PEM.
    Snp {
        /// base64 of the VCEK or VLEK certificate.
        vek: String,
        /// The ASK/ARK chain, PEM.
        #[serde(default)]
        chain_pem: Option<String>,
    },
}

/// `POST /v1/attest` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The policy name.
    pub policy: String,
    /// The service in the policy.
    pub service: String,
    /// The operation the evidence binds: `run`, `worker`, `encrypt`, `serve` (to
    /// `POST /v1/attest`) or `probe` (to `POST /v1/attest/probe`). It must be the service's.
    pub operation: String,
    /// The nonce from `POST /v1/attest/nonce`, hex.
    pub nonce: String,
    /// The evidence.
    pub evidence: EvidenceBody,
    /// A PKCS#10 CSR for the workload's TLS key, PEM.
    pub csr: String,
    /// The workload's X25519 HPKE public key, base64 of 32 bytes.
    pub hpke_public_key: String,
    /// SHA-256 of the job file, `sha256:HEX` or HEX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_hash: Option<String>,
}

/// `POST /v1/attest` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The workload certificate followed by the policy CA, PEM.
    pub certificate_chain_pem: String,
    /// The policy CA alone, PEM (the trust anchor for peers of the same policy).
    pub ca_pem: String,
    /// Certificate expiry, unix seconds.
    pub expires: u64,
    /// The policy version that admitted the workload.
    pub policy_hash: String,
    /// The configuration ([`ReleasedConfig`] as JSON), sealed to the HPKE key.
    pub config: Sealed,
}

/// `POST /v1/attest/probe` reply: the workload would be admitted. It gets no certificate and no
/// KMS rights; the released values only when the service is `debug: true` in a policy that
/// lists sim, otherwise their names and sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResponse {
    /// The policy version that would admit the workload.
    pub policy_hash: String,
    /// The service's operation.
    pub operation: String,
    /// Names and sizes of what the service would receive.
    pub summary: ConfigSummary,
    /// For a `debug: true` service of a sim policy: the configuration ([`ReleasedConfig`] as
    /// JSON), sealed to the HPKE key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Sealed>,
}

/// Names and sizes (bytes) of a released configuration, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// Environment variable → size of its value.
    pub env: BTreeMap<String, usize>,
    /// Size of each argument.
    pub args: Vec<usize>,
    /// File path → size of its content.
    pub files: BTreeMap<String, usize>,
    /// The console setting.
    pub console: String,
    /// The KMS keys granted and their rights (`key: unwrap,wrap`).
    pub kms_keys: BTreeMap<String, String>,
}

impl ConfigSummary {
    /// The summary of `config` with the service's `kms_keys`.
    pub fn of(config: &ReleasedConfig, kms_keys: BTreeMap<String, String>) -> Self {
        ConfigSummary {
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.len()))
                .collect(),
            args: config.args.iter().map(|v| v.len()).collect(),
            files: config
                .files
                .iter()
                .map(|(k, v)| (k.clone(), v.len()))
                .collect(),
            console: config.console.clone(),
            kms_keys,
        }
    }
}

/// The configuration released to an attested workload (the plaintext of
/// [`AttestResponse::config`]). Values are secrets: zeroized on drop, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedConfig {
    /// Environment variables.
    pub env: BTreeMap<String, Zeroizing<String>>,
    /// Command-line arguments.
    pub args: Vec<Zeroizing<String>>,
    /// Files (absolute path → content).
    pub files: BTreeMap<String, Zeroizing<String>>,
    /// What the job may print (`none`, `row-counts`, `full`): the service's `console` setting.
    #[serde(default)]
    pub console: String,
    /// What the job trusts of each SQL database's Always Encrypted catalog: the service's
    /// `databases` section (a database not listed trusts no column master key path).
    #[serde(default)]
    pub databases: BTreeMap<String, cipherlake_policy::DatabasePin>,
    /// For a `worker` service: the `run` services whose plan fragments it may serve, those
    /// granted `unwrap` on every key the worker may unwrap (a worker never reads for a driver
    /// what the driver could not read itself).
    #[serde(default)]
    pub clients: Vec<String>,
}

impl std::fmt::Debug for ReleasedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleasedConfig")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("args", &self.args.len())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("console", &self.console)
            .field("databases", &self.databases.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Header naming the policy of a signed request's signer.
pub const SIGNED_POLICY: &str = "x-cipherlake-policy";
/// Header naming the signer of a signed request: `user:NAME` or `owner:ed25519:HEX`.
pub const SIGNED_SIGNER: &str = "x-cipherlake-signer";
/// Header carrying the CAS nonce a request is signed over, hex.
pub const SIGNED_NONCE: &str = "x-cipherlake-nonce";
/// Header carrying the ed25519 signature of a request, hex
/// ([`cipherlake_policy::request_message`]).
pub const SIGNED_SIGNATURE: &str = "x-cipherlake-signature";

/// `POST /v1/platforms` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformRequest {
    /// The LAS platform public key, `ed25519:HEX` or HEX (as printed by `cipherlake las init-key`).
    pub public_key: String,
}

/// `POST /v1/platforms` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformResponse {
    /// The key, hex.
    pub public_key: String,
    /// False if it was already registered.
    pub added: bool,
}

/// `POST /v1/kms/wrap` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapRequest {
    /// The master key id: an `aes-256` secret of the caller's policy listed in its `kms_keys`.
    pub key_id: String,
    /// The key to wrap, base64.
    pub key: String,
}

/// `POST /v1/kms/wrap` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapResponse {
    /// base64(nonce ‖ ciphertext ‖ tag), AAD = key id (Parquet `InMemoryKMS` format).
    pub wrapped: String,
}

/// `POST /v1/kms/unwrap` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwrapRequest {
    /// The master key id.
    pub key_id: String,
    /// The wrapped key as returned by wrap.
    pub wrapped: String,
}

/// `POST /v1/kms/unwrap` reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwrapResponse {
    /// The unwrapped key, base64.
    pub key: Zeroizing<String>,
}

impl std::fmt::Debug for UnwrapResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnwrapResponse(redacted)")
    }
}

/// `POST /v1/kms/rsa-decrypt` request (RSA-OAEP with SHA-1, as Always Encrypted CEKs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsaDecryptRequest {
    /// An `rsa-2048` or `rsa-3072` secret listed in the caller's `kms_keys`.
    pub key_id: String,
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST /v1/kms/rsa-sign` request (RSASSA-PKCS1-v1_5 over SHA-256 of the message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsaSignRequest {
    /// An `rsa-2048` or `rsa-3072` secret listed in the caller's `kms_keys`.
    pub key_id: String,
    /// The message, base64.
    pub message: String,
}

/// `POST /v1/kms/public-key` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyRequest {
    /// A key pair secret the caller is granted (any right).
    pub key_id: String,
}

/// `POST /v1/kms/public-key` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyResponse {
    /// The public key, SubjectPublicKeyInfo PEM.
    pub public_pem: String,
}

/// Reply of `rsa-decrypt` (`plaintext`) and `rsa-sign` (`signature`): base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BytesResponse {
    /// base64.
    pub value: Zeroizing<String>,
}

impl std::fmt::Debug for BytesResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BytesResponse(redacted)")
    }
}

/// The body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine code (`bad-request`, `attestation-denied`, `stale-predecessor`, ...).
    pub error: String,
    /// Human-readable message.
    pub message: String,
    /// Attestation: every reason, `code: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Stale update: the current version's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Stale update: the predecessor the update named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// `POST /v1/cas/evidence` request: the verifier's fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasEvidenceRequest {
    /// 32 random bytes chosen by the verifier, hex.
    pub nonce: String,
}

/// `POST /v1/cas/evidence` reply: the CAS's evidence binding the nonce and its TLS key
/// ([`crate::cas_evidence::report_data`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasEvidenceResponse {
    /// The evidence.
    pub evidence: EvidenceBody,
}

/// `POST /v1/policies/{name}/read` request: an owner's signed read of the full document
/// ([`cipherlake_policy::read_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerReadRequest {
    /// The owner key, `ed25519:HEX`.
    pub owner: String,
    /// A fresh nonce from `POST /v1/attest/nonce`, hex (single use).
    pub nonce: String,
    /// The ed25519 signature over the read message, hex (128 digits).
    pub signature: String,
}

/// `POST /v1/policies/{name}/read` reply: the current version's document without any secret
/// value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// The public parts ([`PolicyInfo`]).
    pub info: PolicyInfo,
    /// The policy as JSON, every inline secret `value` removed.
    pub document: serde_json::Value,
    /// Each secret's kind, where its value comes from and, for key pairs and certificates,
    /// the public part.
    pub secrets: BTreeMap<String, SecretSummary>,
}

/// What an owner may see of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSummary {
    /// The kind (`ascii`, `aes-256`, `rsa-2048`, `x509`, ...).
    pub kind: String,
    /// `inline`, `generated`, `imported` or `none` (no value yet).
    pub source: String,
    /// Key pairs: the public key, PEM; certificates: the certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_pem: Option<String>,
}

/// `POST /v1/workers` and `DELETE /v1/workers` request: the caller's worker URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// `https://HOST:PORT`, where the worker serves.
    pub url: String,
}

/// `POST /v1/workers` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRegistered {
    /// Seconds the registration lasts unless renewed.
    pub ttl_secs: u64,
}

/// `GET /v1/workers?service=S` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerList {
    /// The live workers' URLs, sorted.
    pub workers: Vec<String>,
}

/// `PUT /v1/collateral` request (operator token): collateral the CAS is to trust.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollateralImport {
    /// base64 of DCAP collateral JSON (as PCCS serves it) or of an AMD CRL (DER or PEM).
    pub body: String,
}
