//! The CAS's own evidence: a custodian checks the CAS before trusting it with policies and
//! secrets (`cipherlake cas verify`).
//!
//! The CAS, started with an attester (the LAS in simulation mode), answers
//! `POST /v1/cas/evidence {"nonce": HEX}` with fresh evidence whose report data is
//!
//! ```text
//! report_data = SHA-512( "cipherlake-cas-evidence-v1\0"
//!                      ‖ nonce                          (32 bytes, chosen by the verifier)
//!                      ‖ SHA-256(CAS TLS certificate SubjectPublicKeyInfo DER) )
//! ```
//!
//! The verifier connects *without* pinning, records the certificate the TLS session presented
//! (the handshake proves the server holds its key), and accepts the CAS only if the evidence
//! verifies, names the expected measurement and binds its nonce and that certificate's key.
//! A man in the middle with another TLS key cannot relay the real CAS's evidence (it binds the
//! real key), and old evidence does not bind a new nonce.

use std::sync::{Arc, Mutex};

use cipherlake_attest::attester::Attester;
use cipherlake_attest::{Claims, Verifier, VerifyOptions, verify_binding};
use reqwest::Method;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::CasError;
use crate::api::{CasEvidenceRequest, CasEvidenceResponse, EvidenceBody};
use crate::binding::NONCE_LEN;
use crate::client::{attester_evidence, fingerprint};
use crate::server::tls::{PeerCertPolicy, ServerCertCheck};

/// Domain separation prefix of the CAS's report data.
pub const DOMAIN: &[u8] = b"cipherlake-cas-evidence-v1\0";

/// The report data binding the verifier's `nonce` to the CAS TLS key (its certificate's
/// SubjectPublicKeyInfo, DER).
pub fn report_data(nonce: &[u8; NONCE_LEN], tls_spki_der: &[u8]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(DOMAIN);
    hasher.update(nonce);
    hasher.update(Sha256::digest(tls_spki_der));
    hasher.finalize().into()
}

/// The SubjectPublicKeyInfo (DER) of a certificate (DER).
pub fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, CasError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|_| CasError::BadRequest("the certificate does not parse".into()))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

fn decode_nonce(text: &str) -> Result<[u8; NONCE_LEN], CasError> {
    let mut nonce = [0u8; NONCE_LEN];
    hex::decode_to_slice(text.trim(), &mut nonce)
        .map_err(|_| CasError::BadRequest("nonce: expected 64 hex digits".into()))?;
    Ok(nonce)
}

/// Server side: fresh evidence from `attester` binding `request`'s nonce and the CAS
/// certificate `tls_cert_der`.
pub async fn evidence(
    attester: &Attester,
    request: &CasEvidenceRequest,
    tls_cert_der: &[u8],
) -> Result<CasEvidenceResponse, CasError> {
    let nonce = decode_nonce(&request.nonce)?;
    let spki = certificate_spki(tls_cert_der)?;
    let evidence = attester_evidence(attester, report_data(&nonce, &spki)).await?;
    Ok(CasEvidenceResponse { evidence })
}

/// What the custodian expects of the CAS.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    /// The CAS's code measurement (sim: SHA-384 of its executable).
    pub measurement: Vec<u8>,
    /// Verifies the evidence (sim reports need the LAS platform key registered).
    pub verifier: Verifier,
    /// The TEE the CAS must run in, if the custodian names one.
    pub tee: Option<cipherlake_attest::Tee>,
    /// Identity fields and the values they must have (`rtmr1`, `host_data`, ...; see
    /// [`cipherlake_policy::reported`]).
    pub fields: Vec<(String, Vec<u8>)>,
    /// What the custodian tolerates: a debug TEE, an outdated or unevaluated TCB. Without it
    /// such a CAS is refused.
    pub tolerate: Vec<cipherlake_policy::Tolerance>,
    /// DCAP collateral for a CAS whose evidence is an SGX or TDX quote.
    pub collateral: Option<cipherlake_attest::Collateral>,
}

/// Checks evidence the CAS returned for `nonce` against the certificate the TLS session
/// presented (`presented_cert_der`) and the expectation. On failure every reason, as
/// `code: message` (`evidence-invalid`, `measurement-mismatch`, `report-data-mismatch`).
pub fn check(
    evidence: &EvidenceBody,
    nonce: &[u8; NONCE_LEN],
    presented_cert_der: &[u8],
    expectation: &Expectation,
) -> Result<Claims, CasError> {
    let mut evidence = crate::evidence::decode(evidence)?;
    if evidence.collateral.is_none()
        && let Some(collateral) = &expectation.collateral
    {
        evidence = evidence.with_collateral(collateral.clone());
    }
    let expected = report_data(nonce, &certificate_spki(presented_cert_der)?);
    let claims = expectation
        .verifier
        .verify(&evidence, &VerifyOptions::now().with_nonce(&expected))
        .map_err(|e| CasError::Denied(vec![format!("evidence-invalid: {e}")]))?;
    let mut reasons = Vec::new();
    if claims.measurement != expectation.measurement {
        reasons.push(format!(
            "measurement-mismatch: the CAS runs {}, expected {}",
            hex::encode(&claims.measurement),
            hex::encode(&expectation.measurement)
        ));
    }
    if verify_binding(&claims, &expected).is_err() {
        reasons.push(
            "report-data-mismatch: the evidence does not bind this nonce and the TLS key this connection presented"
                .into(),
        );
    }
    platform_checks(&claims, expectation, &mut reasons);
    if reasons.is_empty() {
        Ok(claims)
    } else {
        Err(CasError::Denied(reasons))
    }
}

/// The TEE, debug mode, TCB and identity fields the custodian expects.
fn platform_checks(claims: &Claims, expectation: &Expectation, reasons: &mut Vec<String>) {
    use cipherlake_policy::Tolerance;
    if let Some(tee) = expectation.tee
        && claims.tee != tee
    {
        reasons.push(format!(
            "tee-mismatch: the CAS runs in {}, expected {tee}",
            claims.tee
        ));
    }
    let tolerated = |t: Tolerance| expectation.tolerate.contains(&t);
    if claims.debug && !tolerated(Tolerance::Debug) {
        reasons
            .push("debug: the CAS runs in a debug-mode TEE, whose memory the host can read".into());
    }
    for needs in cipherlake_policy::required_tolerances(claims.tcb_status) {
        if !tolerated(*needs) {
            reasons.push(format!(
                "tcb: the CAS's platform TCB is {:?}, which needs {}",
                claims.tcb_status,
                cipherlake_policy::Keyword::as_str(*needs)
            ));
        }
    }
    if claims.tcb_status == cipherlake_attest::TcbStatus::NotEvaluated
        && !claims.tee.is_sim()
        && claims.tee != cipherlake_attest::Tee::Azure
        && !tolerated(Tolerance::UnevaluatedTcb)
    {
        reasons.push(format!(
            "tcb: the CAS's {} evidence carries no TCB verdict (tolerate unevaluated-tcb to accept)",
            claims.tee
        ));
    }
    for (field, expected) in &expectation.fields {
        match cipherlake_policy::reported(claims, field) {
            Err(e) => reasons.push(format!("field-mismatch: {e}")),
            Ok(found) if found.as_deref() == Some(expected.as_slice()) => {}
            Ok(found) => reasons.push(format!(
                "field-mismatch: {field} is {}, expected {}",
                found.map_or_else(|| "not reported".into(), hex::encode),
                hex::encode(expected)
            )),
        }
    }
}

/// A CAS whose evidence checked out.
#[derive(Debug, Clone)]
pub struct VerifiedCas {
    /// The certificate the CAS presented, DER (pin it from now on).
    pub cert_der: Vec<u8>,
    /// The verified claims of its evidence.
    pub claims: Claims,
}

impl VerifiedCas {
    /// The certificate's SHA-256 fingerprint (the pin).
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }

    /// The certificate, PEM (for `--cas-cert`).
    pub fn cert_pem(&self) -> String {
        crate::ca::cert_pem(&self.cert_der)
    }
}

/// Connects to the CAS at `base_url` without pinning, sends a fresh random nonce, and checks
/// the evidence against the certificate this TLS connection presented ([`check`]).
pub async fn verify(base_url: &str, expectation: &Expectation) -> Result<VerifiedCas, CasError> {
    let recorder = Arc::new(CertRecorder::default());
    let http = crate::client::http_client(recording_tls_config(Arc::clone(&recorder))?)?;
    let nonce = crate::at_rest::random::<NONCE_LEN>()?;
    let path = "/v1/cas/evidence";
    let request = http
        .request(
            Method::POST,
            format!("{}{path}", base_url.trim_end_matches('/')),
        )
        .json(&CasEvidenceRequest {
            nonce: hex::encode(nonce),
        });
    let (status, bytes) = crate::client::exchange(request, path).await?;
    let reply: CasEvidenceResponse = crate::client::json_reply(path, status, &bytes)?;
    let cert_der = recorder.single()?;
    let claims = check(&reply.evidence, &nonce, &cert_der, expectation)?;
    Ok(VerifiedCas { cert_der, claims })
}

/// A TLS client configuration that accepts any server certificate and records it in
/// `recorder` (the handshake signature is still verified, so the server holds its key).
/// Trust is decided afterwards, from evidence bound to the recorded certificate.
pub fn recording_tls_config(recorder: Arc<CertRecorder>) -> Result<rustls::ClientConfig, CasError> {
    crate::client::tls_client_config(Arc::new(ServerCertCheck::new(recorder)), None)
}

/// Records the server certificates presented during handshakes, accepting every one.
#[derive(Debug, Default)]
pub struct CertRecorder {
    seen: Mutex<Vec<Vec<u8>>>,
}

impl CertRecorder {
    /// The one certificate every recorded handshake presented; an error if none was recorded
    /// or they differ.
    pub fn single(&self) -> Result<Vec<u8>, CasError> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.split_first() {
            Some((first, rest)) if rest.iter().all(|c| c == first) => Ok(first.clone()),
            Some(_) => Err(CasError::Http(
                "the CAS presented different certificates on different connections".into(),
            )),
            None => Err(CasError::Http("no TLS certificate was presented".into())),
        }
    }
}

impl PeerCertPolicy for CertRecorder {
    fn accept(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(end_entity.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_and_key_both_change_the_binding() {
        let base = report_data(&[1; 32], b"spki");
        assert_ne!(base, report_data(&[2; 32], b"spki"));
        assert_ne!(base, report_data(&[1; 32], b"spkj"));
        assert_ne!(
            base,
            crate::binding::report_data(
                cipherlake_policy::Intent::Probe,
                &[1; 32],
                b"spki",
                b"",
                None
            ),
            "domain-separated from workload report data"
        );
    }
}
