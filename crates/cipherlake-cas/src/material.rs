//! Secret values: generation for `generate: true`, decoding of inline values, and the binary
//! encoding stored (encrypted) in the database.
//!
//! Encoding: one tag byte, then for two-part values a 4-byte big-endian length of the first
//! part: `1 ‖ text`, `2 ‖ bytes`, `3 ‖ len ‖ private PKCS#8 ‖ public SPKI`,
//! `4 ‖ len ‖ certificate DER ‖ private PKCS#8`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cipherlake_policy::{SecretKind, SecretSpec, SecretValue};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use crate::CasError;
use crate::at_rest::random;

/// Default size of generated `ascii` and `binary` secrets.
const DEFAULT_SIZE: u32 = 32;
/// Default validity of generated certificates, days.
const DEFAULT_VALID_DAYS: u32 = 365;

/// Encodes a value for storage (the result is zeroized on drop).
pub fn encode(value: &SecretValue) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    match value {
        SecretValue::Text(text) => {
            out.push(1);
            out.extend_from_slice(text.as_bytes());
        }
        SecretValue::Bytes(bytes) => {
            out.push(2);
            out.extend_from_slice(bytes);
        }
        SecretValue::KeyPair {
            private_pkcs8_der,
            public_spki_der,
        } => push_two(&mut out, 3, private_pkcs8_der, public_spki_der),
        SecretValue::Certificate {
            certificate_der,
            private_pkcs8_der,
        } => push_two(&mut out, 4, certificate_der, private_pkcs8_der),
    }
    out
}

fn push_two(out: &mut Vec<u8>, tag: u8, first: &[u8], second: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(first.len() as u32).to_be_bytes());
    out.extend_from_slice(first);
    out.extend_from_slice(second);
}

/// Decodes a stored value.
pub fn decode(bytes: &[u8]) -> Result<SecretValue, CasError> {
    let corrupt = || CasError::Crypto("corrupt stored secret".into());
    let (&tag, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let split = |rest: &[u8]| -> Result<(Vec<u8>, Vec<u8>), CasError> {
        let len = u32::from_be_bytes(
            rest.get(..4)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?,
        ) as usize;
        let first = rest.get(4..4 + len).ok_or_else(corrupt)?.to_vec();
        let second = rest.get(4 + len..).ok_or_else(corrupt)?.to_vec();
        Ok((first, second))
    };
    Ok(match tag {
        1 => SecretValue::Text(Zeroizing::new(
            String::from_utf8(rest.to_vec()).map_err(|_| corrupt())?,
        )),
        2 => SecretValue::Bytes(Zeroizing::new(rest.to_vec())),
        3 => {
            let (private, public) = split(rest)?;
            SecretValue::KeyPair {
                private_pkcs8_der: Zeroizing::new(private),
                public_spki_der: public,
            }
        }
        4 => {
            let (cert, private) = split(rest)?;
            SecretValue::Certificate {
                certificate_der: cert,
                private_pkcs8_der: Zeroizing::new(private),
            }
        }
        _ => return Err(corrupt()),
    })
}

/// The kind of a stored value, as written in the `secrets.kind` column.
pub fn kind_name(kind: SecretKind) -> &'static str {
    use cipherlake_policy::Keyword as _;
    kind.as_str()
}

/// The value of an inline `value:` (ascii text, or base64 for binary and aes-256).
pub fn inline_value(kind: SecretKind, text: &str) -> Result<SecretValue, CasError> {
    match kind {
        SecretKind::Ascii => Ok(SecretValue::Text(Zeroizing::new(text.to_string()))),
        SecretKind::Binary | SecretKind::Aes256 => {
            let bytes = Zeroizing::new(
                BASE64
                    .decode(text.trim())
                    .map_err(|_| CasError::BadRequest("an inline value is not base64".into()))?,
            );
            if kind == SecretKind::Aes256 && bytes.len() != 32 {
                return Err(CasError::BadRequest(
                    "an inline aes-256 value must decode to 32 bytes".into(),
                ));
            }
            Ok(SecretValue::Bytes(bytes))
        }
        _ => Err(CasError::BadRequest(format!(
            "secrets of kind {} cannot be given inline",
            kind_name(kind)
        ))),
    }
}

/// Generates a value for `spec` (`generate: true`). `cas` holds already generated
/// certificate authorities, for `x509` secrets issued by one.
pub fn generate(
    name: &str,
    kind: SecretKind,
    spec: &SecretSpec,
    cas: &BTreeMap<String, SecretValue>,
) -> Result<SecretValue, CasError> {
    let size = spec.size.unwrap_or(DEFAULT_SIZE) as usize;
    match kind {
        SecretKind::Ascii => {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let mut text = Zeroizing::new(String::with_capacity(size));
            while text.len() < size {
                for byte in random::<64>()? {
                    // 62 * 4 = 248: reject above to keep the choice uniform.
                    if byte < 248 && text.len() < size {
                        text.push(ALPHABET[usize::from(byte) % 62] as char);
                    }
                }
            }
            Ok(SecretValue::Text(text))
        }
        SecretKind::Binary => {
            let mut bytes = Zeroizing::new(vec![0u8; size]);
            getrandom::fill(&mut bytes)
                .map_err(|e| CasError::Crypto(format!("no randomness: {e}")))?;
            Ok(SecretValue::Bytes(bytes))
        }
        SecretKind::Aes256 => Ok(SecretValue::Bytes(Zeroizing::new(random::<32>()?.to_vec()))),
        SecretKind::Rsa2048 | SecretKind::Rsa3072 => {
            let bits = if kind == SecretKind::Rsa2048 {
                2048
            } else {
                3072
            };
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|e| CasError::Crypto(format!("RSA key generation: {e}")))?;
            let private = key
                .to_pkcs8_der()
                .map_err(|e| CasError::Crypto(format!("RSA key encoding: {e}")))?;
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| CasError::Crypto(format!("RSA key encoding: {e}")))?;
            Ok(SecretValue::KeyPair {
                private_pkcs8_der: Zeroizing::new(private.as_bytes().to_vec()),
                public_spki_der: public.as_bytes().to_vec(),
            })
        }
        SecretKind::EcP256 => {
            let key = p256_key()?;
            Ok(SecretValue::KeyPair {
                private_pkcs8_der: Zeroizing::new(key.serialize_der()),
                public_spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
            })
        }
        SecretKind::X509Ca => {
            let key = p256_key()?;
            let mut params = cert_params(name, spec)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).map_err(rcgen_error)?;
            Ok(SecretValue::Certificate {
                certificate_der: cert.der().to_vec(),
                private_pkcs8_der: Zeroizing::new(key.serialize_der()),
            })
        }
        SecretKind::X509 => {
            let ca_name = spec
                .ca
                .as_deref()
                .ok_or_else(|| CasError::BadRequest(format!("x509 secret {name:?} names no ca")))?;
            let Some(SecretValue::Certificate {
                certificate_der,
                private_pkcs8_der,
            }) = cas.get(ca_name)
            else {
                return Err(CasError::Conflict(format!(
                    "x509 secret {name:?}: its ca {ca_name:?} has no value"
                )));
            };
            let ca_key = KeyPair::try_from(private_pkcs8_der.as_slice()).map_err(rcgen_error)?;
            let issuer = Issuer::from_ca_cert_der(&certificate_der.as_slice().into(), ca_key)
                .map_err(rcgen_error)?;
            let key = p256_key()?;
            let mut params = cert_params(name, spec)?;
            params.subject_alt_names = spec
                .dns
                .iter()
                .map(|d| {
                    rcgen::string::Ia5String::try_from(d.as_str())
                        .map(rcgen::SanType::DnsName)
                        .map_err(rcgen_error)
                })
                .collect::<Result<_, _>>()?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
            Ok(SecretValue::Certificate {
                certificate_der: cert.der().to_vec(),
                private_pkcs8_der: Zeroizing::new(key.serialize_der()),
            })
        }
    }
}

fn cert_params(name: &str, spec: &SecretSpec) -> Result<CertificateParams, CasError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        spec.common_name.clone().unwrap_or_else(|| name.to_string()),
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after =
        now + time::Duration::days(i64::from(spec.valid_days.unwrap_or(DEFAULT_VALID_DAYS)));
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&random::<16>()?));
    Ok(params)
}

/// A fresh ECDSA P-256 key pair.
pub fn p256_key() -> Result<KeyPair, CasError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)
}

/// Maps an rcgen error (which never carries key bytes).
pub fn rcgen_error(e: rcgen::Error) -> CasError {
    CasError::Crypto(format!("certificate operation: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let values = [
            SecretValue::Text(Zeroizing::new("text".into())),
            SecretValue::Bytes(Zeroizing::new(vec![1, 2, 3])),
            SecretValue::KeyPair {
                private_pkcs8_der: Zeroizing::new(vec![4, 5]),
                public_spki_der: vec![6],
            },
            SecretValue::Certificate {
                certificate_der: vec![7, 8, 9],
                private_pkcs8_der: Zeroizing::new(vec![]),
            },
        ];
        for value in &values {
            let back = decode(&encode(value)).unwrap();
            assert_eq!(*encode(&back), *encode(value));
        }
        assert!(decode(&[9]).is_err());
        assert!(decode(&[3, 0, 0, 0, 9]).is_err());
    }
}
