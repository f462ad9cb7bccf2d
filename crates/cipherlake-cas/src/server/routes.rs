//! The HTTP routes (documented in `docs/api.md`). Handlers parse bodies themselves so every
//! malformed body gets a clear 400 in the common error shape, and run the CAS operations on
//! blocking threads (SQLite, key generation).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_policy::SignedPolicy;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::tls::PeerCertificate;
use crate::CasError;
use crate::api::{
    AttestRequest, BytesResponse, ErrorBody, PlatformRequest, RsaDecryptRequest, RsaSignRequest,
    UnwrapRequest, UnwrapResponse, WrapRequest, WrapResponse,
};
use crate::kms::Operation;
use crate::service::Cas;

type Shared = Arc<Cas>;

/// The router of every endpoint.
pub fn router(cas: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/policies/{name}", put(put_policy).get(get_policy))
        .route("/v1/attest/nonce", post(nonce))
        .route("/v1/attest", post(attest))
        .route("/v1/platforms", post(register_platform))
        .route("/v1/kms/wrap", post(kms_wrap))
        .route("/v1/kms/unwrap", post(kms_unwrap))
        .route("/v1/kms/rsa-decrypt", post(kms_rsa_decrypt))
        .route("/v1/kms/rsa-sign", post(kms_rsa_sign))
        .route("/v1/audit", get(audit))
        .with_state(cas)
}

impl IntoResponse for CasError {
    fn into_response(self) -> Response {
        let status = match &self {
            CasError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CasError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CasError::Forbidden(_) | CasError::Denied(_) => StatusCode::FORBIDDEN,
            CasError::NotFound(_) => StatusCode::NOT_FOUND,
            CasError::Stale { .. } | CasError::Conflict(_) => StatusCode::CONFLICT,
            CasError::Store(_) | CasError::Io { .. } | CasError::Crypto(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
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

async fn nonce(State(cas): State<Shared>) -> Result<impl IntoResponse, CasError> {
    Ok(Json(blocking(move || cas.nonce()).await?))
}

async fn attest(State(cas): State<Shared>, body: Bytes) -> Result<impl IntoResponse, CasError> {
    let request: AttestRequest = parse(&body)?;
    Ok(Json(blocking(move || cas.attest(&request)).await?))
}

async fn register_platform(
    State(cas): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Zeroizing::new(t.to_string()));
    let request: PlatformRequest = parse(&body)?;
    let response = blocking(move || {
        cas.register_platform(token.as_deref().map(String::as_str), &request.public_key)
    })
    .await?;
    Ok(Json(response))
}

async fn kms_call(
    cas: Shared,
    peer: PeerCertificate,
    op: Operation,
    key_id: String,
    input: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, CasError> {
    blocking(move || {
        let caller = cas.authenticate(peer.0.as_deref())?;
        cas.kms(&caller, op, &key_id, &input)
    })
    .await
}

fn base64_field(name: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, CasError> {
    BASE64
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| CasError::BadRequest(format!("{name}: not base64")))
}

async fn kms_wrap(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: WrapRequest = parse(&body)?;
    let key = base64_field("key", &request.key)?;
    let out = kms_call(cas, peer, Operation::Wrap, request.key_id, key).await?;
    let wrapped = String::from_utf8(out.to_vec())
        .map_err(|_| CasError::Crypto("wrapped key is not UTF-8".into()))?;
    Ok(Json(WrapResponse { wrapped }))
}

async fn kms_unwrap(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: UnwrapRequest = parse(&body)?;
    let input = Zeroizing::new(request.wrapped.into_bytes());
    let out = kms_call(cas, peer, Operation::Unwrap, request.key_id, input).await?;
    Ok(Json(UnwrapResponse {
        key: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

async fn kms_rsa_decrypt(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: RsaDecryptRequest = parse(&body)?;
    let input = base64_field("ciphertext", &request.ciphertext)?;
    let out = kms_call(cas, peer, Operation::RsaDecrypt, request.key_id, input).await?;
    Ok(Json(BytesResponse {
        value: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

async fn kms_rsa_sign(
    State(cas): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Result<impl IntoResponse, CasError> {
    let request: RsaSignRequest = parse(&body)?;
    let input = base64_field("message", &request.message)?;
    let out = kms_call(cas, peer, Operation::RsaSign, request.key_id, input).await?;
    Ok(Json(BytesResponse {
        value: Zeroizing::new(BASE64.encode(&*out)),
    }))
}

async fn audit(State(cas): State<Shared>) -> Result<impl IntoResponse, CasError> {
    Ok(Json(blocking(move || cas.audit_export()).await?))
}
