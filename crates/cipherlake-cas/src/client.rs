//! The CAS client: HTTPS with the CAS certificate pinned (it is self-signed) and, after
//! attestation, the workload certificate as mTLS identity for KMS calls.
//!
//! ```text
//! let cas = CasClient::new("https://cas:8443", pin)?;
//! let attested = cas.attest("taxi", "driver", job, |rd| async move { las_evidence(sock, rd).await }).await?;
//! let kms = cas.with_identity(&attested)?;
//! let wrapped = kms.kms_wrap("taxi-footer", &dek).await?;
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_attest::attester::Attester;
use cipherlake_policy::{Intent, OwnerSigningKey, SignedPolicy, Signer, Target, sign_request};
use rcgen::{CertificateParams, KeyPair};
use reqwest::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CasError;
use crate::api::{
    AttestRequest, AttestResponse, BytesResponse, ErrorBody, EvidenceBody, NonceResponse,
    PlatformRequest, PlatformResponse, PolicyInfo, ProbeResponse, ReleasedConfig,
    RsaDecryptRequest, RsaSignRequest, SIGNED_NONCE, SIGNED_POLICY, SIGNED_SIGNATURE,
    SIGNED_SIGNER, UnwrapRequest, UnwrapResponse, WrapRequest, WrapResponse,
};
use crate::audit::Export;
use crate::binding::{NONCE_LEN, report_data};
use crate::seal::HpkeKeyPair;
use crate::server::tls::{PeerCertPolicy, ServerCertCheck};

/// SHA-256 of a certificate's DER: the pin of the CAS certificate.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// The pin of the first certificate in a PEM file (e.g. the CAS's `tls-cert.pem`).
pub fn fingerprint_of_pem(pem: &str) -> Result<[u8; 32], CasError> {
    let der = first_pem_der(pem)?;
    Ok(fingerprint(&der))
}

fn first_pem_der(pem: &str) -> Result<Vec<u8>, CasError> {
    let mut ders = pem_ders(pem);
    ders.next()
        .ok_or_else(|| CasError::BadRequest("no certificate in the PEM text".into()))?
}

fn pem_ders(pem: &str) -> impl Iterator<Item = Result<Vec<u8>, CasError>> + '_ {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap_or_default();
            let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            BASE64
                .decode(b64)
                .map_err(|_| CasError::BadRequest("a PEM certificate is not base64".into()))
        })
}

/// Accepts exactly the pinned server certificate (constant-time comparison).
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
}

impl PeerCertPolicy for PinnedCert {
    fn accept(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if bool::from(fingerprint(end_entity).ct_eq(&self.pin)) {
            Ok(())
        } else {
            Err(rustls::Error::General(
                "the CAS certificate does not match the pinned fingerprint".into(),
            ))
        }
    }
}

/// A workload's fresh keys for one attestation: a P-256 TLS key with its CSR and an X25519
/// HPKE key.
pub struct AttestKeys {
    tls_key: KeyPair,
    csr_pem: String,
    hpke: HpkeKeyPair,
}

impl std::fmt::Debug for AttestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestKeys").finish_non_exhaustive()
    }
}

impl AttestKeys {
    /// Generates the keys and a CSR for the TLS key.
    pub fn generate() -> Result<Self, CasError> {
        let tls_key = crate::material::p256_key()?;
        let csr = CertificateParams::default()
            .serialize_request(&tls_key)
            .map_err(crate::material::rcgen_error)?;
        let csr_pem = csr.pem().map_err(crate::material::rcgen_error)?;
        Ok(AttestKeys {
            tls_key,
            csr_pem,
            hpke: HpkeKeyPair::generate(),
        })
    }

    /// The CSR, PEM.
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// The HPKE public key.
    pub fn hpke_public_key(&self) -> Vec<u8> {
        self.hpke.public_key()
    }

    /// The report data binding these keys to `intent`, `nonce` and `job_hash`
    /// ([`crate::binding`]).
    pub fn report_data(
        &self,
        intent: Intent,
        nonce: &[u8; NONCE_LEN],
        job_hash: Option<&[u8; 32]>,
    ) -> [u8; 64] {
        let spki = rcgen::PublicKeyData::subject_public_key_info(&self.tls_key);
        report_data(intent, nonce, &spki, &self.hpke.public_key(), job_hash)
    }
}

/// What a successful attestation gives the workload.
pub struct Attested {
    /// The policy.
    pub policy: String,
    /// The service.
    pub service: String,
    /// The workload certificate and the policy CA, PEM.
    pub certificate_chain_pem: String,
    /// The policy CA, PEM.
    pub ca_pem: String,
    /// The TLS private key of the certificate, PKCS#8 DER.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// Certificate expiry, unix seconds.
    pub expires: u64,
    /// The policy version that admitted the workload.
    pub policy_hash: String,
    /// The released configuration (opened with the HPKE key).
    pub config: ReleasedConfig,
}

impl std::fmt::Debug for Attested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attested")
            .field("policy", &self.policy)
            .field("service", &self.service)
            .field("expires", &self.expires)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Evidence from the LAS at `socket` for `report_data` (simulation mode).
pub async fn las_evidence(socket: &Path, report_data: [u8; 64]) -> Result<EvidenceBody, CasError> {
    let attester = Attester::Sim {
        socket: socket.to_path_buf(),
    };
    attester_evidence(&attester, report_data).await
}

/// Evidence from `attester` (configfs-tsm, /dev/sev-guest, a vTPM, Gramine or the LAS) for
/// `report_data`.
pub async fn attester_evidence(
    attester: &Attester,
    report_data: [u8; 64],
) -> Result<EvidenceBody, CasError> {
    let evidence = attester
        .attest(&report_data)
        .await
        .map_err(|e| CasError::Http(format!("collecting evidence: {e}")))?;
    // The VEK a sev-guest attester got from the host travels with the report; DCAP
    // collateral is the verifier's to have.
    let collateral = match &evidence.collateral {
        Some(cipherlake_attest::Collateral::Snp(snp)) => Some(crate::api::CollateralBody::Snp {
            vek: BASE64.encode(
                snp.vek_der()
                    .map_err(|e| CasError::Http(format!("collecting evidence: {e}")))?,
            ),
            chain_pem: None,
        }),
        _ => None,
    };
    Ok(EvidenceBody {
        tee: evidence.tee.as_str().to_string(),
        bytes: BASE64.encode(&evidence.bytes),
        collateral,
    })
}

/// A policy user's or owner's key: the client signs KMS and audit requests with it over a
/// fresh CAS nonce ([`cipherlake_policy::signed_request`]).
pub struct Credential {
    policy: String,
    signer: Signer,
    key: OwnerSigningKey,
}

impl Credential {
    /// User `user` of policy `policy`, signing with `key`.
    pub fn user(policy: &str, user: &str, key: OwnerSigningKey) -> Self {
        Credential {
            policy: policy.to_string(),
            signer: Signer::User(user.to_string()),
            key,
        }
    }

    /// An owner of policy `policy`, signing with its owner key.
    pub fn owner(policy: &str, key: OwnerSigningKey) -> Self {
        Credential {
            policy: policy.to_string(),
            signer: Signer::Owner(key.public_key()),
            key,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// `user:NAME` or `owner:ed25519:HEX`.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("policy", &self.policy)
            .field("signer", &self.signer.to_string())
            .finish_non_exhaustive()
    }
}

/// An HTTPS client of one CAS.
#[derive(Clone, Debug)]
pub struct CasClient {
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    base: String,
    pin: [u8; 32],
    credential: Option<Arc<Credential>>,
}

impl CasClient {
    /// A client of the CAS at `base_url` (`https://host:port`) whose certificate has SHA-256
    /// fingerprint `pin`.
    pub fn new(base_url: &str, pin: [u8; 32]) -> Result<Self, CasError> {
        Self::build(base_url, pin, None)
    }

    fn build(
        base_url: &str,
        pin: [u8; 32],
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, CasError> {
        let verifier = Arc::new(ServerCertCheck::new(PinnedCert { pin }));
        let config = tls_client_config(verifier, identity)?;
        Ok(CasClient {
            http: http_client(config.clone())?,
            tls: Arc::new(config),
            base: base_url.trim_end_matches('/').to_string(),
            pin,
            credential: None,
        })
    }

    /// The same client (CAS, identity, credential) with a connection pool of its own, for use
    /// from another async runtime: pooled connections are driven by the runtime that opened
    /// them, so a pool shared across runtimes stalls when one of them idles.
    pub fn with_own_connections(&self) -> Result<Self, CasError> {
        Ok(CasClient {
            http: http_client((*self.tls).clone())?,
            ..self.clone()
        })
    }

    /// The same CAS, signing KMS and audit requests with `credential` (a policy user or owner;
    /// no attestation: people are outside every TEE).
    pub fn with_credential(&self, credential: Credential) -> Self {
        CasClient {
            credential: Some(Arc::new(credential)),
            ..self.clone()
        }
    }

    /// Sends `body` to `path`, signed with the client's credential over a fresh nonce when it
    /// has one (else as is, with the mTLS identity if any).
    async fn signed_call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CasError> {
        let Some(credential) = &self.credential else {
            return self.call(method, path, body, None).await;
        };
        let bytes = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| CasError::Http(format!("{path}: encoding the request: {e}")))?,
            None => Vec::new(),
        };
        let nonce = self.nonce().await?;
        let nonce_bytes = decode_nonce(&nonce.nonce)?;
        let signature = sign_request(
            &credential.key,
            &credential.policy,
            &credential.signer,
            &nonce_bytes,
            Target {
                method: method.as_str(),
                path,
                body: &bytes,
            },
        );
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(SIGNED_POLICY, &credential.policy)
            .header(SIGNED_SIGNER, credential.signer.to_string())
            .header(SIGNED_NONCE, &nonce.nonce)
            .header(SIGNED_SIGNATURE, hex::encode(signature));
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let (status, reply) = exchange(request, path).await?;
        json_reply(path, status, &reply)
    }

    /// The same CAS, presenting the attested workload certificate (mTLS) for KMS calls.
    pub fn with_identity(&self, attested: &Attested) -> Result<Self, CasError> {
        let chain = pem_ders(&attested.certificate_chain_pem)
            .map(|der| der.map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(attested.key_pkcs8_der.to_vec()));
        Self::build(&self.base, self.pin, Some((chain, key)))
    }

    /// The attestation request for `intent`: fresh keys, a nonce, evidence from `evidence`.
    async fn attestation<F, Fut>(
        &self,
        policy: &str,
        service: &str,
        intent: Intent,
        job_hash: Option<[u8; 32]>,
        evidence: F,
    ) -> Result<(AttestKeys, AttestRequest), CasError>
    where
        F: FnOnce([u8; 64]) -> Fut,
        Fut: Future<Output = Result<EvidenceBody, CasError>>,
    {
        let keys = AttestKeys::generate()?;
        let nonce = self.nonce().await?;
        let nonce_bytes = decode_nonce(&nonce.nonce)?;
        let evidence = evidence(keys.report_data(intent, &nonce_bytes, job_hash.as_ref())).await?;
        let request = AttestRequest {
            policy: policy.to_string(),
            service: service.to_string(),
            operation: intent.as_str().to_string(),
            nonce: nonce.nonce,
            evidence,
            csr: keys.csr_pem().to_string(),
            hpke_public_key: BASE64.encode(keys.hpke_public_key()),
            job_hash: job_hash.map(|j| format!("sha256:{}", hex::encode(j))),
        };
        Ok((keys, request))
    }

    /// Probes whether this code would be admitted as `service` (`POST /v1/attest/probe`): no
    /// certificate, no KMS rights; the configuration only for a `debug: true` service of a
    /// sim policy (opened here), otherwise names and sizes.
    pub async fn probe<F, Fut>(
        &self,
        policy: &str,
        service: &str,
        job_hash: Option<[u8; 32]>,
        evidence: F,
    ) -> Result<(ProbeResponse, Option<ReleasedConfig>), CasError>
    where
        F: FnOnce([u8; 64]) -> Fut,
        Fut: Future<Output = Result<EvidenceBody, CasError>>,
    {
        let (keys, request) = self
            .attestation(policy, service, Intent::Probe, job_hash, evidence)
            .await?;
        let response: ProbeResponse = self
            .call(Method::POST, "/v1/attest/probe", Some(&request), None)
            .await?;
        let config = match &response.config {
            Some(sealed) => Some(open_config(keys.hpke.open(sealed, policy, service)?)?),
            None => None,
        };
        Ok((response, config))
    }

    /// Sends `body` (raw bytes) to `path`; returns the status and the body. For tools and
    /// tests that need the exact reply.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), CasError> {
        self.raw_with_headers(method, path, body, &[]).await
    }

    /// As [`CasClient::raw`], with extra headers (e.g. a hand-made request signature).
    pub async fn raw_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Vec<u8>), CasError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        exchange(request, path).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bearer: Option<&str>,
    ) -> Result<T, CasError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let (status, bytes) = exchange(request, path).await?;
        json_reply(path, status, &bytes)
    }

    /// Service health.
    pub async fn healthz(&self) -> Result<(), CasError> {
        let (status, _) = self.raw(Method::GET, "/healthz", None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(CasError::Http(format!("/healthz: {status}")))
        }
    }

    /// `GET /healthz`: `{"status": "ok", "sealing": …}`.
    pub async fn health(&self) -> Result<serde_json::Value, CasError> {
        self.call::<(), _>(Method::GET, "/healthz", None, None)
            .await
    }

    /// Applies a signed policy version (`PUT /v1/policies/{name}`).
    pub async fn apply_policy(
        &self,
        name: &str,
        signed: &SignedPolicy,
    ) -> Result<PolicyInfo, CasError> {
        self.call(
            Method::PUT,
            &format!("/v1/policies/{name}"),
            Some(signed),
            None,
        )
        .await
    }

    /// The public parts of a policy (`GET /v1/policies/{name}`).
    pub async fn policy(&self, name: &str) -> Result<PolicyInfo, CasError> {
        self.call::<(), _>(Method::GET, &format!("/v1/policies/{name}"), None, None)
            .await
    }

    /// The full document of a policy, as its owner (`POST /v1/policies/{name}/read`, signed
    /// over a fresh CAS nonce). Never contains secret values.
    pub async fn policy_document(
        &self,
        name: &str,
        owner: &cipherlake_policy::OwnerSigningKey,
    ) -> Result<crate::api::PolicyDocument, CasError> {
        let nonce = self.nonce().await?;
        let signature = cipherlake_policy::sign_read(owner, name, &decode_nonce(&nonce.nonce)?);
        let body = crate::api::OwnerReadRequest {
            owner: owner.public_key().to_string(),
            nonce: nonce.nonce,
            signature: hex::encode(signature),
        };
        self.call(
            Method::POST,
            &format!("/v1/policies/{name}/read"),
            Some(&body),
            None,
        )
        .await
    }

    /// The full document of a policy, read with the client's credential (an owner, or a user
    /// with `read_policy`). Never contains secret values.
    pub async fn policy_document_signed(
        &self,
        name: &str,
    ) -> Result<crate::api::PolicyDocument, CasError> {
        self.signed_call::<(), _>(Method::POST, &format!("/v1/policies/{name}/read"), None)
            .await
    }

    /// Registers a LAS platform key with the operator token.
    pub async fn register_platform(
        &self,
        operator_token: &str,
        public_key: &str,
    ) -> Result<PlatformResponse, CasError> {
        let body = PlatformRequest {
            public_key: public_key.to_string(),
        };
        self.call(
            Method::POST,
            "/v1/platforms",
            Some(&body),
            Some(operator_token),
        )
        .await
    }

    /// Imports collateral for the CAS to trust (`PUT /v1/collateral`, operator token).
    pub async fn import_collateral(
        &self,
        operator_token: &str,
        collateral: &[u8],
    ) -> Result<crate::store::StoredCollateral, CasError> {
        let body = crate::api::CollateralImport {
            body: BASE64.encode(collateral),
        };
        self.call(
            Method::PUT,
            "/v1/collateral",
            Some(&body),
            Some(operator_token),
        )
        .await
    }

    /// The collateral the CAS holds (`GET /v1/collateral`, operator token).
    pub async fn collateral(
        &self,
        operator_token: &str,
    ) -> Result<Vec<crate::store::StoredCollateral>, CasError> {
        self.call::<(), _>(Method::GET, "/v1/collateral", None, Some(operator_token))
            .await
    }

    /// A fresh nonce.
    pub async fn nonce(&self) -> Result<NonceResponse, CasError> {
        self.call::<(), _>(Method::POST, "/v1/attest/nonce", None, None)
            .await
    }

    /// Sends an attestation request as is.
    pub async fn attest_request(
        &self,
        request: &AttestRequest,
    ) -> Result<AttestResponse, CasError> {
        self.call(Method::POST, "/v1/attest", Some(request), None)
            .await
    }

    /// Attests this workload performing `operation`: generates keys, gets a nonce, obtains
    /// evidence binding them (and the operation and job) from `evidence` (the LAS,
    /// configfs-tsm, ...), sends it and opens the sealed configuration.
    pub async fn attest<F, Fut>(
        &self,
        policy: &str,
        service: &str,
        operation: cipherlake_policy::Operation,
        job_hash: Option<[u8; 32]>,
        evidence: F,
    ) -> Result<Attested, CasError>
    where
        F: FnOnce([u8; 64]) -> Fut,
        Fut: Future<Output = Result<EvidenceBody, CasError>>,
    {
        let (keys, request) = self
            .attestation(
                policy,
                service,
                Intent::Perform(operation),
                job_hash,
                evidence,
            )
            .await?;
        let response = self.attest_request(&request).await?;
        open_response(&keys, policy, service, response)
    }

    /// Registers or renews this worker's URL (needs an identity); returns how long the
    /// registration lasts.
    pub async fn register_worker(&self, url: &str) -> Result<std::time::Duration, CasError> {
        let body = crate::api::WorkerRegistration {
            url: url.to_string(),
        };
        let reply: crate::api::WorkerRegistered = self
            .call(Method::POST, "/v1/workers", Some(&body), None)
            .await?;
        Ok(std::time::Duration::from_secs(reply.ttl_secs))
    }

    /// Removes this worker's URL (needs an identity).
    pub async fn deregister_worker(&self, url: &str) -> Result<(), CasError> {
        let body = crate::api::WorkerRegistration {
            url: url.to_string(),
        };
        let request = self
            .http
            .request(Method::DELETE, format!("{}/v1/workers", self.base))
            .json(&body);
        let (status, bytes) = exchange(request, "/v1/workers").await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(error_from_reply(status, &bytes))
        }
    }

    /// The live workers of this workload's policy registered as `service` (needs an identity).
    pub async fn workers(&self, service: &str) -> Result<Vec<String>, CasError> {
        if service.is_empty()
            || !service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(CasError::BadRequest(format!(
                "{service:?} is not a service name"
            )));
        }
        let path = format!("/v1/workers?service={service}");
        let reply: crate::api::WorkerList =
            self.call::<(), _>(Method::GET, &path, None, None).await?;
        Ok(reply.workers)
    }

    /// Wraps a data key under master key `key_id` (needs an identity or a user credential).
    pub async fn kms_wrap(&self, key_id: &str, key: &[u8]) -> Result<String, CasError> {
        let body = WrapRequest {
            key_id: key_id.to_string(),
            key: BASE64.encode(key),
        };
        let reply: WrapResponse = self
            .signed_call(Method::POST, "/v1/kms/wrap", Some(&body))
            .await?;
        Ok(reply.wrapped)
    }

    /// Unwraps a data key wrapped under `key_id` (needs an identity or a user credential).
    pub async fn kms_unwrap(
        &self,
        key_id: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CasError> {
        let body = UnwrapRequest {
            key_id: key_id.to_string(),
            wrapped: wrapped.to_string(),
        };
        let reply: UnwrapResponse = self
            .signed_call(Method::POST, "/v1/kms/unwrap", Some(&body))
            .await?;
        decode_secret(&reply.key)
    }

    /// RSA-OAEP-SHA-1 decryption with `key_id` (needs an identity or a user credential).
    pub async fn kms_rsa_decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CasError> {
        let body = RsaDecryptRequest {
            key_id: key_id.to_string(),
            ciphertext: BASE64.encode(ciphertext),
        };
        let reply: BytesResponse = self
            .signed_call(Method::POST, "/v1/kms/rsa-decrypt", Some(&body))
            .await?;
        decode_secret(&reply.value)
    }

    /// RSA PKCS#1 v1.5 SHA-256 signature with `key_id` (needs an identity or a user credential).
    pub async fn kms_rsa_sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, CasError> {
        let body = RsaSignRequest {
            key_id: key_id.to_string(),
            message: BASE64.encode(message),
        };
        let reply: BytesResponse = self
            .signed_call(Method::POST, "/v1/kms/rsa-sign", Some(&body))
            .await?;
        Ok(decode_secret(&reply.value)?.to_vec())
    }

    /// The public key (PEM) of key pair `key_id` (needs an identity or a user credential
    /// granted the key).
    pub async fn kms_public_key(&self, key_id: &str) -> Result<String, CasError> {
        let body = crate::api::PublicKeyRequest {
            key_id: key_id.to_string(),
        };
        let reply: crate::api::PublicKeyResponse = self
            .signed_call(Method::POST, "/v1/kms/public-key", Some(&body))
            .await?;
        Ok(reply.public_pem)
    }

    /// The exported audit log, read with the client's credential (a policy owner or a user
    /// with `read_audit`).
    pub async fn audit(&self) -> Result<Export, CasError> {
        if self.credential.is_none() {
            return Err(CasError::Unauthorized(
                "reading the audit log needs a policy owner's or read_audit user's key, or the operator token".into(),
            ));
        }
        self.signed_call::<(), _>(Method::GET, "/v1/audit", None)
            .await
    }

    /// The exported audit log, read with the operator token.
    pub async fn audit_as_operator(&self, operator_token: &str) -> Result<Export, CasError> {
        self.call::<(), _>(Method::GET, "/v1/audit", None, Some(operator_token))
            .await
    }
}

/// The client TLS configuration for talking to a CAS: ring, `verifier` deciding about the
/// server certificate, an optional client identity (mTLS), HTTP/1.1.
pub(crate) fn tls_client_config(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, CasError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::server::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CasError::Crypto(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| CasError::Crypto(format!("TLS client identity: {e}")))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An HTTPS client over `config` with the CAS client's request timeout.
pub(crate) fn http_client(config: rustls::ClientConfig) -> Result<reqwest::Client, CasError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| CasError::Http(e.to_string()))
}

/// Sends `request` (to `path`, named in errors); returns the status and the body.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    path: &str,
) -> Result<(StatusCode, Vec<u8>), CasError> {
    let response = request
        .send()
        .await
        .map_err(|e| CasError::Http(format!("{path}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CasError::Http(format!("{path}: {e}")))?;
    Ok((status, bytes.to_vec()))
}

/// The JSON body of a successful reply, or the CAS's error.
pub(crate) fn json_reply<T: DeserializeOwned>(
    path: &str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, CasError> {
    if status.is_success() {
        serde_json::from_slice(bytes)
            .map_err(|e| CasError::Http(format!("{path}: unexpected reply: {e}")))
    } else {
        Err(error_from_reply(status, bytes))
    }
}

/// Decodes a hex nonce.
pub fn decode_nonce(text: &str) -> Result<[u8; NONCE_LEN], CasError> {
    let mut nonce = [0u8; NONCE_LEN];
    hex::decode_to_slice(text, &mut nonce)
        .map_err(|_| CasError::Http("the CAS sent a malformed nonce".into()))?;
    Ok(nonce)
}

fn decode_secret(b64: &str) -> Result<Zeroizing<Vec<u8>>, CasError> {
    BASE64
        .decode(b64)
        .map(Zeroizing::new)
        .map_err(|_| CasError::Http("the CAS sent malformed base64".into()))
}

/// Opens an attestation reply with the keys that requested it.
pub fn open_response(
    keys: &AttestKeys,
    policy: &str,
    service: &str,
    response: AttestResponse,
) -> Result<Attested, CasError> {
    let plaintext = keys.hpke.open(&response.config, policy, service)?;
    check_release(keys, &response, &plaintext)?;
    let config = open_config(plaintext)?;
    Ok(Attested {
        policy: policy.to_string(),
        service: service.to_string(),
        certificate_chain_pem: response.certificate_chain_pem,
        ca_pem: response.ca_pem,
        key_pkcs8_der: Zeroizing::new(keys.tls_key.serialize_der()),
        expires: response.expires,
        policy_hash: response.policy_hash,
        config,
    })
}

/// The released configuration in an opened seal.
fn open_config(plaintext: Zeroizing<Vec<u8>>) -> Result<ReleasedConfig, CasError> {
    serde_json::from_slice(&plaintext)
        .map_err(|_| CasError::Http("the sealed configuration is not valid JSON".into()))
}

/// The reply's certificate must be for this workload's key, issued by the reply's policy CA and
/// bind exactly this configuration (its release digest): anyone can seal to the HPKE key, so
/// a relay between the workload and the CAS could otherwise swap the configuration under a
/// genuine certificate.
fn check_release(
    keys: &AttestKeys,
    response: &AttestResponse,
    plaintext: &[u8],
) -> Result<(), CasError> {
    let tampered = |what: &str| {
        CasError::Http(format!(
            "the CAS reply was tampered with on its way ({what}); is --cas-cert the CAS's certificate?"
        ))
    };
    let leaf = first_pem_der(&response.certificate_chain_pem)?;
    let ca = first_pem_der(&response.ca_pem)?;
    let own = rcgen::PublicKeyData::subject_public_key_info(&keys.tls_key);
    if crate::cas_evidence::certificate_spki(&leaf)? != own {
        return Err(tampered("the certificate is not for this workload's key"));
    }
    crate::ca::verify_issued_by(&leaf, &ca, crate::service::now())
        .map_err(|_| tampered("the certificate is not issued by the policy CA sent with it"))?;
    let digest: [u8; 32] = Sha256::digest(plaintext).into();
    match crate::ca::release_digest(&leaf)? {
        Some(bound) if bool::from(bound.ct_eq(&digest)) => Ok(()),
        _ => Err(tampered(
            "the configuration is not the one the certificate binds",
        )),
    }
}

fn error_from_reply(status: StatusCode, bytes: &[u8]) -> CasError {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) else {
        return CasError::Http(format!("status {status}"));
    };
    // The message is the server error's full text; the variant adds its prefix back.
    let bare = |prefix: &str| {
        body.message
            .strip_prefix(prefix)
            .unwrap_or(&body.message)
            .to_owned()
    };
    match status {
        StatusCode::BAD_REQUEST => CasError::BadRequest(bare("bad request: ")),
        StatusCode::UNAUTHORIZED => CasError::Unauthorized(bare("unauthorized: ")),
        StatusCode::FORBIDDEN if !body.reasons.is_empty() => CasError::Denied(body.reasons),
        StatusCode::FORBIDDEN => CasError::Forbidden(bare("forbidden: ")),
        StatusCode::NOT_FOUND => CasError::NotFound(bare("not found: ")),
        StatusCode::CONFLICT => match body.current {
            Some(current) => CasError::Stale {
                message: body.message,
                current,
                found: body.found.filter(|f| f != "null"),
            },
            None => CasError::Conflict(bare("conflict: ")),
        },
        _ => CasError::Http(format!("status {status}: {}", body.message)),
    }
}
