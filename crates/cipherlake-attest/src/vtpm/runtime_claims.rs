//! The runtime claims an HCL report carries: a JSON document with the vTPM's keys as JWKs
//! (the attestation key under `kid` `HCLAkPub`), the VM configuration and the user data the
//! guest last wrote to NV index 0x01400002.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::VerifyError;

/// The `kid` of the attestation key in the runtime claims.
pub const AK_KID: &str = "HCLAkPub";

/// Parsed runtime claims.
#[derive(Debug, Clone)]
pub struct RuntimeClaims {
    /// The attestation key that signs TPM quotes.
    pub attestation_key: rsa::PublicKey,
    /// `vm-configuration`, as the paravisor wrote it.
    pub vm_configuration: serde_json::Value,
    /// `user-data`, decoded from hex.
    pub user_data: Vec<u8>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Jwk>,
    #[serde(rename = "vm-configuration", default)]
    vm_configuration: serde_json::Value,
    #[serde(rename = "user-data", default)]
    user_data: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl RuntimeClaims {
    /// Parses the runtime claims and takes the attestation key by its `kid`, wherever it is in
    /// `keys`. No key or two keys with that `kid` are refused.
    pub fn parse(json: &[u8]) -> Result<Self, VerifyError> {
        let doc: Document = serde_json::from_slice(json)
            .map_err(|e| VerifyError::collateral("HCL runtime claims (JSON)", e))?;
        let mut aks = doc.keys.iter().filter(|k| k.kid.as_deref() == Some(AK_KID));
        let ak = aks.next().ok_or_else(|| VerifyError::AttestationKey {
            reason: format!("no key with kid {AK_KID:?} in the runtime claims"),
        })?;
        if aks.next().is_some() {
            return Err(VerifyError::AttestationKey {
                reason: format!("two keys with kid {AK_KID:?} in the runtime claims"),
            });
        }
        let attestation_key = rsa_jwk(ak)?;
        let user_data = match doc.user_data.as_deref() {
            Some(hex_text) => hex::decode(hex_text)
                .map_err(|e| VerifyError::collateral("HCL runtime claims user-data (hex)", e))?,
            None => Vec::new(),
        };
        Ok(RuntimeClaims {
            attestation_key,
            vm_configuration: doc.vm_configuration,
            user_data,
        })
    }
}

fn rsa_jwk(jwk: &Jwk) -> Result<rsa::PublicKey, VerifyError> {
    let bad = |reason: String| VerifyError::AttestationKey { reason };
    if jwk.kty.as_deref() != Some("RSA") {
        return Err(bad(format!(
            "{AK_KID} has key type {:?}, not RSA",
            jwk.kty.as_deref().unwrap_or("")
        )));
    }
    let part = |name: &str, value: &Option<String>| {
        let text = value
            .as_deref()
            .ok_or_else(|| bad(format!("{AK_KID} has no {name}")))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| bad(format!("{AK_KID} {name} is not base64url: {e}")))
    };
    let n = rsa::BoxedUint::from_be_slice_vartime(&part("n", &jwk.n)?);
    let e = rsa::BoxedUint::from_be_slice_vartime(&part("e", &jwk.e)?);
    rsa::PublicKey::new(n, e).map_err(|e| bad(format!("{AK_KID} is not a usable RSA key: {e}")))
}

/// Writes runtime claims as Azure's paravisor does: the attestation key as a JWK with `kid`
/// `HCLAkPub`, the VM configuration and the user data in upper-case hex. (The LAS writes them
/// for sim-vtpm reports.)
pub fn document(
    ak_modulus: &[u8],
    ak_exponent: &[u8],
    vm_configuration: &serde_json::Value,
    user_data: &[u8],
) -> Vec<u8> {
    let doc = serde_json::json!({
        "keys": [{
            "kid": AK_KID,
            "key_ops": ["sign"],
            "kty": "RSA",
            "e": URL_SAFE_NO_PAD.encode(ak_exponent),
            "n": URL_SAFE_NO_PAD.encode(ak_modulus),
        }],
        "vm-configuration": vm_configuration,
        "user-data": hex::encode_upper(user_data),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}
