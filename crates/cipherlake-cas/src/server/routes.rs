//! The HTTP routes (documented in `docs/api.md`). Handlers parse bodies themselves so every
//! malformed body gets a clear 400 in the common error shape, and run the CAS operations on
//! blocking threads (SQLite, key generation).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_attest::attester::Attester;
use cipherlake_policy::SignedPolicy;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::metrics::{Metrics, track};
use super::tls::PeerCertificate;
use crate::CasError;
use crate::api::{
    AttestRequest, BytesResponse, ErrorBody, PlatformRequest, RsaDecryptRequest, RsaSignRequest,
    UnwrapRequest, UnwrapResponse, WorkerList, WorkerRegistered, WorkerRegistration, WrapRequest,
    WrapResponse,
};
use crate::cas_evidence;
use crate::kms::Operation;
use crate::service::{AuditReader, Caller, Cas, SignedHeaders};

type Shared = Arc<Cas>;

/// What the handlers share: the CAS, its metrics and its attester.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The CAS operations.
    pub cas: Shared,
    /// The Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The attester for the CAS's own evidence, if it has one.
    pub attester: Option<Arc<Attester>>,
}

impl FromRef<AppState> for Shared {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.cas)
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.metrics)
    }
}

/// The router of every endpoint, each request timed and logged ([`track`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/policies/{name}", put(put_policy).get(get_policy))
        .route("/v1/policies/{name}/read", post(owner_read))
        .route("/v1/cas/evidence", post(cas_evidence))
        .route("/v1/attest/nonce", post(nonce))
        .route("/v1/attest", post(attest))
        .route("/v1/attest/probe", post(probe))
        .route("/v1/platforms", post(register_platform))
        .route(
            "/v1/collateral",
            put(import_collateral).get(list_collateral),
        )
        .route("/v1/kms/wrap", post(kms_wrap))
        .route("/v1/kms/unwrap", post(kms_unwrap))
        .route("/v1/kms/rsa-decrypt", post(kms_rsa_decrypt))
        .route("/v1/kms/rsa-sign", post(kms_rsa_sign))
        .route("/v1/kms/public-key", post(kms_public_key))
        .route(
            "/v1/workers",
            post(register_worker)
                .delete(deregister_worker)
                .get(list_workers),
        )
        .route("/v1/audit", get(audit))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            track,
        ))
        .with_state(state)
}

impl IntoResponse for CasError {
    fn into_response(self) -> Response {
        let status = match &self {
            CasError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CasError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CasError::Forbidden(_) | CasError::Denied(_) => StatusCode::FORBIDDEN,
            CasError::NotFound(_) => StatusCode::NOT_FOUND,
            CasError::Stale { .. } | CasError::Conflict(_) => StatusCode::CONFLICT,
            CasError::Store(_)
            | CasError::Io { .. }
            | CasError::Crypto(_)
            | CasError::Tampered(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CasError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CasError::Http(_) => StatusCode::BAD_GATEWAY,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "internal error");
        }
        let (reasons, current, found) = match &self {
            CasError::Denied(reasons) => (reasons.clone(), None, None),
            CasError::Stale { current, found, .. } => (
                Vec::new(),
                Some(current.clone()),
                Some(found.clone().unwrap_or_else(|| "null".into())),
            ),
            _ => (Vec::new(), None, None),
        };
        let body = ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
            reasons,
            current,
            found,
        };
        (status, Json(body)).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CasError> {
    serde_json::from_slice(body)
        .map_err(|e| CasError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CasError> + Send + 'static,
) -> Result<T, CasError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CasError::Crypto(format!("worker task failed: {e}")))?
}

async fn put_policy(
    State(cas): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let signed: SignedPolicy = parse(&body)?;
    let info = blocking(move || cas.apply_policy(&name, &signed)).await?;
    Ok(Json(info))
}

async fn get_policy(
    State(cas): State<Shared>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, CasError> {
    Ok(Json(blocking(move || cas.policy_info(&name)).await?))
}

async fn cas_evidence(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: crate::api::CasEvidenceRequest = parse(&body)?;
    let attester = state.attester.ok_or_else(|| {
        CasError::Unavailable(
            "this CAS has no attester, so it cannot prove what it runs; start it in a TEE or with --las-socket (simulation)".into(),
        )
    })?;
    let reply = cas_evidence::evidence(&attester, &request, state.cas.tls_cert_der()).await?;
    Ok(Json(reply))
}

/// The full document for an owner (signed body), or for an owner or a `read_policy` user
/// (signed headers over an empty body).
async fn owner_read(
    State(cas): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    if let Some(signed) = signed_headers(&headers)? {
        let path = format!("/v1/policies/{name}/read");
        return Ok(Json(
            blocking(move || {
                cas.signed_read(
                    &name,
                    &signed,
                    cipherlake_policy::Target {
                        method: "POST",
                        path: &path,
                        body: &body,
                    },
                )
            })
            .await?,
        ));
    }
    let request: crate::api::OwnerReadRequest = parse(&body)?;
    Ok(Json(
        blocking(move || cas.owner_read(&name, &request)).await?,
    ))
}

async fn nonce(State(cas): State<Shared>) -> Result<impl IntoResponse, CasError> {
    Ok(Json(blocking(move || cas.nonce()).await?))
}

/// `GET /healthz`: `{"status": "ok", "sealing": "none"|"tpm"}` (sealing none: the master
/// key is a file the host's administrator can read).
async fn healthz(State(cas): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "sealing": cas.sealing()}))
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> Result<impl IntoResponse, CasError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode()?,
    ))
}

async fn attest(
    State(cas): State<Shared>,
    State(metrics): State<Arc<Metrics>>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request = parse::<AttestRequest>(&body);
    let (policy, service) = request
        .as_ref()
        .map(|r| (r.policy.clone(), r.service.clone()))
        .unwrap_or_default();
    let result = match request {
        Ok(request) => blocking(move || cas.attest(&request)).await,
        Err(e) => Err(e),
    };
    let categories = metrics.record_attestation(&result);
    tracing::info!(
        policy = ?policy,
        service = ?service,
        decision = if result.is_ok() { "allowed" } else { "denied" },
        reasons = ?categories,
        "attestation"
    );
    Ok(Json(result?))
}

async fn probe(State(cas): State<Shared>, body: Bytes) -> Result<impl IntoResponse, CasError> {
    let request = parse::<AttestRequest>(&body)?;
    let (policy, service) = (request.policy.clone(), request.service.clone());
    let result = blocking(move || cas.probe(&request)).await;
    tracing::info!(
        policy = ?policy,
        service = ?service,
        operation = "probe",
        decision = if result.is_ok() { "allowed" } else { "denied" },
        "attestation"
    );
    Ok(Json(result?))
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Zeroizing::new(t.to_string()))
}

/// The signature headers of a user's or owner's signed request, if any.
fn signed_headers(headers: &HeaderMap) -> Result<Option<SignedHeaders>, CasError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    SignedHeaders::parse(
        get(crate::api::SIGNED_POLICY),
        get(crate::api::SIGNED_SIGNER),
        get(crate::api::SIGNED_NONCE),
        get(crate::api::SIGNED_SIGNATURE),
    )
}

async fn register_platform(
    State(cas): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let token = bearer(&headers);
    let request: PlatformRequest = parse(&body)?;
    let response = blocking(move || {
        cas.register_platform(token.as_deref().map(String::as_str), &request.public_key)
    })
    .await?;
    Ok(Json(response))
}

async fn import_collateral(
    State(cas): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let token = bearer(&headers);
    let request: crate::api::CollateralImport = parse(&body)?;
    let bytes = BASE64
        .decode(request.body.trim())
        .map_err(|_| CasError::BadRequest("body: not base64".into()))?;
    let imported =
        blocking(move || cas.import_collateral(token.as_deref().map(String::as_str), &bytes))
            .await?;
    Ok(Json(imported))
}

async fn list_collateral(
    State(cas): State<Shared>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, CasError> {
    let token = bearer(&headers);
    let held = blocking(move || cas.list_collateral(token.as_deref().map(String::as_str))).await?;
    Ok(Json(held))
}

/// The caller of a KMS request: a user whose signature headers verify over this request, or
/// else the workload of the client certificate.
struct KmsRequest {
    peer: PeerCertificate,
    signed: Option<SignedHeaders>,
    path: &'static str,
    body: Bytes,
}

impl KmsRequest {
    fn new(
        peer: PeerCertificate,
        headers: &HeaderMap,
        path: &'static str,
        body: Bytes,
    ) -> Result<Self, CasError> {
        Ok(KmsRequest {
            peer,
            signed: signed_headers(headers)?,
            path,
            body,
        })
    }

    fn caller(&self, cas: &Cas) -> Result<Caller, CasError> {
        match &self.signed {
            Some(signed) => cas.authenticate_user(
                signed,
                cipherlake_policy::Target {
                    method: "POST",
                    path: self.path,
                    body: &self.body,
                },
            ),
            None => cas
                .authenticate(self.peer.0.as_deref())
                .map(Caller::Service),
        }
    }
}

/// Runs a KMS call for the authenticated caller; counts and logs its outcome (the principal,
/// operation and key id; never key material).
async fn kms_call(
    state: AppState,
    request: KmsRequest,
    op: Operation,
    key_id: String,
    input: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, CasError> {
    let cas = state.cas;
    let (result, caller) = blocking(move || {
        let caller = match request.caller(&cas) {
            Ok(caller) => caller,
            Err(e) => return Ok((Err(e), None)),
        };
        Ok((cas.kms(&caller, op, &key_id, &input), Some(caller)))
    })
    .await?;
    let outcome = state.metrics.record_kms(op, &result);
    tracing::info!(
        policy = ?caller.as_ref().map_or("", |c| c.policy()),
        principal = ?caller.as_ref().map(Caller::principal).unwrap_or_default(),
        operation = op.as_str(),
        decision = outcome,
        "kms"
    );
    result
}

fn base64_field(name: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, CasError> {
    BASE64
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| CasError::BadRequest(format!("{name}: not base64")))
}

async fn kms_wrap(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: WrapRequest = parse(&body)?;
    let caller = KmsRequest::new(peer, &headers, "/v1/kms/wrap", body)?;
    let key = base64_field("key", &request.key)?;
    let out = kms_call(state, caller, Operation::Wrap, request.key_id, key).await?;
    let wrapped = String::from_utf8(out.to_vec())
        .map_err(|_| CasError::Crypto("wrapped key is not UTF-8".into()))?;
    Ok(Json(WrapResponse { wrapped }))
}

async fn kms_unwrap(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: UnwrapRequest = parse(&body)?;
    let caller = KmsRequest::new(peer, &headers, "/v1/kms/unwrap", body)?;
    let input = Zeroizing::new(request.wrapped.into_bytes());
    let out = kms_call(state, caller, Operation::Unwrap, request.key_id, input).await?;
    Ok(Json(UnwrapResponse {
        key: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

async fn kms_rsa_decrypt(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: RsaDecryptRequest = parse(&body)?;
    let caller = KmsRequest::new(peer, &headers, "/v1/kms/rsa-decrypt", body)?;
    let input = base64_field("ciphertext", &request.ciphertext)?;
    let out = kms_call(state, caller, Operation::RsaDecrypt, request.key_id, input).await?;
    Ok(Json(BytesResponse {
        value: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

async fn kms_rsa_sign(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: RsaSignRequest = parse(&body)?;
    let caller = KmsRequest::new(peer, &headers, "/v1/kms/rsa-sign", body)?;
    let input = base64_field("message", &request.message)?;
    let out = kms_call(state, caller, Operation::RsaSign, request.key_id, input).await?;
    Ok(Json(BytesResponse {
        value: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

/// The public key of a key pair the caller is granted.
async fn kms_public_key(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: crate::api::PublicKeyRequest = parse(&body)?;
    let caller = KmsRequest::new(peer, &headers, "/v1/kms/public-key", body)?;
    let public_pem = blocking(move || {
        let caller = caller.caller(&cas)?;
        cas.kms_public_key(&caller, &request.key_id)
    })
    .await?;
    Ok(Json(crate::api::PublicKeyResponse { public_pem }))
}

/// Registers or renews the calling worker's URL (mTLS identity).
async fn register_worker(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: WorkerRegistration = parse(&body)?;
    blocking(move || {
        let worker = cas.authenticate(peer.0.as_deref())?;
        cas.register_worker(&worker, &request.url)
    })
    .await?;
    Ok(Json(WorkerRegistered {
        ttl_secs: crate::workers::REGISTRATION_TTL.as_secs(),
    }))
}

/// Removes the calling worker's URL (mTLS identity).
async fn deregister_worker(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: WorkerRegistration = parse(&body)?;
    blocking(move || {
        let worker = cas.authenticate(peer.0.as_deref())?;
        cas.deregister_worker(&worker, &request.url);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
struct WorkersQuery {
    service: String,
}

/// The live workers of the caller's policy (mTLS identity) registered as `service`.
async fn list_workers(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    Query(query): Query<WorkersQuery>,
) -> Result<impl IntoResponse, CasError> {
    let workers = blocking(move || {
        let caller = cas.authenticate(peer.0.as_deref())?;
        cas.live_workers(&caller, &query.service)
    })
    .await?;
    Ok(Json(WorkerList { workers }))
}

/// The audit log, for the operator token, a policy owner or a user with `read_audit` (signed
/// request over `GET /v1/audit` and an empty body).
async fn audit(
    State(cas): State<Shared>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, CasError> {
    let token = bearer(&headers);
    let signed = signed_headers(&headers)?;
    let export = blocking(move || {
        let reader = match (&token, &signed) {
            (_, Some(signed)) => AuditReader::Signed(
                signed,
                cipherlake_policy::Target {
                    method: "GET",
                    path: "/v1/audit",
                    body: b"",
                },
            ),
            (Some(token), None) => AuditReader::Operator(token.as_str()),
            (None, None) => {
                return Err(CasError::Unauthorized(
                    "reading the audit log needs the operator token (Authorization: Bearer), or a request signed by a policy owner or a user with read_audit".into(),
                ));
            }
        };
        cas.audit_export(reader)
    })
    .await?;
    Ok(Json(export))
}
