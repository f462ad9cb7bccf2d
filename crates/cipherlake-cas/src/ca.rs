//! Certificates: the per-policy workload CA, workload leaf certificates issued from CSRs, the
//! CAS's own TLS certificate, and verification of a presented workload certificate.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::CasError;
use crate::at_rest::random;
use crate::material::{p256_key, rcgen_error};

/// Prefix of workload identities: `spiffe://cipherlake/{policy}/{service}`.
pub const SPIFFE_PREFIX: &str = "spiffe://cipherlake/";

/// OID of the workload certificate extension that binds the released configuration: an OCTET
/// STRING holding SHA-256 of the configuration's plaintext (the JSON the CAS sealed). A client
/// refuses a configuration whose digest is not the one its certificate carries, so whoever
/// relays the CAS's reply cannot swap the configuration (console, variables) under a genuine
/// certificate. (An arc under cipherlake's private-use OID.)
pub const RELEASE_DIGEST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 7, 1];

/// A new workload CA for `policy`: (certificate DER, private key PKCS#8 DER).
pub fn new_policy_ca(policy: &str) -> Result<(Vec<u8>, Vec<u8>), CasError> {
    let key = p256_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("cipherlake policy CA {policy}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&random::<16>()?));
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// A CSR whose signature verified: its public key (SubjectPublicKeyInfo DER) and parameters.
pub struct VerifiedCsr {
    params: CertificateSigningRequestParams,
}

impl VerifiedCsr {
    /// Parses a PEM CSR and verifies its self-signature.
    pub fn from_pem(pem: &str) -> Result<Self, CasError> {
        let params = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| CasError::BadRequest(format!("invalid CSR: {e}")))?;
        Ok(VerifiedCsr { params })
    }

    /// The CSR's SubjectPublicKeyInfo DER (what the report data binds).
    pub fn spki_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.params.public_key)
    }
}

/// An issued workload certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf, DER.
    pub der: Vec<u8>,
    /// Serial number, hex.
    pub serial: String,
    /// Expiry, unix seconds.
    pub not_after: u64,
}

/// What a workload certificate names and binds.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The policy.
    pub policy: &'a str,
    /// The service.
    pub service: &'a str,
    /// SHA-256 of the released configuration's plaintext ([`RELEASE_DIGEST_OID`]).
    pub release_digest: [u8; 32],
}

/// Issues a certificate for the CSR's key naming `spiffe://cipherlake/{policy}/{service}` and
/// binding the release digest, valid `ttl_secs`, signed by the policy CA. Only the key is taken
/// from the CSR.
pub fn issue_workload(
    csr: &VerifiedCsr,
    subject: Subject<'_>,
    ca_cert_der: &[u8],
    ca_key_pkcs8: &[u8],
    ttl_secs: u64,
) -> Result<Issued, CasError> {
    let Subject {
        policy,
        service,
        release_digest,
    } = subject;
    let ca_key = KeyPair::try_from(ca_key_pkcs8).map_err(rcgen_error)?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert_der.into(), ca_key).map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{policy}/{service}"));
    params.distinguished_name = dn;
    let uri = rcgen::string::Ia5String::try_from(format!("{SPIFFE_PREFIX}{policy}/{service}"))
        .map_err(rcgen_error)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let mut digest = vec![0x04, 32];
    digest.extend_from_slice(&release_digest);
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        RELEASE_DIGEST_OID,
        digest,
    )];
    let serial = random::<16>()?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    let not_after = now + time::Duration::seconds(ttl_secs as i64);
    params.not_after = not_after;
    let cert = params
        .signed_by(&csr.params.public_key, &issuer)
        .map_err(rcgen_error)?;
    Ok(Issued {
        der: cert.der().to_vec(),
        serial: serial_hex(&serial),
        not_after: not_after.unix_timestamp() as u64,
    })
}

/// The CAS's self-signed TLS certificate for `names` (DNS names or IP addresses):
/// (certificate DER, key PKCS#8 DER).
pub fn new_tls_identity(names: &[String]) -> Result<(Vec<u8>, Vec<u8>), CasError> {
    let key = p256_key()?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(rcgen_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "cipherlake CAS");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// PEM of a DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// PEM encoding of DER bytes under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The workload identity a certificate names: (policy, service) from its
/// `spiffe://cipherlake/{policy}/{service}` URI.
pub fn workload_identity(leaf_der: &[u8]) -> Result<(String, String), CasError> {
    let (_, cert) = X509Certificate::from_der(leaf_der)
        .map_err(|_| CasError::Unauthorized("the client certificate does not parse".into()))?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| CasError::Unauthorized("the client certificate names no workload".into()))?;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && let Some(rest) = uri.strip_prefix(SPIFFE_PREFIX)
            && let Some((policy, service)) = rest.split_once('/')
            && !policy.is_empty()
            && !service.is_empty()
            && !service.contains('/')
        {
            return Ok((policy.to_string(), service.to_string()));
        }
    }
    Err(CasError::Unauthorized(
        "the client certificate names no spiffe://cipherlake/ workload".into(),
    ))
}

/// A serial number as hex, without leading zero bytes (as DER encodes it).
fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    hex::encode(&bytes[start..])
}

/// The serial number of a certificate (hex), as [`Issued::serial`] gives it.
pub fn serial(leaf_der: &[u8]) -> Result<String, CasError> {
    let (_, cert) = X509Certificate::from_der(leaf_der)
        .map_err(|_| CasError::Unauthorized("the client certificate does not parse".into()))?;
    Ok(serial_hex(cert.raw_serial()))
}

/// The release digest a workload certificate binds ([`RELEASE_DIGEST_OID`]), if it has one.
pub fn release_digest(leaf_der: &[u8]) -> Result<Option<[u8; 32]>, CasError> {
    let (_, cert) = X509Certificate::from_der(leaf_der)
        .map_err(|_| CasError::Http("the workload certificate does not parse".into()))?;
    let oid = x509_parser::oid_registry::Oid::from(RELEASE_DIGEST_OID)
        .map_err(|_| CasError::Crypto("release digest OID".into()))?;
    for extension in cert.extensions() {
        if extension.oid == oid {
            return match extension.value {
                [0x04, 32, digest @ ..] if digest.len() == 32 => {
                    Ok(Some(digest.try_into().expect("32 bytes")))
                }
                _ => Err(CasError::Http(
                    "the workload certificate's release digest is malformed".into(),
                )),
            };
        }
    }
    Ok(None)
}

/// Checks that `leaf_der` was signed by the CA `ca_der` and is valid at `now`.
pub fn verify_issued_by(leaf_der: &[u8], ca_der: &[u8], now: u64) -> Result<(), CasError> {
    let unauthorized = |m: &str| CasError::Unauthorized(m.to_string());
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|_| unauthorized("the client certificate does not parse"))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|_| CasError::Crypto("stored policy CA does not parse".into()))?;
    leaf.verify_signature(Some(ca.public_key()))
        .map_err(|_| unauthorized("the client certificate is not issued by its policy's CA"))?;
    let validity = leaf.validity();
    let now = now as i64;
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return Err(unauthorized(
            "the client certificate is expired or not yet valid",
        ));
    }
    Ok(())
}
