//! The VCEK/VLEK certificate chain: VEK ← ASK (or ASVK) ← ARK, where the ARK must be one of
//! AMD's built-in roots. Certificates are RSA-PSS (SHA-384) signed; the VEK is a P-384 key.

use std::sync::OnceLock;

use der::{Decode, Encode};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use x509_cert::Certificate;

use super::roots::{PRODUCTS, Product};
use crate::VerifyError;
use crate::time::format_unix;

const RSA_PSS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const PSS_SALT_LEN: usize = 48;

/// The collateral of an SEV-SNP report: its VEK and, optionally, the ASK/ARK chain (when
/// absent, the built-in ASK of the VEK's issuer is used).
#[derive(Debug, Clone)]
pub struct SnpCollateral {
    pub(super) vek: Certificate,
    chain: Vec<Certificate>,
}

impl SnpCollateral {
    /// Parses a VCEK or VLEK (DER or PEM) and an optional PEM chain (ASK then ARK, as AMD's
    /// KDS serves it; order does not matter).
    pub fn new(vek: &[u8], chain_pem: Option<&[u8]>) -> Result<Self, VerifyError> {
        let vek = parse_one(vek, "VCEK/VLEK certificate")?;
        let chain = match chain_pem {
            Some(pem) => Certificate::load_pem_chain(pem)
                .map_err(|e| VerifyError::collateral("SEV-SNP certificate chain (PEM)", e))?,
            None => Vec::new(),
        };
        Ok(SnpCollateral { vek, chain })
    }
}

/// Parses one certificate, DER or PEM.
fn parse_one(bytes: &[u8], what: &str) -> Result<Certificate, VerifyError> {
    let parsed = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::load_pem_chain(bytes).and_then(|mut certs| {
            certs
                .drain(..)
                .next()
                .ok_or_else(|| der::Error::from(der::ErrorKind::Failed))
        })
    } else {
        Certificate::from_der(bytes)
    };
    parsed.map_err(|e| VerifyError::collateral(what, e))
}

/// The verified chain: the product whose root it ends in, and the VEK's public key.
pub(super) struct VerifiedChain {
    pub product: &'static str,
    pub vek_key: p384::ecdsa::VerifyingKey,
}

/// Verifies VEK ← ASK ← built-in ARK, and every certificate's validity at `at`.
pub(super) fn verify_chain(c: &SnpCollateral, at: u64) -> Result<VerifiedChain, VerifyError> {
    let builtin = builtin_roots();
    // Any self-signed certificate supplied must be an AMD root byte for byte.
    for cert in c.chain.iter().filter(|cert| is_self_signed(cert)) {
        let der = cert
            .to_der()
            .map_err(|e| VerifyError::collateral("SEV-SNP certificate chain", e))?;
        if !builtin
            .iter()
            .any(|(_, ark, _)| ark.to_der().ok().as_deref() == Some(&der[..]))
        {
            return Err(VerifyError::UntrustedRoot {
                what: "SEV-SNP".into(),
                reason: format!(
                    "root {} is not a built-in AMD ARK (Milan, Genoa, Turin)",
                    cert.tbs_certificate().subject()
                ),
            });
        }
    }
    let vek_issuer = c.vek.tbs_certificate().issuer();
    let ask = c
        .chain
        .iter()
        .find(|cert| !is_self_signed(cert) && cert.tbs_certificate().subject() == vek_issuer)
        .or_else(|| {
            builtin
                .iter()
                .map(|(_, _, ask)| ask)
                .find(|ask| ask.tbs_certificate().subject() == vek_issuer)
        })
        .ok_or_else(|| VerifyError::UntrustedRoot {
            what: "SEV-SNP".into(),
            reason: format!("no AMD signing key {vek_issuer} issued the VCEK/VLEK"),
        })?;
    let (product, ark) = builtin
        .iter()
        .find(|(_, ark, _)| ark.tbs_certificate().subject() == ask.tbs_certificate().issuer())
        .map(|(p, ark, _)| (p.name, ark))
        .ok_or_else(|| VerifyError::UntrustedRoot {
            what: "SEV-SNP".into(),
            reason: format!(
                "signing key issuer {} is not a built-in AMD ARK",
                ask.tbs_certificate().issuer()
            ),
        })?;
    verify_issued_by(ark, ask).map_err(|reason| VerifyError::UntrustedRoot {
        what: "SEV-SNP".into(),
        reason: format!("signing key is not issued by AMD {product} ARK: {reason}"),
    })?;
    verify_issued_by(ask, &c.vek).map_err(|reason| VerifyError::BadCertificate {
        what: "SEV-SNP".into(),
        reason: format!("VCEK/VLEK: {reason}"),
    })?;
    for (cert, what) in [(ark, "ARK"), (ask, "ASK"), (&c.vek, "VCEK/VLEK")] {
        check_validity(cert, what, at)?;
    }
    let vek_key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
        c.vek
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
    )
    .map_err(|e| VerifyError::BadCertificate {
        what: "SEV-SNP".into(),
        reason: format!("VCEK/VLEK key is not a P-384 public key: {e}"),
    })?;
    Ok(VerifiedChain { product, vek_key })
}

/// The built-in products with their parsed ARK and ASK, parsed once.
pub(super) fn builtin_roots() -> &'static [(Product, Certificate, Certificate)] {
    static ROOTS: OnceLock<Vec<(Product, Certificate, Certificate)>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        PRODUCTS
            .iter()
            .filter_map(|p| {
                let ark = parse_one(p.ark_pem.as_bytes(), "built-in AMD ARK").ok()?;
                let ask = parse_one(p.ask_pem.as_bytes(), "built-in AMD ASK").ok()?;
                Some((*p, ark, ask))
            })
            .collect()
    })
}

fn is_self_signed(cert: &Certificate) -> bool {
    cert.tbs_certificate().issuer() == cert.tbs_certificate().subject()
}

/// Checks `subject`'s RSA-PSS SHA-384 signature with `issuer`'s key.
pub(super) fn verify_issued_by(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    if subject.signature_algorithm().oid != RSA_PSS {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            subject.signature_algorithm().oid
        ));
    }
    let spki = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = rsa::PublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("issuer key is not RSA: {e}"))?;
    let tbs = subject
        .tbs_certificate()
        .to_der()
        .map_err(|e| e.to_string())?;
    let signature = rsa::pss::Signature::try_from(subject.signature().raw_bytes())
        .map_err(|e| e.to_string())?;
    rsa::pss::VerifyingKey::<sha2::Sha384>::new_with_salt_len(key, PSS_SALT_LEN)
        .verify(&tbs, &signature)
        .map_err(|_| format!("not signed by {}", issuer.tbs_certificate().subject()))
}

fn check_validity(cert: &Certificate, what: &str, at: u64) -> Result<(), VerifyError> {
    let validity = cert.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if at < not_before {
        return Err(VerifyError::CollateralNotYetValid {
            what: format!("{what} certificate valid from {}", format_unix(not_before)),
            at: format_unix(at),
        });
    }
    if at > not_after {
        return Err(VerifyError::CollateralExpired {
            what: format!("{what} certificate expired {}", format_unix(not_after)),
            at: format_unix(at),
        });
    }
    Ok(())
}
