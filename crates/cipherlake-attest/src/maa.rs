//! Azure Attestation (MAA) tokens: RS256 JWTs verified against a pinned JWKS (keys as `x5c`
//! certificates, or `n`/`e`), a pinned issuer, `exp` and `nbf`; the SGX and SEV-SNP claim sets
//! are mapped to [`Claims`].

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::{Decode, Encode};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::time::format_unix;
use crate::{Claims, TcbStatus, Tee, VerifyError};

/// Largest token accepted (MAA tokens are a few kilobytes).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The pinned attestation provider: its signing keys by key id, and its issuer URL.
#[derive(Debug, Clone)]
pub struct MaaTrust {
    keys: HashMap<String, rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>,
    issuer: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl MaaTrust {
    /// Pins the keys of a JWKS document (`{"keys":[{"kid":…,"x5c":[…]}]}`, as served by
    /// `https://<provider>/certs`) and the provider's issuer URL (`https://<provider>`).
    pub fn new(jwks_json: &[u8], issuer: impl Into<String>) -> Result<Self, VerifyError> {
        let jwks: Jwks =
            serde_json::from_slice(jwks_json).map_err(|e| VerifyError::collateral("JWKS", e))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let key = jwk_key(&jwk)?;
            keys.insert(jwk.kid, rsa::pkcs1v15::VerifyingKey::new(key));
        }
        Ok(MaaTrust {
            keys,
            issuer: issuer.into(),
        })
    }
}

/// The RSA key of a JWK: from its first `x5c` certificate, else from `n` and `e`.
fn jwk_key(jwk: &Jwk) -> Result<rsa::PublicKey, VerifyError> {
    let what = || format!("JWKS key {:?}", jwk.kid);
    if let Some(cert_b64) = jwk.x5c.first() {
        let der = STANDARD
            .decode(cert_b64)
            .map_err(|e| VerifyError::collateral(what(), e))?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| VerifyError::collateral(what(), e))?;
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| VerifyError::collateral(what(), e))?;
        return rsa::PublicKey::from_public_key_der(&spki)
            .map_err(|e| VerifyError::collateral(what(), e));
    }
    let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
        return Err(VerifyError::collateral(what(), "has neither x5c nor n/e"));
    };
    let decode = |v: &str| {
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|e| VerifyError::collateral(what(), e))
    };
    let n = rsa::BoxedUint::from_be_slice_vartime(&decode(n)?);
    let e = rsa::BoxedUint::from_be_slice_vartime(&decode(e)?);
    rsa::PublicKey::new(n, e).map_err(|e| VerifyError::collateral(what(), e))
}

/// Verifies an MAA token (compact JWS, UTF-8 bytes) as of `at` (unix secs).
pub fn verify_token(token: &[u8], trust: &MaaTrust, at: u64) -> Result<Claims, VerifyError> {
    let payload = verify_jws(token, trust)?;
    check_issuer_and_time(&payload, trust, at)?;
    map_claims(&payload)
}

/// Checks the JWS signature and returns the payload object.
fn verify_jws(token: &[u8], trust: &MaaTrust) -> Result<Map<String, Value>, VerifyError> {
    let malformed = |offset: usize, reason: &str| VerifyError::malformed("token", offset, reason);
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(MAX_TOKEN_LEN, "token too large"));
    }
    let token = std::str::from_utf8(token.trim_ascii())
        .map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            0,
            "not a compact JWS (three dot-separated parts)",
        ));
    };
    let payload_offset = header_b64.len() + 1;
    let sig_offset = payload_offset + payload_b64.len() + 1;
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| malformed(0, "header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| malformed(0, "header is not a JWS header"))?;
    if header.alg != "RS256" {
        return Err(VerifyError::UnsupportedAlgorithm { alg: header.alg });
    }
    let kid = header.kid.unwrap_or_default();
    let key = trust
        .keys
        .get(&kid)
        .ok_or(VerifyError::UnknownKeyId { kid })?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| malformed(sig_offset, "signature is not base64url"))?;
    let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
        .map_err(|_| malformed(sig_offset, "signature is not an RSA signature"))?;
    let signed = &token[..sig_offset - 1];
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature {
            what: "the token (RS256)".into(),
        })?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| malformed(payload_offset, "payload is not base64url"))?;
    serde_json::from_slice(&payload)
        .map_err(|_| malformed(payload_offset, "payload is not a JSON object"))
}

fn check_issuer_and_time(
    payload: &Map<String, Value>,
    trust: &MaaTrust,
    at: u64,
) -> Result<(), VerifyError> {
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if iss.trim_end_matches('/') != trust.issuer.trim_end_matches('/') {
        return Err(VerifyError::WrongIssuer {
            expected: trust.issuer.clone(),
            found: iss.to_string(),
        });
    }
    let exp = numeric(payload, "exp")?.ok_or_else(|| missing("exp"))?;
    if at >= exp {
        return Err(VerifyError::TokenExpired {
            exp: format_unix(exp),
            at: format_unix(at),
        });
    }
    if let Some(nbf) = numeric(payload, "nbf")?
        && at < nbf
    {
        return Err(VerifyError::TokenNotYetValid {
            nbf: format_unix(nbf),
            at: format_unix(at),
        });
    }
    Ok(())
}

fn map_claims(payload: &Map<String, Value>) -> Result<Claims, VerifyError> {
    // Confidential VMs attested through the vTPM nest the TEE claims.
    let tee_claims = match payload.get("x-ms-isolation-tee") {
        Some(Value::Object(inner)) => inner,
        _ => payload,
    };
    let attestation_type = tee_claims
        .get("x-ms-attestation-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut claims = Claims {
        tee: Tee::Azure,
        attested_tee: None,
        evidence_version: 1,
        measurement: Vec::new(),
        rtmrs: Vec::new(),
        signer: None,
        product_id: None,
        svn: None,
        debug: false,
        tcb_status: TcbStatus::NotEvaluated,
        advisory_ids: Vec::new(),
        report_data: [0; 64],
        host_data: None,
        platform_id: None,
        timestamp: numeric(payload, "iat")?,
        collateral: None,
        sgx: None,
        tdx: None,
        snp: None,
        vtpm: None,
    };
    let c = tee_claims;
    match attestation_type {
        "sgx" => {
            claims.attested_tee = Some(Tee::Sgx);
            claims.measurement = hex_claim(c, "x-ms-sgx-mrenclave")?;
            claims.signer = Some(hex_claim(c, "x-ms-sgx-mrsigner")?);
            claims.product_id = numeric(c, "x-ms-sgx-product-id")?
                .map(|v| u16::try_from(v).map_err(|_| missing("x-ms-sgx-product-id")))
                .transpose()?;
            claims.svn = small(c, "x-ms-sgx-svn")?;
            claims.debug = bool_claim(c, "x-ms-sgx-is-debuggable")?;
            claims.report_data = report_data(c, "x-ms-sgx-report-data")?;
        }
        "sevsnpvm" => {
            claims.attested_tee = Some(Tee::SevSnp);
            claims.measurement = hex_claim(c, "x-ms-sevsnpvm-launchmeasurement")?;
            claims.debug = bool_claim(c, "x-ms-sevsnpvm-is-debuggable")?;
            claims.report_data = report_data(c, "x-ms-sevsnpvm-reportdata")?;
            claims.host_data = optional_hex(c, "x-ms-sevsnpvm-hostdata")?;
            claims.svn = small(c, "x-ms-sevsnpvm-guestsvn")?;
            let author = optional_hex(c, "x-ms-sevsnpvm-authorkeydigest")?
                .filter(|d| d.iter().any(|b| *b != 0));
            claims.signer = match author {
                Some(a) => Some(a),
                None => optional_hex(c, "x-ms-sevsnpvm-idkeydigest")?,
            };
        }
        _ => return Err(missing("x-ms-attestation-type (sgx or sevsnpvm)")),
    }
    Ok(claims)
}

fn missing(name: &str) -> VerifyError {
    VerifyError::MissingClaim { name: name.into() }
}

fn numeric(c: &Map<String, Value>, name: &str) -> Result<Option<u64>, VerifyError> {
    match c.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| missing(name)),
    }
}

fn small(c: &Map<String, Value>, name: &str) -> Result<Option<u32>, VerifyError> {
    numeric(c, name)?
        .map(|v| u32::try_from(v).map_err(|_| missing(name)))
        .transpose()
}

fn bool_claim(c: &Map<String, Value>, name: &str) -> Result<bool, VerifyError> {
    c.get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| missing(name))
}

fn optional_hex(c: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, VerifyError> {
    match c.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .map(Some)
            .ok_or_else(|| missing(name)),
    }
}

fn hex_claim(c: &Map<String, Value>, name: &str) -> Result<Vec<u8>, VerifyError> {
    optional_hex(c, name)?.ok_or_else(|| missing(name))
}

fn report_data(c: &Map<String, Value>, name: &str) -> Result<[u8; 64], VerifyError> {
    hex_claim(c, name)?.try_into().map_err(|_| missing(name))
}
