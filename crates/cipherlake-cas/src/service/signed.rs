//! Requests signed by policy users and owners ([`cipherlake_policy::signed_request`]): the KMS
//! for users (a custodian reading results, an ingest tool wrapping keys) and the audit log.
//! The nonce is consumed in the same transaction that checks it, so each signature works once.

use cipherlake_policy::{Policy, Signer, Target, Verified, verify_request};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{Caller, Cas, now};
use crate::CasError;
use crate::audit::Export;
use crate::binding::NONCE_LEN;

/// The signature headers of a request (`api::SIGNED_*`), decoded.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// The policy the signer belongs to.
    pub policy: String,
    /// `user:NAME` or `owner:ed25519:HEX`.
    pub signer: Signer,
    /// A CAS nonce (single use).
    pub nonce: [u8; NONCE_LEN],
    /// The ed25519 signature.
    pub signature: [u8; 64],
}

impl SignedHeaders {
    /// Decodes the header values; `None` when the request carries no signature at all.
    pub fn parse(
        policy: Option<&str>,
        signer: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Option<Self>, CasError> {
        let (policy, signer, nonce, signature) = match (policy, signer, nonce, signature) {
            (None, None, None, None) => return Ok(None),
            (Some(p), Some(s), Some(n), Some(g)) => (p, s, n, g),
            _ => {
                return Err(CasError::BadRequest(format!(
                    "a signed request carries all of the headers {}, {}, {} and {}",
                    crate::api::SIGNED_POLICY,
                    crate::api::SIGNED_SIGNER,
                    crate::api::SIGNED_NONCE,
                    crate::api::SIGNED_SIGNATURE
                )));
            }
        };
        let bad = |what: &str| CasError::BadRequest(what.to_string());
        let signer = signer.trim().parse().map_err(|e: String| {
            CasError::BadRequest(format!("{}: {e}", crate::api::SIGNED_SIGNER))
        })?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        hex::decode_to_slice(nonce.trim(), &mut nonce_bytes)
            .map_err(|_| bad("nonce: expected 64 hex digits"))?;
        let mut signature_bytes = [0u8; 64];
        hex::decode_to_slice(signature.trim(), &mut signature_bytes)
            .map_err(|_| bad("signature: expected 128 hex digits"))?;
        Ok(Some(SignedHeaders {
            policy: policy.trim().to_string(),
            signer,
            nonce: nonce_bytes,
            signature: signature_bytes,
        }))
    }
}

/// Who may read the audit log.
#[derive(Debug, Clone)]
pub enum AuditReader<'a> {
    /// The operator, by its token.
    Operator(&'a str),
    /// A policy owner, or a user with `read_audit`, by a signed request.
    Signed(&'a SignedHeaders, Target<'a>),
}

/// A verified signer, owned.
pub(super) enum SignedBy {
    User {
        user: String,
        read_audit: bool,
        read_policy: bool,
    },
    Owner,
}

impl Cas {
    /// Checks a signed request against the current version of its policy and consumes its
    /// nonce; refusals are audited.
    pub(super) fn verify_signed(
        &self,
        signed: &SignedHeaders,
        target: Target<'_>,
    ) -> Result<SignedBy, CasError> {
        // Spent before anything else, so a refused signature cannot be tried again with it.
        let fresh = self.spend_nonce(&signed.nonce)?;
        let result = self.store.transaction(|tx| {
            if !fresh {
                return Err(CasError::Unauthorized(
                    "the request's nonce was never issued, is already used or expired; sign a fresh one"
                        .into(),
                ));
            }
            let (_, policy): (_, Policy) = self.current(tx, &signed.policy)?;
            let verified = verify_request(
                &policy,
                &signed.signer,
                &signed.signature,
                &signed.nonce,
                target,
            )
            .map_err(|e| CasError::Unauthorized(e.to_string()))?;
            Ok(match verified {
                Verified::User { name, user } => SignedBy::User {
                    user: name.to_string(),
                    read_audit: user.read_audit,
                    read_policy: user.read_policy,
                },
                Verified::Owner(_) => SignedBy::Owner,
            })
        });
        if let Err(e) = &result {
            self.audit_refusal(
                "signed-request-refused",
                json!({"policy": signed.policy, "signer": signed.signer.to_string(), "path": target.path, "reason": e.to_string()}),
            );
        }
        result
    }

    /// Authenticates a user's KMS request: the caller is the user the signature proves.
    pub fn authenticate_user(
        &self,
        signed: &SignedHeaders,
        target: Target<'_>,
    ) -> Result<Caller, CasError> {
        match self.verify_signed(signed, target)? {
            SignedBy::User { user, .. } => Ok(Caller::User {
                policy: signed.policy.clone(),
                user,
            }),
            SignedBy::Owner => Err(CasError::Forbidden(
                "owners hold no KMS grants; list your key as a user of the policy with kms_keys"
                    .into(),
            )),
        }
    }

    /// Exports the audit log with a signed head, for the operator (token), a policy owner, or a
    /// user with `read_audit`. Each reads the whole chain, so verification is unchanged.
    pub fn audit_export(&self, reader: AuditReader<'_>) -> Result<Export, CasError> {
        let who = match reader {
            AuditReader::Operator(token) => {
                if !bool::from(
                    token
                        .trim()
                        .as_bytes()
                        .ct_eq(self.operator_token.as_bytes()),
                ) {
                    self.audit_refusal(
                        "audit-read-refused",
                        json!({"reason": "bad operator token"}),
                    );
                    return Err(CasError::Unauthorized(
                        "the operator token does not match".into(),
                    ));
                }
                "operator".to_string()
            }
            AuditReader::Signed(signed, target) => match self.verify_signed(signed, target)? {
                SignedBy::Owner => format!("{}/{}", signed.policy, signed.signer),
                SignedBy::User {
                    read_audit: true, ..
                } => format!("{}/{}", signed.policy, signed.signer),
                SignedBy::User { user, .. } => {
                    let message = format!(
                        "user {user:?} of policy {:?} has no read_audit right",
                        signed.policy
                    );
                    self.audit_refusal(
                        "audit-read-refused",
                        json!({"policy": signed.policy, "signer": signed.signer.to_string(), "reason": message}),
                    );
                    return Err(CasError::Forbidden(message));
                }
            },
        };
        self.store.transaction(|tx| {
            self.append(tx, "audit-read", json!({"reader": who}))?;
            self.audit.export(tx, now())
        })
    }
}
