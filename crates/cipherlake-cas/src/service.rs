//! The CAS operations, independent of HTTP: open the data directory, apply policies, issue
//! nonces, register LAS platforms, attest workloads, serve KMS calls, export the audit log.
//! Every operation that changes state commits its audit entry in the same transaction.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_attest::{Evidence, Tee, Verifier, VerifyOptions, sim, verify_binding};
use cipherlake_policy::{
    Intent, Keyword, KmsGrants, Operation, Policy, Request, SecretKind, SecretValue, SignedPolicy,
    UpdateError, check_import, evaluate, render, verify_update,
};
use rusqlite::Transaction;
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CasError;
use crate::api::{
    AttestRequest, AttestResponse, ConfigSummary, NonceResponse, PlatformResponse, PolicyInfo,
    ProbeResponse, ReleasedConfig,
};
use crate::at_rest::{FileMasterKey, MasterKeyProvider, Sealer, random};
use crate::audit::AuditLog;
use crate::binding::{NONCE_LEN, report_data};
use crate::ca::{self, VerifiedCsr};
use crate::integrity::Integrity;
use crate::kms;
use crate::material;
use crate::sealing::{EpochCounter, Sealing, TpmMasterKey, WrappedMasterKey};
use crate::store::{self, Store, StoredPolicy};
use crate::workers::WorkerRegistry;

mod owner_read;
mod signed;

pub use signed::{AuditReader, SignedHeaders};

/// Configuration of a CAS instance.
#[derive(Clone)]
pub struct Config {
    /// The data directory (database, master key, operator token, TLS certificate).
    pub data_dir: PathBuf,
    /// How long a nonce stays valid.
    pub nonce_ttl: Duration,
    /// Lifetime of workload certificates.
    pub cert_ttl: Duration,
    /// Names (DNS or IP) in the CAS TLS certificate generated at first start.
    pub tls_names: Vec<String>,
    /// Where the master key lives; `None` = `DATA_DIR/master.key` (mode 0600).
    pub master_key: Option<Arc<dyn MasterKeyProvider>>,
    /// Where the CAS gets its own evidence (`POST /v1/cas/evidence`); `None` = it has none.
    pub attester: Option<cipherlake_attest::attester::Attester>,
    /// Where the master key lives (ignored when `master_key` is set).
    pub sealing: crate::sealing::Sealing,
    /// AMD CRLs every SEV-SNP chain is checked against (VCEK and VLEK; revoked ASKs and ASVKs
    /// are refused). The operator keeps them current, as AMD's KDS serves them.
    pub amd_crls: Vec<cipherlake_attest::snp::AmdCrl>,
    /// The operator token from a file the operator provisions (a mounted Kubernetes Secret)
    /// instead of the one generated at first start in `DATA_DIR/operator.token`.
    pub operator_token_file: Option<PathBuf>,
}

impl Config {
    /// Defaults: nonces valid 60 s, certificates 1 h, TLS names `localhost` and `127.0.0.1`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            nonce_ttl: Duration::from_secs(60),
            cert_ttl: Duration::from_secs(3600),
            tls_names: vec!["localhost".into(), "127.0.0.1".into()],
            master_key: None,
            attester: None,
            sealing: crate::sealing::Sealing::File,
            amd_crls: Vec::new(),
            operator_token_file: None,
        }
    }
}

/// An authenticated workload: the identity from its verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The policy named in the certificate.
    pub policy: String,
    /// The service named in the certificate.
    pub service: String,
    /// The certificate's serial number (hex), as the `attestation-allowed` audit entry that
    /// issued it records it: tells apart instances of one service (two workers).
    pub certificate_serial: String,
}

/// An authenticated KMS caller: an attested service (mTLS) or a policy user (a signature over
/// a fresh CAS nonce and the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A service, by its workload certificate.
    Service(Workload),
    /// A user of a policy, by its signature.
    User {
        /// The policy.
        policy: String,
        /// The user's name.
        user: String,
    },
}

impl Caller {
    /// The caller's policy.
    pub fn policy(&self) -> &str {
        match self {
            Caller::Service(w) => &w.policy,
            Caller::User { policy, .. } => policy,
        }
    }

    /// `entry` with the caller's policy, principal and, for a service, its certificate serial.
    fn audit(&self, mut entry: Value) -> Value {
        entry["policy"] = json!(self.policy());
        entry["principal"] = json!(self.principal());
        if let Caller::Service(w) = self {
            entry["certificate_serial"] = json!(w.certificate_serial);
        }
        entry
    }

    /// `service:NAME` or `user:NAME`, for logs and the audit log.
    pub fn principal(&self) -> String {
        match self {
            Caller::Service(w) => format!("service:{}", w.service),
            Caller::User { user, .. } => format!("user:{user}"),
        }
    }

    /// The caller's KMS grants in `policy` (empty when it is no longer there).
    fn grants<'a>(&self, policy: &'a Policy) -> Option<&'a KmsGrants> {
        match self {
            Caller::Service(w) => policy.service(&w.service).map(|s| &s.kms_keys),
            Caller::User { user, .. } => policy.spec().users.get(user).map(|u| &u.kms_keys),
        }
    }
}

/// What an admitted attestation request carries on to its release.
struct Admitted {
    stored: StoredPolicy,
    policy: Policy,
    decoded: Decoded,
    audit: Value,
}

/// The `run` services a `worker` service may serve: those granted `unwrap` on every key the
/// worker may unwrap. Empty for other services.
fn worker_clients(policy: &Policy, service: &str) -> Vec<String> {
    let Some(worker) = policy
        .service(service)
        .filter(|s| s.operation() == Some(Operation::Worker))
    else {
        return Vec::new();
    };
    let reads: Vec<&String> = worker
        .kms_keys
        .keys()
        .filter(|key| {
            worker
                .kms_keys
                .allows(key, cipherlake_policy::KmsRight::Unwrap)
        })
        .collect();
    policy
        .spec()
        .services
        .iter()
        .filter(|(_, s)| s.operation() == Some(Operation::Run))
        .filter(|(_, s)| {
            reads
                .iter()
                .all(|key| s.kms_keys.allows(key, cipherlake_policy::KmsRight::Unwrap))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// `config` sealed to the workload's HPKE key for `policy`/`service`, and SHA-256 of its
/// plaintext (the release digest its certificate binds).
fn seal_config(
    decoded: &Decoded,
    policy: &str,
    service: &str,
    config: &ReleasedConfig,
) -> Result<(crate::seal::Sealed, [u8; 32]), CasError> {
    let plaintext = Zeroizing::new(
        serde_json::to_vec(config)
            .map_err(|e| CasError::Crypto(format!("encoding the configuration: {e}")))?,
    );
    let sealed = crate::seal::seal(&decoded.hpke_public_key, policy, service, &plaintext)?;
    Ok((sealed, sha2::Sha256::digest(&plaintext[..]).into()))
}

/// `key: unwrap,wrap` for each granted key (names only).
fn grant_summary(grants: &KmsGrants) -> BTreeMap<String, String> {
    grants
        .0
        .iter()
        .map(|(key, rights)| {
            let rights: Vec<String> = rights.iter().map(ToString::to_string).collect();
            (key.clone(), rights.join(","))
        })
        .collect()
}

/// A running CAS's state.
pub struct Cas {
    store: Store,
    audit: AuditLog,
    tls_cert_der: Vec<u8>,
    tls_key_der: Zeroizing<Vec<u8>>,
    operator_token: Zeroizing<String>,
    config: Config,
    workers: WorkerRegistry,
    /// TPM sealing: the epoch counter that catches a restored older data directory.
    epoch: Option<EpochCounter>,
}

impl std::fmt::Debug for Cas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cas")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// Current time, unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const AUDIT_KEY: &str = "audit-ed25519-seed";
const TLS_KEY: &str = "tls-key-pkcs8";
const TLS_CERT: &str = "tls-cert-der";
const EPOCH: &str = "epoch";

/// Parses collateral an operator imports: DCAP JSON (`{`…) or an AMD CRL.
fn parse_collateral(body: &[u8]) -> Result<store::StoredCollateral, CasError> {
    if body.trim_ascii_start().starts_with(b"{") {
        let dcap = cipherlake_attest::dcap::DcapCollateral::from_json(body)
            .map_err(|e| CasError::BadRequest(format!("DCAP collateral: {e}")))?;
        let fmspc = dcap
            .fmspc()
            .ok_or_else(|| {
                CasError::BadRequest("DCAP collateral: the TCB info names no FMSPC".into())
            })?
            .to_ascii_uppercase();
        let claims = dcap.claims();
        return Ok(store::StoredCollateral {
            // SGX and TDX TCB infos share FMSPCs: one per TEE.
            id: format!("dcap:{}:{fmspc}", dcap.tcb_id().to_ascii_lowercase()),
            kind: "dcap".into(),
            body: body.to_vec(),
            number: claims.map(|c| c.tcb_evaluation_data_number),
            issued: claims.map(|c| c.issued),
            expires: dcap.next_update(),
        });
    }
    let crl = match cipherlake_attest::snp::AmdCrl::parse(body) {
        Ok(crl) => crl,
        Err(crl_error) => {
            // A VCEK or VLEK, as AMD's KDS or Azure's THIM serves it.
            let vek = cipherlake_attest::snp::SnpCollateral::new(body, None).map_err(|e| {
                CasError::BadRequest(format!(
                    "not DCAP collateral JSON, an AMD CRL ({crl_error}) nor a VCEK/VLEK ({e})"
                ))
            })?;
            let der = vek
                .vek_der()
                .map_err(|e| CasError::BadRequest(format!("VCEK/VLEK: {e}")))?;
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(&der);
            return Ok(store::StoredCollateral {
                id: format!("amd-vek:{}", hex::encode(&digest[..8])),
                kind: "amd-vek".into(),
                body: der,
                number: None,
                issued: None,
                expires: Some(vek.not_after()),
            });
        }
    };
    let (issued, expires) = crl.dates();
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    Ok(store::StoredCollateral {
        // An ARK issues two CRLs (VCEK and VLEK paths): each is held, and each applies.
        id: format!("amd-crl:{}:{}", crl.issuer(), hex::encode(&digest[..8])),
        kind: "amd-crl".into(),
        body: body.to_vec(),
        number: None,
        issued: Some(issued),
        expires,
    })
}

/// The attestee's DCAP collateral is used only if its TCB evaluation data number is at least
/// that of the collateral the CAS holds for the same FMSPC; otherwise the CAS's is used. A
/// quote sent without collateral gets the CAS's for its FMSPC.
fn trusted_collateral(
    evidence: cipherlake_attest::Evidence,
    held: &[store::StoredCollateral],
) -> cipherlake_attest::Evidence {
    use cipherlake_attest::{Collateral, Tee};
    let tee = match evidence.tee {
        Tee::Sgx => "sgx",
        _ => "tdx",
    };
    let held_for = |fmspc: &str| {
        held.iter()
            .find(|c| c.id == format!("dcap:{tee}:{fmspc}"))
            .and_then(|c| cipherlake_attest::dcap::DcapCollateral::from_json(&c.body).ok())
    };
    if evidence.collateral.is_none() && matches!(evidence.tee, Tee::Sgx | Tee::Tdx) {
        let ours = cipherlake_attest::dcap::quote_fmspc(&evidence.bytes)
            .ok()
            .and_then(|fmspc| held_for(&fmspc));
        return match ours {
            Some(ours) => evidence.with_collateral(Collateral::Dcap(Arc::new(ours))),
            None => evidence,
        };
    }
    let Some(Collateral::Dcap(supplied)) = &evidence.collateral else {
        return evidence;
    };
    let Some(fmspc) = supplied.fmspc().map(str::to_ascii_uppercase) else {
        return evidence;
    };
    let supplied_number = supplied.claims().map(|c| c.tcb_evaluation_data_number);
    let ours = held
        .iter()
        .find(|c| c.id == format!("dcap:{tee}:{fmspc}") && c.number > supplied_number)
        .and_then(|c| cipherlake_attest::dcap::DcapCollateral::from_json(&c.body).ok());
    match ours {
        Some(ours) => evidence.with_collateral(Collateral::Dcap(Arc::new(ours))),
        None => evidence,
    }
}

/// Verifies `evidence`; SEV-SNP evidence that brings no VCEK/VLEK is tried with each one the
/// operator imported, and the first whose chain and signature verify is used.
fn verify_with_held_veks(
    verifier: &Verifier,
    evidence: &cipherlake_attest::Evidence,
    options: &VerifyOptions,
    held: &[store::StoredCollateral],
) -> Result<cipherlake_attest::Claims, cipherlake_attest::VerifyError> {
    use cipherlake_attest::{Collateral, Tee};
    let first = verifier.verify(evidence, options);
    let without_vek = matches!(
        first,
        Err(cipherlake_attest::VerifyError::MissingCollateral { .. })
    );
    if !without_vek
        || evidence.collateral.is_some()
        || !matches!(evidence.tee, Tee::SevSnp | Tee::AzureSnpVtpm)
    {
        return first;
    }
    let mut result = first;
    for c in held.iter().filter(|c| c.kind == "amd-vek") {
        let Ok(vek) = cipherlake_attest::snp::SnpCollateral::new(&c.body, None) else {
            continue;
        };
        let with = evidence
            .clone()
            .with_collateral(Collateral::Snp(Arc::new(vek)));
        result = verifier.verify(&with, options);
        if result.is_ok() {
            break;
        }
    }
    result
}

/// The epoch the database is at, if it has one (TPM sealing).
fn stored_epoch(tx: &rusqlite::Transaction<'_>, store: &Store) -> Result<Option<u64>, CasError> {
    store::cas_key(tx, store, EPOCH)?
        .map(|bytes| {
            <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| CasError::Tampered("the stored epoch is not 8 bytes".into()))
        })
        .transpose()
}

impl Cas {
    /// Opens the data directory, creating at first start: the directory (0700), the master
    /// key, the database, the audit key, the TLS identity (also written to `tls-cert.pem`) and
    /// the operator token file `operator.token` (0600).
    pub fn open(config: Config) -> Result<Self, CasError> {
        let dir = &config.data_dir;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(CasError::io(format!("creating {}", dir.display())))?;
        }
        let provider: Arc<dyn MasterKeyProvider> = match (&config.master_key, &config.sealing) {
            (Some(p), _) => Arc::clone(p),
            (None, Sealing::File) => {
                Arc::new(FileMasterKey::open_or_create(&dir.join("master.key"))?)
            }
            (None, Sealing::Tpm(tpm)) => Arc::new(TpmMasterKey::open_or_create(dir, tpm)?),
            (None, sealing) => Arc::new(WrappedMasterKey::open_or_create(dir, sealing)?),
        };
        let store = Store::open(
            &dir.join("cas.db"),
            Sealer::new(provider.as_ref())?,
            Integrity::new(provider.as_ref())?,
        )?;
        let names = config.tls_names.clone();
        let (seed, tls_cert_der, tls_key_der) = store.transaction(|tx| {
            let seed = match store::cas_key(tx, &store, AUDIT_KEY)? {
                Some(seed) => seed,
                None => {
                    let seed = Zeroizing::new(random::<32>()?.to_vec());
                    store::put_cas_key(tx, &store, AUDIT_KEY, &seed)?;
                    seed
                }
            };
            let tls = match (
                store::cas_key(tx, &store, TLS_CERT)?,
                store::cas_key(tx, &store, TLS_KEY)?,
            ) {
                (Some(cert), Some(key)) => (cert.to_vec(), key),
                _ => {
                    let (cert, key) = ca::new_tls_identity(&names)?;
                    store::put_cas_key(tx, &store, TLS_CERT, &cert)?;
                    store::put_cas_key(tx, &store, TLS_KEY, &key)?;
                    (cert, Zeroizing::new(key))
                }
            };
            Ok((seed, tls.0, tls.1))
        })?;
        let epoch = match &config.sealing {
            Sealing::Tpm(tpm) => {
                let counter = EpochCounter::new(tpm, dir);
                let value = counter.value()?;
                let stored = store.transaction(|tx| stored_epoch(tx, &store))?;
                counter.check(stored, value)?;
                Some(counter)
            }
            _ => None,
        };
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| CasError::Crypto("corrupt audit key".into()))?;
        let audit = AuditLog::new(&seed);
        std::fs::write(dir.join("tls-cert.pem"), ca::cert_pem(&tls_cert_der))
            .map_err(CasError::io("writing tls-cert.pem"))?;
        std::fs::write(
            dir.join("audit-public-key"),
            format!("{}\n", hex::encode(audit.public_key())),
        )
        .map_err(CasError::io("writing audit-public-key"))?;
        let operator_token = match &config.operator_token_file {
            Some(file) => provisioned_operator_token(file)?,
            None => operator_token(&dir.join("operator.token"))?,
        };
        let cas = Cas {
            store,
            audit,
            tls_cert_der,
            tls_key_der,
            operator_token,
            workers: WorkerRegistry::default(),
            epoch,
            config,
        };
        // Each start is an epoch.
        cas.new_epoch(|_| Ok(()))?;
        Ok(cas)
    }

    /// Runs `f` in a transaction that also moves the database to the next epoch, then (after
    /// the commit) moves the TPM counter there: the crash window leaves the counter one below
    /// the database, which a start accepts. Without a TPM, just the transaction.
    fn new_epoch<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, CasError>,
    ) -> Result<T, CasError> {
        let Some(counter) = &self.epoch else {
            return self.store.transaction(f);
        };
        let (out, epoch) = self.store.transaction(|tx| {
            let out = f(tx)?;
            let stored = stored_epoch(tx, &self.store)?;
            let next = match stored {
                Some(epoch) => epoch + 1,
                None => counter.value()? + 1,
            };
            store::put_cas_key(tx, &self.store, EPOCH, &next.to_be_bytes())?;
            Ok((out, next))
        })?;
        counter.advance_to(epoch)?;
        Ok(out)
    }

    /// How the master key is kept: `none` (a file) or `tpm`. A custom provider reports
    /// `external`.
    pub fn sealing(&self) -> &'static str {
        match (&self.config.master_key, &self.config.sealing) {
            (Some(_), _) => "external",
            (None, sealing) => sealing.as_str(),
        }
    }

    /// Refuses a caller without the operator token, auditing `event`.
    fn require_operator(
        &self,
        token: Option<&str>,
        event: &str,
        what: &str,
    ) -> Result<(), CasError> {
        let presented = token.unwrap_or_default().trim().as_bytes();
        if bool::from(presented.ct_eq(self.operator_token.as_bytes())) {
            return Ok(());
        }
        self.audit_refusal(event, json!({"reason": "bad operator token"}));
        Err(CasError::Unauthorized(format!(
            "{what} needs the operator token (Authorization: Bearer)"
        )))
    }

    /// Imports collateral the CAS trusts (operator only): DCAP collateral JSON as PCCS serves
    /// it (by FMSPC), or an AMD CRL (by issuer). A DCAP TCB info older (lower TCB evaluation
    /// data number) than the one held for its FMSPC is refused.
    pub fn import_collateral(
        &self,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<store::StoredCollateral, CasError> {
        self.require_operator(token, "collateral-refused", "importing collateral")?;
        let imported = parse_collateral(body)?;
        self.store.transaction(|tx| {
            let held = store::collateral(tx, &self.store)?;
            if let Some(old) = held.iter().find(|c| c.id == imported.id)
                && old.number > imported.number
            {
                return Err(CasError::Conflict(format!(
                    "{}: the CAS holds TCB evaluation data number {}, this is {}: superseded",
                    imported.id,
                    old.number.unwrap_or_default(),
                    imported.number.unwrap_or_default()
                )));
            }
            store::put_collateral(tx, &self.store, &imported)?;
            self.append(
                tx,
                "collateral-imported",
                json!({"id": imported.id, "number": imported.number, "expires": imported.expires}),
            )
        })?;
        Ok(imported)
    }

    /// The collateral the CAS holds (operator only).
    pub fn list_collateral(
        &self,
        token: Option<&str>,
    ) -> Result<Vec<store::StoredCollateral>, CasError> {
        self.require_operator(token, "collateral-refused", "listing collateral")?;
        self.store
            .transaction(|tx| store::collateral(tx, &self.store))
    }

    /// The CAS TLS certificate, DER.
    pub fn tls_cert_der(&self) -> &[u8] {
        &self.tls_cert_der
    }

    /// The CAS TLS private key, PKCS#8 DER.
    pub(crate) fn tls_key_der(&self) -> &[u8] {
        &self.tls_key_der
    }

    /// The audit log public key.
    pub fn audit_public_key(&self) -> [u8; 32] {
        self.audit.public_key()
    }

    fn append(&self, tx: &Transaction<'_>, event: &str, body: Value) -> Result<u64, CasError> {
        let body = match body {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        crate::integrity::check_audit_end(tx, self.store.integrity())?;
        let seq = self.audit.append(tx, now(), event, body)?;
        crate::integrity::seal_audit(tx, self.store.integrity())?;
        Ok(seq)
    }

    /// Applies a signed policy version: verifies it against the current version, stores it,
    /// stores inline and generates missing secrets, creates the policy CA at first apply and
    /// audits it, in one transaction.
    pub fn apply_policy(&self, name: &str, signed: &SignedPolicy) -> Result<PolicyInfo, CasError> {
        let result = self.new_epoch(|tx| {
            let current = store::current_policy(tx, &self.store, name)?
                .map(|p| Policy::parse(&p.text))
                .transpose()
                .map_err(|e| CasError::Crypto(format!("stored policy does not parse: {e}")))?;
            let accepted = verify_update(current.as_ref(), signed).map_err(update_error)?;
            let policy = accepted.policy;
            if policy.name() != name {
                return Err(CasError::BadRequest(format!(
                    "the policy is named {:?}, but was sent to /v1/policies/{name}",
                    policy.name()
                )));
            }
            let stored = StoredPolicy {
                text: Zeroizing::new(signed.policy.to_string()),
                hash: policy.hash().to_string(),
                predecessor: policy.predecessor().map(|h| h.to_string()),
                signer: accepted.signer.to_string(),
                applied: now(),
            };
            store::insert_policy(tx, &self.store, name, &stored)?;
            let generated = self.store_secrets(tx, &policy)?;
            if store::policy_ca(tx, &self.store, name)?.is_none() {
                let (cert, key) = ca::new_policy_ca(name)?;
                store::put_policy_ca(tx, &self.store, name, &cert, &key)?;
            }
            self.append(
                tx,
                "policy-applied",
                json!({
                    "policy": name,
                    "hash": stored.hash,
                    "predecessor": stored.predecessor,
                    "signer": stored.signer,
                    "generated_secrets": generated,
                }),
            )?;
            Ok(())
        });
        if let Err(e) = &result {
            self.audit_refusal(
                "policy-refused",
                json!({"policy": name, "reason": e.to_string()}),
            );
        }
        result?;
        self.policy_info(name)
    }

    /// Consumes a nonce in a transaction of its own (so a refusal that follows cannot roll the
    /// consumption back); whether it was issued, unused and unexpired.
    fn spend_nonce(&self, nonce: &[u8; NONCE_LEN]) -> Result<bool, CasError> {
        self.store.transaction(|tx| {
            Ok(match store::take_nonce(tx, &hex::encode(nonce))? {
                Some(expires) => expires >= now(),
                None => false,
            })
        })
    }

    /// Records a refused operation in its own transaction (best effort: the refusal is
    /// returned to the caller whether or not the audit write succeeds, and a failure is
    /// logged).
    fn audit_refusal(&self, event: &str, body: Value) {
        if let Err(e) = self.store.transaction(|tx| self.append(tx, event, body)) {
            tracing::error!(error = %e, event, "could not write the audit log");
        }
    }

    /// Stores inline values (every apply: they are part of the text) and generates values
    /// for `generate: true` secrets that have none of the right kind yet; drops values of
    /// secrets no longer in the policy. Returns the generated names.
    fn store_secrets(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
    ) -> Result<Vec<String>, CasError> {
        let name = policy.name();
        let mut generated = Vec::new();
        let mut known: BTreeMap<String, SecretValue> = BTreeMap::new();
        let specs = &policy.spec().secrets;
        // Certificate authorities first, so x509 secrets can be issued by them.
        let mut order: Vec<_> = specs.iter().collect();
        order.sort_by_key(|(_, spec)| spec.kind.known() != Some(SecretKind::X509Ca));
        for (secret, spec) in order {
            let Some(kind) = spec.kind.known() else {
                continue;
            };
            let kind_name = material::kind_name(kind);
            if let Some(value) = &spec.value {
                let value = material::inline_value(kind, value.expose())?;
                store::put_secret(
                    tx,
                    &self.store,
                    name,
                    secret,
                    kind_name,
                    &material::encode(&value),
                )?;
            } else if spec.generate {
                match store::secret(tx, &self.store, name, secret)? {
                    Some((stored_kind, bytes)) if stored_kind == kind_name => {
                        known.insert(secret.clone(), material::decode(&bytes)?);
                    }
                    _ => {
                        let value = material::generate(secret, kind, spec, &known)?;
                        store::put_secret(
                            tx,
                            &self.store,
                            name,
                            secret,
                            kind_name,
                            &material::encode(&value),
                        )?;
                        known.insert(secret.clone(), value);
                        generated.push(secret.clone());
                    }
                }
            }
        }
        let keep: Vec<&str> = specs.keys().map(String::as_str).collect();
        store::prune_secrets(tx, &self.store, name, &keep)?;
        Ok(generated)
    }

    fn current(
        &self,
        tx: &Transaction<'_>,
        name: &str,
    ) -> Result<(StoredPolicy, Policy), CasError> {
        let stored = store::current_policy(tx, &self.store, name)?
            .ok_or_else(|| CasError::NotFound(format!("no policy {name:?}")))?;
        let policy = Policy::parse(&stored.text)
            .map_err(|e| CasError::Crypto(format!("stored policy does not parse: {e}")))?;
        Ok((stored, policy))
    }

    /// The public parts of a policy's current version.
    pub fn policy_info(&self, name: &str) -> Result<PolicyInfo, CasError> {
        self.store.transaction(|tx| {
            let (stored, policy) = self.current(tx, name)?;
            let (ca_der, _) = store::policy_ca(tx, &self.store, name)?
                .ok_or_else(|| CasError::Crypto("policy without CA".into()))?;
            Ok(PolicyInfo {
                name: name.to_string(),
                hash: stored.hash,
                predecessor: stored.predecessor,
                signer: stored.signer,
                owners: policy.owners().iter().map(ToString::to_string).collect(),
                services: policy.spec().services.keys().cloned().collect(),
                secrets: policy.spec().secrets.keys().cloned().collect(),
                applied: stored.applied,
                ca_pem: ca::cert_pem(&ca_der),
            })
        })
    }

    /// Issues a single-use nonce.
    pub fn nonce(&self) -> Result<NonceResponse, CasError> {
        let nonce = hex::encode(random::<NONCE_LEN>()?);
        let now = now();
        let expires = now + self.config.nonce_ttl.as_secs();
        self.store
            .transaction(|tx| store::put_nonce(tx, &nonce, expires, now))?;
        Ok(NonceResponse { nonce, expires })
    }

    /// Registers a LAS platform key, authorised by the operator token (constant-time compare).
    pub fn register_platform(
        &self,
        token: Option<&str>,
        public_key: &str,
    ) -> Result<PlatformResponse, CasError> {
        self.require_operator(token, "platform-refused", "registering a platform")?;
        let key = sim::PlatformPublicKey::from_hex(
            public_key
                .trim()
                .strip_prefix("ed25519:")
                .unwrap_or(public_key.trim()),
        )
        .map_err(|e| CasError::BadRequest(format!("public_key: {e}")))?;
        let key_hex = hex::encode(key.to_bytes());
        let added = self.store.transaction(|tx| {
            let added = store::add_platform(tx, &self.store, &key_hex, now())?;
            if added {
                self.append(tx, "platform-registered", json!({"platform": key_hex}))?;
            }
            Ok(added)
        })?;
        Ok(PlatformResponse {
            public_key: key_hex,
            added,
        })
    }

    /// Attests a workload: checks the nonce, the evidence, the report-data binding (with the
    /// operation) and the policy; on success issues its certificate and releases its
    /// configuration sealed to its HPKE key. Every decision is audited; a refusal carries every
    /// reason.
    pub fn attest(&self, req: &AttestRequest) -> Result<AttestResponse, CasError> {
        let admitted = self.admit(req, false)?;
        let Admitted {
            stored,
            policy,
            decoded,
            audit,
        } = admitted;
        let released = self.release(&req.policy, &req.service, &policy, &decoded, audit);
        if let Err(e) = &released {
            self.audit_release_refused(req, e);
        }
        let (issued, ca_der, config) = released?;
        Ok(AttestResponse {
            certificate_chain_pem: format!(
                "{}{}",
                ca::cert_pem(&issued.der),
                ca::cert_pem(&ca_der)
            ),
            ca_pem: ca::cert_pem(&ca_der),
            expires: issued.not_after,
            policy_hash: stored.hash,
            config,
        })
    }

    /// A probe (`cipherlake attest`): the same checks as [`Cas::attest`] for evidence binding
    /// `probe`, but no certificate and no KMS rights are issued. The reply names what the
    /// service would receive with sizes; the values themselves only for a `debug: true` service
    /// of a policy that lists sim.
    pub fn probe(&self, req: &AttestRequest) -> Result<ProbeResponse, CasError> {
        let Admitted {
            stored,
            policy,
            decoded,
            mut audit,
        } = self.admit(req, true)?;
        let service = policy
            .service(&req.service)
            .ok_or_else(|| CasError::NotFound(format!("no service {:?}", req.service)))?;
        let debug = service.debug
            && policy
                .spec()
                .attestation
                .tees
                .iter()
                .any(|tee| tee.known().is_some_and(Tee::is_sim))
            // Values only to sim evidence: a policy listing sim beside a real TEE does not print
            // what the real TEE receives.
            && decoded.evidence.tee.is_sim();
        let result = self.store.transaction(|tx| {
            let config = self.rendered_config(tx, &policy, &req.service)?;
            let summary = ConfigSummary::of(&config, grant_summary(&service.kms_keys));
            let sealed = if debug {
                Some(seal_config(&decoded, &req.policy, &req.service, &config)?.0)
            } else {
                None
            };
            audit["values_released"] = json!(debug);
            self.append(tx, "attestation-probed", audit.clone())?;
            Ok((summary, sealed))
        });
        if let Err(e) = &result {
            self.audit_release_refused(req, e);
        }
        let (summary, config) = result?;
        Ok(ProbeResponse {
            policy_hash: stored.hash,
            operation: service
                .operation()
                .map_or_else(String::new, |op| op.as_str().to_string()),
            summary,
            config,
        })
    }

    /// Audits an admitted request whose release failed (e.g. a secret without a value).
    fn audit_release_refused(&self, req: &AttestRequest, e: &CasError) {
        self.audit_refusal(
            "attestation-denied",
            json!({"policy": req.policy, "service": req.service, "reasons": [e.to_string()]}),
        );
    }

    /// The checks common to attestation and probes: the request's operation is of the right
    /// kind for the endpoint, the nonce is fresh, the evidence verifies and binds the nonce,
    /// keys, operation and job, and the policy admits it. A refusal is audited.
    fn admit(&self, req: &AttestRequest, probe: bool) -> Result<Admitted, CasError> {
        let decoded = Decoded::parse(req)?;
        match (decoded.intent, probe) {
            (Intent::Probe, false) => {
                return Err(CasError::BadRequest(
                    "operation: a probe receives no certificate; send it to POST /v1/attest/probe"
                        .into(),
                ));
            }
            (Intent::Perform(op), true) => {
                return Err(CasError::BadRequest(format!(
                    "operation: POST /v1/attest/probe takes evidence binding probe, not {op}"
                )));
            }
            _ => {}
        }
        let now = now();
        let mut reasons = Vec::new();
        let (platforms, current, held) = self.store.transaction(|tx| {
            match store::take_nonce(tx, &req.nonce.to_ascii_lowercase())? {
                None => reasons.push(
                    "nonce-unknown: the nonce was never issued or is already used".to_string(),
                ),
                Some(expires) if expires < now => {
                    reasons.push(format!("nonce-expired: the nonce expired at {expires}"));
                }
                Some(_) => {}
            }
            Ok((
                store::platforms(tx, &self.store)?,
                self.current(tx, &req.policy),
                store::collateral(tx, &self.store)?,
            ))
        })?;
        let (stored, policy) = match current {
            Ok(current) => current,
            Err(e) => {
                self.audit_refusal(
                    "attestation-denied",
                    json!({"policy": req.policy, "service": req.service, "operation": decoded.intent.as_str(), "reasons": [e.to_string()]}),
                );
                return Err(e);
            }
        };
        let mut verifier = Verifier::new();
        for key in &platforms {
            if let Ok(key) = sim::PlatformPublicKey::from_hex(key) {
                verifier = verifier.with_sim_platform_key(key);
            }
        }
        for crl in &self.config.amd_crls {
            verifier = verifier.with_amd_crl(crl.clone());
        }
        for c in held.iter().filter(|c| c.kind == "amd-crl") {
            if let Ok(crl) = cipherlake_attest::snp::AmdCrl::parse(&c.body) {
                verifier = verifier.with_amd_crl(crl);
            }
        }
        let evidence = trusted_collateral(decoded.evidence.clone(), &held);
        let expected = report_data(
            decoded.intent,
            &decoded.nonce,
            &decoded.csr.spki_der(),
            &decoded.hpke_public_key,
            decoded.job_hash.as_ref(),
        );
        let mut measurement = None;
        // vTPM evidence carries the binding as its quote's nonce: the verifier checks it there.
        let options = VerifyOptions::at(now).with_nonce(&expected);
        match verify_with_held_veks(&verifier, &evidence, &options, &held) {
            Err(e) => reasons.push(format!("evidence-invalid: {e}")),
            Ok(claims) => {
                measurement = Some(hex::encode(&claims.measurement));
                if verify_binding(&claims, &expected).is_err() {
                    reasons.push(format!(
                        "report-data-mismatch: the evidence does not bind this nonce, CSR key, HPKE key, operation {} and job",
                        decoded.intent
                    ));
                }
                let decision = evaluate(
                    &policy,
                    &req.service,
                    &claims,
                    &Request {
                        intent: decoded.intent,
                        job_hash: decoded.job_hash,
                    },
                    now,
                );
                reasons.extend(
                    decision
                        .reasons
                        .iter()
                        .map(|r| format!("{}: {r}", r.code())),
                );
            }
        }
        let job = decoded
            .job_hash
            .map(|j| format!("sha256:{}", hex::encode(j)));
        let audit = json!({
            "policy": req.policy,
            "policy_hash": stored.hash,
            "service": req.service,
            "operation": decoded.intent.as_str(),
            "tee": decoded.evidence.tee.as_str(),
            "measurement": measurement,
            "job": job,
        });
        if !reasons.is_empty() {
            let mut body = audit;
            body["reasons"] = json!(reasons);
            self.audit_refusal("attestation-denied", body);
            return Err(CasError::Denied(reasons));
        }
        Ok(Admitted {
            stored,
            policy,
            decoded,
            audit,
        })
    }

    /// The rendered configuration of `service`, as released to it.
    fn rendered_config(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
        service: &str,
    ) -> Result<ReleasedConfig, CasError> {
        let values = self.secret_values(tx, policy)?;
        let rendered = render(policy, service, &values)
            .map_err(|e| CasError::Conflict(format!("cannot render the configuration: {e}")))?;
        Ok(ReleasedConfig {
            env: rendered
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.expose().to_string())))
                .collect(),
            args: rendered
                .args
                .iter()
                .map(|v| Zeroizing::new(v.expose().to_string()))
                .collect(),
            files: rendered
                .files
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.expose().to_string())))
                .collect(),
            console: policy
                .service(service)
                .and_then(|s| s.console.known())
                .unwrap_or_default()
                .as_str()
                .to_string(),
            databases: policy
                .service(service)
                .map(|s| s.databases.clone())
                .unwrap_or_default(),
            clients: worker_clients(policy, service),
        })
    }

    /// Renders, seals and issues for an admitted workload; audits the release in the same
    /// transaction as the certificate record.
    fn release(
        &self,
        name: &str,
        service: &str,
        policy: &Policy,
        decoded: &Decoded,
        mut audit: Value,
    ) -> Result<(ca::Issued, Vec<u8>, crate::seal::Sealed), CasError> {
        self.store.transaction(|tx| {
            let config = self.rendered_config(tx, policy, service)?;
            let (sealed, release_digest) = seal_config(decoded, name, service, &config)?;
            let (ca_der, ca_key) = store::policy_ca(tx, &self.store, name)?
                .ok_or_else(|| CasError::Crypto("policy without CA".into()))?;
            let subject = ca::Subject {
                policy: name,
                service,
                release_digest,
            };
            let issued = ca::issue_workload(
                &decoded.csr,
                subject,
                &ca_der,
                &ca_key,
                self.config.cert_ttl.as_secs(),
            )?;
            store::record_certificate(tx, &issued.serial, name, service, now(), issued.not_after)?;
            audit["certificate_serial"] = json!(issued.serial);
            audit["released_secrets"] = json!(referenced_secrets(policy, service));
            self.append(tx, "attestation-allowed", audit)?;
            Ok((issued, ca_der, sealed))
        })
    }

    /// The policy's secret values, imports resolved against their exporters' current versions.
    fn secret_values(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
    ) -> Result<BTreeMap<String, SecretValue>, CasError> {
        let mut values = BTreeMap::new();
        for name in policy.spec().secrets.keys() {
            if let Some(value) = self.secret_value(tx, policy, name)? {
                values.insert(name.clone(), value);
            }
        }
        Ok(values)
    }

    /// One secret's value: stored under the policy, or, for an import the exporter allows,
    /// the exporter's value. `None` when it has no value (yet).
    fn secret_value(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
        name: &str,
    ) -> Result<Option<SecretValue>, CasError> {
        let Some(spec) = policy.secret(name) else {
            return Ok(None);
        };
        let stored = match &spec.import_from {
            None => store::secret(tx, &self.store, policy.name(), name)?,
            Some(import) => {
                let Ok((_, exporter)) = self.current(tx, &import.policy) else {
                    return Ok(None);
                };
                if check_import(policy, name, &exporter).is_err() {
                    return Ok(None);
                }
                store::secret(tx, &self.store, &import.policy, &import.secret)?
            }
        };
        stored
            .map(|(_, bytes)| material::decode(&bytes))
            .transpose()
    }

    /// Authenticates a KMS caller by its client certificate chain (leaf first): the leaf must
    /// name `spiffe://cipherlake/{policy}/{service}`, be signed by that policy's CA and be
    /// valid now.
    pub fn authenticate(&self, leaf_der: Option<&[u8]>) -> Result<Workload, CasError> {
        let leaf = leaf_der.ok_or_else(|| {
            CasError::Unauthorized("KMS calls need a workload client certificate (mTLS)".into())
        })?;
        let (policy, service) = ca::workload_identity(leaf)?;
        let ca_der = self
            .store
            .transaction(|tx| store::policy_ca(tx, &self.store, &policy))?
            .map(|(cert, _)| cert)
            .ok_or_else(|| CasError::Unauthorized(format!("no policy {policy:?}")))?;
        ca::verify_issued_by(leaf, &ca_der, now())?;
        Ok(Workload {
            policy,
            service,
            certificate_serial: ca::serial(leaf)?,
        })
    }

    /// Runs a KMS operation for `caller` with the key `key_id` after checking its grants (the
    /// right the operation needs: unwrap for unwrap and RSA decryption, wrap for wrap and RSA
    /// signatures); audits the call, allowed or not.
    pub fn kms(
        &self,
        caller: &Caller,
        op: kms::Operation,
        key_id: &str,
        input: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CasError> {
        let right = op.right();
        let result = self.store.transaction(|tx| {
            let policy = self.granted_policy(
                tx,
                caller,
                |grants| grants.allows(key_id, right),
                &format!("{right} on KMS key {key_id:?} (needed for {})", op.as_str()),
            )?;
            let value = self.secret_value(tx, &policy, key_id)?;
            let value = value.as_ref().ok_or_else(|| {
                CasError::Conflict(format!("KMS key {key_id:?} has no value yet"))
            })?;
            let out = kms::run(op, key_id, value, input)?;
            self.append(
                tx,
                "kms",
                caller.audit(json!({"op": op.as_str(), "key": key_id, "allowed": true})),
            )?;
            Ok(out)
        });
        if let Err(e) = &result {
            self.audit_refusal(
                "kms",
                caller.audit(json!({"op": op.as_str(), "key": key_id, "allowed": false, "reason": e.to_string()})),
            );
        }
        result
    }

    /// The current version of `caller`'s policy, when `caller`'s grants there pass `allows`;
    /// otherwise forbidden, naming the principal and what it `lacks`.
    fn granted_policy(
        &self,
        tx: &Transaction<'_>,
        caller: &Caller,
        allows: impl Fn(&KmsGrants) -> bool,
        lacks: &str,
    ) -> Result<Policy, CasError> {
        let (_, policy) = self.current(tx, caller.policy())?;
        if caller.grants(&policy).is_some_and(allows) {
            return Ok(policy);
        }
        Err(CasError::Forbidden(format!(
            "{} of policy {:?} is not granted {lacks}",
            caller.principal(),
            caller.policy()
        )))
    }

    /// The public key (SubjectPublicKeyInfo, PEM) of the key pair `key_id`, for a caller granted
    /// any right on it: readers verify column master key signatures with it, writers wrap new
    /// column encryption keys. A public key is not secret, but which keys exist is the policy's.
    pub fn kms_public_key(&self, caller: &Caller, key_id: &str) -> Result<String, CasError> {
        self.store.transaction(|tx| {
            let policy = self.granted_policy(
                tx,
                caller,
                |grants| {
                    grants.allows(key_id, cipherlake_policy::KmsRight::Unwrap)
                        || grants.allows(key_id, cipherlake_policy::KmsRight::Wrap)
                },
                &format!("KMS key {key_id:?}"),
            )?;
            match self.secret_value(tx, &policy, key_id)? {
                Some(SecretValue::KeyPair {
                    public_spki_der, ..
                }) => Ok(ca::pem_encode("PUBLIC KEY", &public_spki_der)),
                Some(_) => Err(CasError::BadRequest(format!(
                    "KMS key {key_id:?} is not a key pair"
                ))),
                None => Err(CasError::Conflict(format!(
                    "KMS key {key_id:?} has no value yet"
                ))),
            }
        })
    }

    /// Registers or renews the URL of `worker` (authenticated by its certificate), whose
    /// service must still be one of its policy's services.
    pub fn register_worker(&self, worker: &Workload, url: &str) -> Result<(), CasError> {
        self.check_service(worker, Operation::Worker)?;
        self.workers.register(worker, url, now())
    }

    /// Removes the URL `worker` registered.
    pub fn deregister_worker(&self, worker: &Workload, url: &str) {
        self.workers.deregister(worker, url);
    }

    /// The live workers of `caller`'s policy registered as `service`.
    pub fn live_workers(&self, caller: &Workload, service: &str) -> Result<Vec<String>, CasError> {
        self.check_service(caller, Operation::Run)?;
        Ok(self.workers.live(&caller.policy, service, now()))
    }

    /// Refuses a workload whose service its policy's current version no longer has, or whose
    /// operation is not `operation`.
    fn check_service(&self, workload: &Workload, operation: Operation) -> Result<(), CasError> {
        self.store.transaction(|tx| {
            let (_, policy) = self.current(tx, &workload.policy)?;
            match policy.service(&workload.service) {
                Some(s) if s.operation() == Some(operation) => Ok(()),
                Some(s) => Err(CasError::Forbidden(format!(
                    "service {:?} of policy {:?} performs {}, not {operation}",
                    workload.service,
                    workload.policy,
                    s.operation().map_or("no operation", Operation::as_str)
                ))),
                None => Err(CasError::Forbidden(format!(
                    "policy {:?} has no service {:?}",
                    workload.policy, workload.service
                ))),
            }
        })
    }
}

/// The secrets a service's templates reference (for the audit log: names only).
fn referenced_secrets(policy: &Policy, service: &str) -> Vec<String> {
    let Some(spec) = policy.service(service) else {
        return Vec::new();
    };
    let texts = spec
        .env
        .values()
        .chain(spec.args.iter())
        .chain(spec.files.values());
    policy
        .spec()
        .secrets
        .keys()
        .filter(|name| texts.clone().any(|t| t.contains(&format!("secret.{name}"))))
        .cloned()
        .collect()
}

fn update_error(e: UpdateError) -> CasError {
    match e {
        UpdateError::Stale { current, found, .. } => CasError::Stale {
            message: e.to_string(),
            current: current.to_string(),
            found: found.map(|h| h.to_string()),
        },
        UpdateError::NotAnOwner { .. }
        | UpdateError::NotOwnOwner { .. }
        | UpdateError::BadSignature { .. } => CasError::Forbidden(e.to_string()),
        UpdateError::Policy(_)
        | UpdateError::UnexpectedPredecessor { .. }
        | UpdateError::NameMismatch { .. } => CasError::BadRequest(e.to_string()),
    }
}

/// The decoded, syntactically valid parts of an attestation request.
struct Decoded {
    intent: Intent,
    nonce: [u8; NONCE_LEN],
    evidence: Evidence,
    csr: VerifiedCsr,
    hpke_public_key: Vec<u8>,
    job_hash: Option<[u8; 32]>,
}

impl Decoded {
    fn parse(req: &AttestRequest) -> Result<Self, CasError> {
        let bad = |m: String| CasError::BadRequest(m);
        let intent = Intent::parse(req.operation.trim()).ok_or_else(|| {
            bad(format!(
                "operation: {:?} is not run, worker, encrypt, serve or probe",
                req.operation
            ))
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(req.nonce.trim(), &mut nonce)
            .map_err(|_| bad("nonce: expected 64 hex digits".into()))?;
        let evidence = crate::evidence::decode(&req.evidence)?;
        let csr = VerifiedCsr::from_pem(&req.csr)?;
        let hpke_public_key = BASE64
            .decode(req.hpke_public_key.trim())
            .map_err(|_| bad("hpke_public_key: not base64".into()))?;
        if hpke_public_key.len() != 32 {
            return Err(bad("hpke_public_key: expected 32 bytes (X25519)".into()));
        }
        let job_hash = req
            .job_hash
            .as_deref()
            .map(|j| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(
                    j.trim().strip_prefix("sha256:").unwrap_or(j.trim()),
                    &mut out,
                )
                .map(|()| out)
                .map_err(|_| bad("job_hash: expected sha256:<64 hex digits>".into()))
            })
            .transpose()?;
        Ok(Decoded {
            intent,
            nonce,
            evidence,
            csr,
            hpke_public_key,
            job_hash,
        })
    }
}

/// Reads the operator token, creating it (32 random bytes, hex, mode 0600) at first start.
fn operator_token(path: &Path) -> Result<Zeroizing<String>, CasError> {
    if !path.exists() {
        let token = Zeroizing::new(hex::encode(random::<32>()?));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(CasError::io(format!("creating {}", path.display())))?;
        file.write_all(token.as_bytes())
            .map_err(CasError::io(format!("writing {}", path.display())))?;
    }
    let meta =
        std::fs::metadata(path).map_err(CasError::io(format!("reading {}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CasError::Io {
            context: format!("operator token {}", path.display()),
            error: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "group or others may access it; use chmod 600",
            ),
        });
    }
    let text = std::fs::read_to_string(path)
        .map_err(CasError::io(format!("reading {}", path.display())))?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

/// The shortest operator token a provisioned file may hold (32 random bytes in hex are 64).
const MIN_OPERATOR_TOKEN_LEN: usize = 32;

/// Reads an operator token the operator provisioned: at least 32 characters, and not readable
/// by others (a Kubernetes Secret volume may add group read for the pod's fsGroup).
fn provisioned_operator_token(path: &Path) -> Result<Zeroizing<String>, CasError> {
    let refuse = |reason: &str| CasError::Io {
        context: format!("operator token {}", path.display()),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_owned()),
    };
    let meta =
        std::fs::metadata(path).map_err(CasError::io(format!("reading {}", path.display())))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(refuse("others may read it; use mode 0400 or 0440"));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(CasError::io(format!("reading {}", path.display())))?,
    );
    let token = Zeroizing::new(text.trim().to_string());
    if token.len() < MIN_OPERATOR_TOKEN_LEN {
        return Err(refuse(&format!(
            "shorter than {MIN_OPERATOR_TOKEN_LEN} characters; use `openssl rand -hex 32`"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_operator_token_must_be_long_and_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let long = "ab".repeat(32);
        // A Secret volume with an fsGroup: group read is accepted.
        write(&format!("{long}\n"), 0o440);
        assert_eq!(provisioned_operator_token(&file).unwrap().as_str(), long);
        write(&long, 0o444);
        let e = provisioned_operator_token(&file).unwrap_err().to_string();
        assert!(
            e.contains("others may read it") && e.contains("token"),
            "{e}"
        );
        write("short", 0o400);
        let e = provisioned_operator_token(&file).unwrap_err().to_string();
        assert!(e.contains("shorter than 32"), "{e}");
        let e = provisioned_operator_token(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    fn fixture(rel: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/evidence")
            .join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn numbered(number: u32) -> Vec<u8> {
        let mut json: serde_json::Value =
            serde_json::from_slice(&fixture("tdx/tdx_quote_collateral.json")).unwrap();
        let tcb = json["tcb_info"].as_str().unwrap().replace(
            "\"tcbEvaluationDataNumber\":17",
            &format!("\"tcbEvaluationDataNumber\":{number}"),
        );
        json["tcb_info"] = tcb.into();
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn an_attestees_superseded_tcb_info_gives_way_to_the_cas_s_newer_one() {
        use cipherlake_attest::dcap::DcapCollateral;
        use cipherlake_attest::{Collateral, Evidence, Tee};
        let supplied =
            DcapCollateral::from_json(&fixture("tdx/tdx_quote_collateral.json")).unwrap();
        let evidence = Evidence::new(Tee::Tdx, fixture("tdx/tdx_quote"))
            .with_collateral(Collateral::Dcap(Arc::new(supplied)));
        let number = |e: &Evidence| match &e.collateral {
            Some(Collateral::Dcap(c)) => c.claims().map(|c| c.tcb_evaluation_data_number),
            _ => None,
        };
        let held = |n: u32| vec![parse_collateral(&numbered(n)).unwrap()];
        // The CAS holds number 18 for this FMSPC: the attestee's 17 is replaced.
        assert_eq!(
            number(&trusted_collateral(evidence.clone(), &held(18))),
            Some(18)
        );
        // The CAS's is older or the same: the attestee's stays.
        assert_eq!(
            number(&trusted_collateral(evidence.clone(), &held(16))),
            Some(17)
        );
        assert_eq!(
            number(&trusted_collateral(evidence.clone(), &held(17))),
            Some(17)
        );
        // A quote without collateral gets the CAS's for its FMSPC.
        let bare = Evidence::new(Tee::Tdx, fixture("tdx/tdx_quote"));
        assert_eq!(
            number(&trusted_collateral(bare.clone(), &held(18))),
            Some(18)
        );
        assert_eq!(number(&trusted_collateral(bare, &[])), None);
        // Collateral of another FMSPC does not apply.
        let other =
            vec![parse_collateral(&fixture("tdx/tdx_quote_outdated_collateral.json")).unwrap()];
        assert_eq!(number(&trusted_collateral(evidence, &other)), Some(17));
    }
}
