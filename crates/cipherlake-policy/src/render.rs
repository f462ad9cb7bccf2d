//! Rendering a service's `env`, `args` and `files` with secret values supplied by the CAS.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::keyword::SecretKind;
use crate::path::FieldPath;
use crate::policy::Policy;
use crate::template::{
    Expr, Filter, Part, Piece, SecretRef, Template, TemplateError, render_problem,
};

/// A secret's value as the CAS holds it. Private material is zeroized on drop; `Debug` shows
/// only the variant.
#[derive(Clone)]
pub enum SecretValue {
    /// An `ascii` secret.
    Text(Zeroizing<String>),
    /// A `binary` or `aes-256` secret.
    Bytes(Zeroizing<Vec<u8>>),
    /// An `rsa-2048`, `rsa-3072` or `ec-p256` key pair.
    KeyPair {
        /// The private key, PKCS#8 DER.
        private_pkcs8_der: Zeroizing<Vec<u8>>,
        /// The public key, SubjectPublicKeyInfo DER.
        public_spki_der: Vec<u8>,
    },
    /// An `x509` or `x509-ca` certificate with its key.
    Certificate {
        /// The certificate, DER.
        certificate_der: Vec<u8>,
        /// Its private key, PKCS#8 DER.
        private_pkcs8_der: Zeroizing<Vec<u8>>,
    },
}

impl SecretValue {
    /// Whether this material fits a secret of `kind`.
    fn fits(&self, kind: SecretKind) -> bool {
        match self {
            SecretValue::Text(_) => kind == SecretKind::Ascii,
            SecretValue::Bytes(bytes) => match kind {
                SecretKind::Binary => true,
                SecretKind::Aes256 => bytes.len() == 32,
                _ => false,
            },
            SecretValue::KeyPair { .. } => kind.is_key_pair(),
            SecretValue::Certificate { .. } => kind.is_certificate(),
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretValue::Text(_) => "SecretValue::Text(redacted)",
            SecretValue::Bytes(_) => "SecretValue::Bytes(redacted)",
            SecretValue::KeyPair { .. } => "SecretValue::KeyPair(redacted)",
            SecretValue::Certificate { .. } => "SecretValue::Certificate(redacted)",
        })
    }
}

/// Where rendering finds secret values (the CAS's store, a map in tests).
pub trait SecretValues {
    /// The value of the policy's secret `name`, if available.
    fn secret(&self, name: &str) -> Option<&SecretValue>;
}

impl<S: BuildHasher> SecretValues for HashMap<String, SecretValue, S> {
    fn secret(&self, name: &str) -> Option<&SecretValue> {
        self.get(name)
    }
}

impl SecretValues for BTreeMap<String, SecretValue> {
    fn secret(&self, name: &str) -> Option<&SecretValue> {
        self.get(name)
    }
}

/// A rendered string: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedValue(Zeroizing<String>);

impl RenderedValue {
    /// The text, to hand to the workload (sealed).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RenderedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

/// A service's configuration with secrets substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Environment variables.
    pub env: BTreeMap<String, RenderedValue>,
    /// Command-line arguments.
    pub args: Vec<RenderedValue>,
    /// File contents by absolute path.
    pub files: BTreeMap<String, RenderedValue>,
}

/// Why a configuration cannot be rendered. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The policy has no such service.
    #[error("the policy has no service {0:?}")]
    UnknownService(String),
    /// A template references a secret the policy does not define.
    #[error("{path}: references undefined secret {name:?}")]
    UndefinedSecret {
        /// The template's field.
        path: FieldPath,
        /// The secret.
        name: String,
    },
    /// The secret is defined but no value was supplied.
    #[error("{path}: secret {name:?} has no value yet (generate, import or upload it)")]
    MissingValue {
        /// The template's field.
        path: FieldPath,
        /// The secret.
        name: String,
    },
    /// The supplied value does not fit the secret's kind.
    #[error("{path}: the value supplied for secret {name:?} is not a {kind} value")]
    WrongMaterial {
        /// The template's field.
        path: FieldPath,
        /// The secret.
        name: String,
        /// The secret's kind.
        kind: String,
    },
    /// The reference cannot render this kind of secret as text.
    #[error("{path}: cannot render secret {name:?}: {problem}")]
    NotRenderable {
        /// The template's field.
        path: FieldPath,
        /// The secret.
        name: String,
        /// Why.
        problem: String,
    },
    /// A template that does not parse.
    #[error("{path}: invalid template: {error}")]
    Template {
        /// The template's field.
        path: FieldPath,
        /// The problem.
        error: TemplateError,
    },
}

/// Renders the `env`, `args` and `files` of `service` with values from `secrets`.
pub fn render(
    policy: &Policy,
    service: &str,
    secrets: &dyn SecretValues,
) -> Result<Rendered, RenderError> {
    let spec = policy
        .service(service)
        .ok_or_else(|| RenderError::UnknownService(service.to_string()))?;
    let base = FieldPath::root().key("services").key(service);
    let context = Context {
        policy,
        service,
        secrets,
    };
    let mut env = BTreeMap::new();
    for (name, template) in &spec.env {
        let value = context.render(&base.key("env").key(name.clone()), template)?;
        env.insert(name.clone(), value);
    }
    let mut args = Vec::with_capacity(spec.args.len());
    for (i, template) in spec.args.iter().enumerate() {
        args.push(context.render(&base.key("args").index(i), template)?);
    }
    let mut files = BTreeMap::new();
    for (file, template) in &spec.files {
        let value = context.render(&base.key("files").key(file.clone()), template)?;
        files.insert(file.clone(), value);
    }
    Ok(Rendered { env, args, files })
}

struct Context<'a> {
    policy: &'a Policy,
    service: &'a str,
    secrets: &'a dyn SecretValues,
}

impl Context<'_> {
    fn render(&self, path: &FieldPath, text: &str) -> Result<RenderedValue, RenderError> {
        let template = Template::parse(text).map_err(|error| RenderError::Template {
            path: path.clone(),
            error,
        })?;
        let mut out = Zeroizing::new(String::with_capacity(text.len()));
        for piece in &template.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Expr(Expr::ServiceName) => out.push_str(self.service),
                Piece::Expr(Expr::PolicyName) => out.push_str(self.policy.name()),
                Piece::Expr(Expr::Secret(reference)) => {
                    out.push_str(&self.secret(path, reference)?);
                }
            }
        }
        Ok(RenderedValue(out))
    }

    fn secret(
        &self,
        path: &FieldPath,
        reference: &SecretRef,
    ) -> Result<Zeroizing<String>, RenderError> {
        let name = reference.name.clone();
        let spec = self
            .policy
            .secret(&name)
            .ok_or_else(|| RenderError::UndefinedSecret {
                path: path.clone(),
                name: name.clone(),
            })?;
        let kind = spec
            .kind
            .known()
            .ok_or_else(|| RenderError::WrongMaterial {
                path: path.clone(),
                name: name.clone(),
                kind: spec.kind.to_string(),
            })?;
        if let Some(problem) = render_problem(kind, reference.part, reference.filter) {
            return Err(RenderError::NotRenderable {
                path: path.clone(),
                name,
                problem,
            });
        }
        let value = self
            .secrets
            .secret(&name)
            .ok_or_else(|| RenderError::MissingValue {
                path: path.clone(),
                name: name.clone(),
            })?;
        if !value.fits(kind) {
            return Err(RenderError::WrongMaterial {
                path: path.clone(),
                name,
                kind: kind.to_string(),
            });
        }
        let (bytes, label): (&[u8], &str) = match (value, reference.part) {
            (SecretValue::Text(text), _) => (text.as_bytes(), ""),
            (SecretValue::Bytes(bytes), _) => (bytes, ""),
            (
                SecretValue::KeyPair {
                    public_spki_der, ..
                },
                Part::Public,
            ) => (public_spki_der, "PUBLIC KEY"),
            (
                SecretValue::KeyPair {
                    private_pkcs8_der, ..
                },
                _,
            ) => (private_pkcs8_der, "PRIVATE KEY"),
            (
                SecretValue::Certificate {
                    private_pkcs8_der, ..
                },
                Part::Key,
            ) => (private_pkcs8_der, "PRIVATE KEY"),
            (
                SecretValue::Certificate {
                    certificate_der, ..
                },
                _,
            ) => (certificate_der, "CERTIFICATE"),
        };
        Ok(match reference.filter {
            None => Zeroizing::new(String::from_utf8_lossy(bytes).into_owned()),
            Some(Filter::Hex) => Zeroizing::new(hex::encode(bytes)),
            Some(Filter::Base64) => Zeroizing::new(STANDARD.encode(bytes)),
            Some(Filter::Pem) => pem(label, bytes),
        })
    }
}

/// PEM text: the label's BEGIN line, base64 in 64-character lines, the END line.
fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(body.len() + body.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_64_columns() {
        let text = pem("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
        assert_eq!(lines.len(), 5);
    }
}
