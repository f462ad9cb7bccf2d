//! Owner-authenticated reads of a policy's full document (`POST /v1/policies/{name}/read`):
//! the request is signed by an owner of the current version over the policy name and a fresh,
//! single-use CAS nonce ([`cipherlake_policy::verify_read`]). The reply never carries a secret
//! value: inline values are removed from the document, and each secret shows only its kind,
//! where its value comes from and, for key pairs and certificates, the public part.

use std::collections::BTreeMap;

use cipherlake_policy::{Policy, PublicKey, SecretValue, verify_read};
use rusqlite::Transaction;
use serde_json::json;

use super::signed::SignedBy;
use super::{Cas, SignedHeaders};
use crate::CasError;
use crate::api::{OwnerReadRequest, PolicyDocument, SecretSummary};
use crate::binding::NONCE_LEN;
use crate::ca;
use crate::material;

/// The decoded fields of a read request.
struct Decoded {
    owner: PublicKey,
    nonce: [u8; NONCE_LEN],
    signature: [u8; 64],
}

impl Decoded {
    fn parse(req: &OwnerReadRequest) -> Result<Self, CasError> {
        let owner = req
            .owner
            .trim()
            .parse()
            .map_err(|e: String| CasError::BadRequest(format!("owner: {e}")))?;
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(req.nonce.trim(), &mut nonce)
            .map_err(|_| CasError::BadRequest("nonce: expected 64 hex digits".into()))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(req.signature.trim(), &mut signature)
            .map_err(|_| CasError::BadRequest("signature: expected 128 hex digits".into()))?;
        Ok(Decoded {
            owner,
            nonce,
            signature,
        })
    }
}

impl Cas {
    /// An owner's read of policy `name`: consumes the nonce, checks the signer owns the current
    /// version and the signature, audits the read (or its refusal) and returns the document
    /// without secret values.
    pub fn owner_read(
        &self,
        name: &str,
        req: &OwnerReadRequest,
    ) -> Result<PolicyDocument, CasError> {
        let decoded = Decoded::parse(req)?;
        // Spent before anything else: a refused read cannot retry the nonce.
        let fresh = self.spend_nonce(&decoded.nonce)?;
        let result = self.store.transaction(|tx| {
            if !fresh {
                return Err(CasError::Forbidden(
                    "the nonce was never issued, is already used or expired; get a fresh one"
                        .into(),
                ));
            }
            let (_, policy) = self.current(tx, name)?;
            verify_read(&policy, &decoded.owner, &decoded.signature, &decoded.nonce)
                .map_err(|e| CasError::Forbidden(e.to_string()))?;
            let secrets = self.secret_summaries(tx, &policy)?;
            self.append(
                tx,
                "policy-read",
                json!({"policy": name, "owner": decoded.owner.to_string()}),
            )?;
            Ok((policy, secrets))
        });
        let (policy, secrets) = match result {
            Ok(found) => found,
            Err(e) => {
                self.audit_refusal(
                    "policy-read-refused",
                    json!({"policy": name, "owner": decoded.owner.to_string(), "reason": e.to_string()}),
                );
                return Err(e);
            }
        };
        self.document(name, &policy, secrets)
    }

    /// A signed read of policy `name` by one of its owners or a user with `read_policy`
    /// ([`SignedHeaders`] over `POST /v1/policies/{name}/read` and an empty body); audited.
    pub fn signed_read(
        &self,
        name: &str,
        signed: &SignedHeaders,
        target: cipherlake_policy::Target<'_>,
    ) -> Result<PolicyDocument, CasError> {
        if signed.policy != name {
            return Err(CasError::Forbidden(format!(
                "the request is signed for policy {:?}, not {name:?}",
                signed.policy
            )));
        }
        match self.verify_signed(signed, target)? {
            SignedBy::Owner
            | SignedBy::User {
                read_policy: true, ..
            } => {}
            SignedBy::User { user, .. } => {
                let message = format!("user {user:?} of policy {name:?} has no read_policy right");
                self.audit_refusal(
                    "policy-read-refused",
                    json!({"policy": name, "reader": signed.signer.to_string(), "reason": message}),
                );
                return Err(CasError::Forbidden(message));
            }
        }
        let (policy, secrets) = self.store.transaction(|tx| {
            let (_, policy) = self.current(tx, name)?;
            let secrets = self.secret_summaries(tx, &policy)?;
            self.append(
                tx,
                "policy-read",
                json!({"policy": name, "reader": signed.signer.to_string()}),
            )?;
            Ok((policy, secrets))
        })?;
        self.document(name, &policy, secrets)
    }

    /// The reply of a read: public parts, the document without values, secret summaries.
    fn document(
        &self,
        name: &str,
        policy: &Policy,
        secrets: BTreeMap<String, SecretSummary>,
    ) -> Result<PolicyDocument, CasError> {
        Ok(PolicyDocument {
            info: self.policy_info(name)?,
            document: document_without_values(policy)?,
            secrets,
        })
    }

    fn secret_summaries(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
    ) -> Result<BTreeMap<String, SecretSummary>, CasError> {
        let mut out = BTreeMap::new();
        for (name, spec) in &policy.spec().secrets {
            let value = self.secret_value(tx, policy, name)?;
            let source = match (&value, spec) {
                (None, _) => "none",
                (Some(_), s) if s.import_from.is_some() => "imported",
                (Some(_), s) if s.value.is_some() => "inline",
                (Some(_), _) => "generated",
            };
            let public_pem = match &value {
                Some(SecretValue::KeyPair {
                    public_spki_der, ..
                }) => Some(ca::pem_encode("PUBLIC KEY", public_spki_der)),
                Some(SecretValue::Certificate {
                    certificate_der, ..
                }) => Some(ca::cert_pem(certificate_der)),
                _ => None,
            };
            let kind = spec
                .kind
                .known()
                .map_or_else(|| spec.kind.to_string(), |k| material::kind_name(k).into());
            out.insert(
                name.clone(),
                SecretSummary {
                    kind,
                    source: source.into(),
                    public_pem,
                },
            );
        }
        Ok(out)
    }
}

/// The policy as JSON with every inline secret value removed.
fn document_without_values(policy: &Policy) -> Result<serde_json::Value, CasError> {
    let mut spec = policy.spec().clone();
    for secret in spec.secrets.values_mut() {
        secret.value = None;
    }
    serde_json::to_value(&spec)
        .map_err(|e| CasError::Crypto(format!("encoding the policy document: {e}")))
}
