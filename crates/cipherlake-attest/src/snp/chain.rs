//! The VCEK/VLEK certificate chain: VEK ← ASK (or ASVK) ← ARK, where the ARK must be one of
//! AMD's built-in roots. Certificates are RSA-PSS (SHA-384) signed; the VEK is a P-384 key.

use std::sync::OnceLock;

use der::{Decode, Encode};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use super::SigningKey;
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

impl SnpCollateral {
    /// When the VCEK or VLEK expires (unix seconds).
    pub fn not_after(&self) -> u64 {
        self.vek
            .tbs_certificate()
            .validity()
            .not_after
            .to_unix_duration()
            .as_secs()
    }

    /// The VCEK or VLEK, DER-encoded (to send it on with the report).
    pub fn vek_der(&self) -> Result<Vec<u8>, VerifyError> {
        self.vek
            .to_der()
            .map_err(|e| VerifyError::collateral("VCEK/VLEK certificate", e))
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

/// One processor generation's AMD certificates, parsed.
#[derive(Debug, Clone)]
pub struct Root {
    /// The product (`Milan`, `Genoa`, `Turin`).
    pub product: &'static str,
    ark: Certificate,
    ask: Certificate,
    asvk: Certificate,
}

impl Root {
    /// A root from PEM certificates. Production code uses only the built-in roots; tests make
    /// their own PKI through this.
    #[cfg(test)]
    pub(crate) fn from_pem(
        product: &'static str,
        ark: &[u8],
        ask: &[u8],
        asvk: &[u8],
    ) -> Result<Self, VerifyError> {
        Ok(Root {
            product,
            ark: parse_one(ark, "ARK")?,
            ask: parse_one(ask, "ASK")?,
            asvk: parse_one(asvk, "ASVK")?,
        })
    }

    /// The ARK is self-signed and issued the ASK and the ASVK.
    #[cfg(test)]
    pub(crate) fn check_self_consistent(&self) -> Result<(), String> {
        verify_issued_by(&self.ark, &self.ark)?;
        verify_issued_by(&self.ark, &self.ask)?;
        verify_issued_by(&self.ark, &self.asvk)
    }

    /// The intermediate that issues `key`: the ASK for VCEKs, the ASVK for VLEKs.
    fn issuer_of(&self, key: SigningKey) -> &Certificate {
        match key {
            SigningKey::Vcek => &self.ask,
            SigningKey::Vlek => &self.asvk,
        }
    }
}

/// An AMD certificate revocation list (as KDS serves it at `/vcek/v1/{product}/crl` or
/// `/vlek/v1/{product}/crl`), parsed; checked against its ARK when used.
#[derive(Debug, Clone)]
pub struct AmdCrl(CertificateList);

impl AmdCrl {
    /// Parses a CRL, DER or PEM.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let what = "AMD certificate revocation list";
        let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes).map_err(|e| VerifyError::collateral(what, e))?;
            let (label, der) = der::pem::decode_vec(text.as_bytes())
                .map_err(|e| VerifyError::collateral(what, e))?;
            if label != "X509 CRL" {
                return Err(VerifyError::collateral(
                    what,
                    format!("PEM label {label:?}"),
                ));
            }
            der
        } else {
            bytes.to_vec()
        };
        CertificateList::from_der(&der)
            .map(AmdCrl)
            .map_err(|e| VerifyError::collateral(what, e))
    }
}

impl AmdCrl {
    /// The issuer (the ARK's name).
    pub fn issuer(&self) -> String {
        self.0.tbs_cert_list.issuer.to_string()
    }

    /// When it was issued and when it must be replaced (unix seconds).
    pub fn dates(&self) -> (u64, Option<u64>) {
        let tbs = &self.0.tbs_cert_list;
        (
            tbs.this_update.to_unix_duration().as_secs(),
            tbs.next_update.map(|t| t.to_unix_duration().as_secs()),
        )
    }
}

/// What SEV-SNP chains are checked against: AMD's roots (built in) and the CRLs the verifier
/// was given.
#[derive(Debug, Clone)]
pub struct SnpTrust {
    roots: std::sync::Arc<[Root]>,
    crls: Vec<AmdCrl>,
}

impl Default for SnpTrust {
    fn default() -> Self {
        SnpTrust {
            roots: builtin_roots(),
            crls: Vec::new(),
        }
    }
}

impl SnpTrust {
    /// Checks chains against this CRL too (it applies to the ARK that signed it).
    pub fn with_crl(mut self, crl: AmdCrl) -> Self {
        self.crls.push(crl);
        self
    }

    /// Trust in test roots instead of AMD's.
    #[cfg(test)]
    pub(crate) fn with_test_roots(roots: Vec<Root>) -> Self {
        SnpTrust {
            roots: roots.into(),
            crls: Vec::new(),
        }
    }

    fn root(&self, product: &str) -> Option<&Root> {
        self.roots.iter().find(|r| r.product == product)
    }
}

/// Verifies VEK ← ASK (VCEK) or ASVK (VLEK) ← ARK of `product` (from the report; else
/// from the VEK's issuer), every certificate's validity at `at`, and the CRLs.
pub(super) fn verify_chain(
    c: &SnpCollateral,
    trust: &SnpTrust,
    key: SigningKey,
    product: Option<&'static str>,
    at: u64,
) -> Result<VerifiedChain, VerifyError> {
    let untrusted = |reason: String| VerifyError::UntrustedRoot {
        what: "SEV-SNP".into(),
        reason,
    };
    // Any self-signed certificate supplied must be an AMD root byte for byte.
    for cert in c.chain.iter().filter(|cert| is_self_signed(cert)) {
        let der = cert
            .to_der()
            .map_err(|e| VerifyError::collateral("SEV-SNP certificate chain", e))?;
        if !trust
            .roots
            .iter()
            .any(|r| r.ark.to_der().ok().as_deref() == Some(&der[..]))
        {
            return Err(untrusted(format!(
                "root {} is not a built-in AMD ARK (Milan, Genoa, Turin)",
                cert.tbs_certificate().subject()
            )));
        }
    }
    let vek_issuer = c.vek.tbs_certificate().issuer();
    let issued_by =
        |r: &Root, k: SigningKey| r.issuer_of(k).tbs_certificate().subject() == vek_issuer;
    let root = match product {
        Some(product) => trust
            .root(product)
            .ok_or_else(|| untrusted(format!("no built-in AMD root for {product}")))?,
        None => trust
            .roots
            .iter()
            .find(|r| issued_by(r, SigningKey::Vcek) || issued_by(r, SigningKey::Vlek))
            .ok_or_else(|| {
                untrusted(format!(
                    "no AMD signing key {vek_issuer} issued the VCEK/VLEK"
                ))
            })?,
    };
    if !issued_by(root, key) {
        let other = match key {
            SigningKey::Vcek => SigningKey::Vlek,
            SigningKey::Vlek => SigningKey::Vcek,
        };
        if issued_by(root, other) {
            return Err(VerifyError::VekIssuer {
                reason: format!(
                    "the report is signed by a {}, but its certificate is issued by {vek_issuer}, the {} {} key",
                    key_name(key),
                    root.product,
                    intermediate_name(other)
                ),
            });
        }
        if let Some(theirs) = trust
            .roots
            .iter()
            .find(|r| issued_by(r, SigningKey::Vcek) || issued_by(r, SigningKey::Vlek))
        {
            return Err(VerifyError::ProductMismatch {
                report: root.product.to_string(),
                certificate: theirs.product.to_string(),
            });
        }
    }
    // The intermediate as supplied (AMD re-issues them) or built in; either must be the
    // ARK's and carry the expected name.
    let intermediate = c
        .chain
        .iter()
        .find(|cert| !is_self_signed(cert) && cert.tbs_certificate().subject() == vek_issuer)
        .filter(|_| issued_by(root, key))
        .unwrap_or(root.issuer_of(key));
    if intermediate.tbs_certificate().subject() != vek_issuer {
        return Err(untrusted(format!(
            "no AMD {} {} issued the {} ({vek_issuer})",
            root.product,
            intermediate_name(key),
            key_name(key)
        )));
    }
    let ark = &root.ark;
    verify_issued_by(ark, intermediate).map_err(|reason| {
        untrusted(format!(
            "{} is not issued by AMD {} ARK: {reason}",
            intermediate_name(key),
            root.product
        ))
    })?;
    verify_issued_by(intermediate, &c.vek).map_err(|reason| VerifyError::BadCertificate {
        what: "SEV-SNP".into(),
        reason: format!("{}: {reason}", key_name(key)),
    })?;
    for (cert, what) in [
        (ark, "ARK"),
        (intermediate, intermediate_name(key)),
        (&c.vek, key_name(key)),
    ] {
        check_validity(cert, what, at)?;
    }
    for crl in &trust.crls {
        check_crl(
            crl,
            root,
            &[
                (intermediate, intermediate_name(key)),
                (&c.vek, key_name(key)),
            ],
            at,
        )?;
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
        reason: format!("{} key is not a P-384 public key: {e}", key_name(key)),
    })?;
    Ok(VerifiedChain {
        product: root.product,
        vek_key,
    })
}

fn key_name(key: SigningKey) -> &'static str {
    match key {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
    }
}

fn intermediate_name(key: SigningKey) -> &'static str {
    match key {
        SigningKey::Vcek => "ASK",
        SigningKey::Vlek => "ASVK",
    }
}

/// A CRL of `root`'s ARK must verify and be current; then none of `certs` may be on it.
/// CRLs of other ARKs do not apply.
fn check_crl(
    crl: &AmdCrl,
    root: &Root,
    certs: &[(&Certificate, &str)],
    at: u64,
) -> Result<(), VerifyError> {
    let tbs = &crl.0.tbs_cert_list;
    if tbs.issuer != *root.ark.tbs_certificate().subject() {
        return Ok(());
    }
    verify_signed_by(
        &root.ark,
        &crl.0.signature_algorithm,
        &tbs.to_der()
            .map_err(|e| VerifyError::collateral("AMD CRL", e))?,
        crl.0.signature.raw_bytes(),
    )
    .map_err(|reason| VerifyError::BadSignature {
        what: format!("the AMD {} CRL ({reason})", root.product),
    })?;
    let this_update = tbs.this_update.to_unix_duration().as_secs();
    if at < this_update {
        return Err(VerifyError::CollateralNotYetValid {
            what: format!(
                "AMD {} CRL issued {}",
                root.product,
                format_unix(this_update)
            ),
            at: format_unix(at),
        });
    }
    if let Some(next) = tbs.next_update.map(|t| t.to_unix_duration().as_secs())
        && at > next
    {
        return Err(VerifyError::CollateralExpired {
            what: format!("AMD {} CRL superseded {}", root.product, format_unix(next)),
            at: format_unix(at),
        });
    }
    for revoked in tbs.revoked_certificates.iter().flatten() {
        for (cert, what) in certs {
            if revoked.serial_number == *cert.tbs_certificate().serial_number() {
                return Err(VerifyError::Revoked {
                    what: format!(
                        "AMD {} {what} (serial {}) is on the {} CRL",
                        root.product,
                        hex::encode(revoked.serial_number.as_bytes()),
                        root.product
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The built-in products with their parsed ARK, ASK and ASVK, parsed once.
pub(super) fn builtin_roots() -> std::sync::Arc<[Root]> {
    static ROOTS: OnceLock<std::sync::Arc<[Root]>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            PRODUCTS
                .iter()
                .filter_map(|p: &Product| {
                    Some(Root {
                        product: p.name,
                        ark: parse_one(p.ark_pem.as_bytes(), "built-in AMD ARK").ok()?,
                        ask: parse_one(p.ask_pem.as_bytes(), "built-in AMD ASK").ok()?,
                        asvk: parse_one(p.asvk_pem.as_bytes(), "built-in AMD ASVK").ok()?,
                    })
                })
                .collect()
        })
        .clone()
}

fn is_self_signed(cert: &Certificate) -> bool {
    cert.tbs_certificate().issuer() == cert.tbs_certificate().subject()
}

/// Checks `subject`'s RSA-PSS SHA-384 signature with `issuer`'s key.
pub(super) fn verify_issued_by(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    let tbs = subject
        .tbs_certificate()
        .to_der()
        .map_err(|e| e.to_string())?;
    verify_signed_by(
        issuer,
        subject.signature_algorithm(),
        &tbs,
        subject.signature().raw_bytes(),
    )
}

/// Checks an RSA-PSS SHA-384 (salt 48) signature over `signed` by `issuer`'s key.
fn verify_signed_by(
    issuer: &Certificate,
    algorithm: &x509_cert::AlgorithmIdentifier,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    if algorithm.oid != RSA_PSS {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            algorithm.oid
        ));
    }
    let spki = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = rsa::PublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("issuer key is not RSA: {e}"))?;
    let signature = rsa::pss::Signature::try_from(signature).map_err(|e| e.to_string())?;
    rsa::pss::VerifyingKey::<sha2::Sha384>::new_with_salt_len(key, PSS_SALT_LEN)
        .verify(signed, &signature)
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
