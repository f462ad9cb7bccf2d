//! The template language of `env`, `args` and `files`.
//!
//! Text with expressions in double braces:
//!
//! * `{{ secret.NAME }}`: an `ascii` secret as is;
//! * `{{ secret.NAME | hex }}`, `{{ secret.NAME | base64 }}`: any secret's bytes (key pairs and
//!   certificates as DER);
//! * `{{ secret.NAME | pem }}`: a key pair's private key (PKCS#8) or a certificate;
//! * `{{ secret.NAME.public | pem }}`: a key pair's public key (SubjectPublicKeyInfo);
//! * `{{ secret.NAME.key | pem }}`: a certificate's private key (PKCS#8);
//! * `{{ service.name }}`, `{{ policy.name }}`.
//!
//! Spaces inside the braces are optional. `{{` always opens an expression (there is no escape).

use std::fmt;

use crate::keyword::SecretKind;
use crate::names::is_name;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
}

/// Literal text or an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Expr(Expr),
}

/// What an expression refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// A secret's value or part, optionally encoded.
    Secret(SecretRef),
    /// The service's name.
    ServiceName,
    /// The policy's name.
    PolicyName,
}

/// A reference to a secret in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretRef {
    pub(crate) name: String,
    pub(crate) part: Part,
    pub(crate) filter: Option<Filter>,
}

/// Which part of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The value: text, bytes, a key pair's private key, a certificate.
    Value,
    /// `.public`: a key pair's public key.
    Public,
    /// `.key`: a certificate's private key.
    Key,
}

/// How bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    Hex,
    Base64,
    Pem,
}

/// A template that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("`{{{{` at byte {0} is not closed by `}}}}`")]
    Unclosed(usize),
    /// `{{ }}`.
    #[error("empty expression `{{{{ }}}}`")]
    Empty,
    /// An expression that is not one of the supported references.
    #[error(
        "unknown reference `{0}` (expected secret.NAME, secret.NAME.public, secret.NAME.key, service.name or policy.name)"
    )]
    UnknownReference(String),
    /// A filter that does not exist.
    #[error("unknown filter `{0}` (expected hex, base64 or pem)")]
    UnknownFilter(String),
    /// A filter on `service.name` or `policy.name`.
    #[error("filters apply to secrets only, not to `{0}`")]
    FilterOnName(String),
}

impl Template {
    /// Parses a template.
    pub(crate) fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            pieces.push(Piece::Expr(parse_expr(&after[..close])?));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// The secret references, in order.
    pub(crate) fn secret_refs(&self) -> impl Iterator<Item = &SecretRef> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Expr(Expr::Secret(secret)) => Some(secret),
            _ => None,
        })
    }
}

fn parse_expr(inner: &str) -> Result<Expr, TemplateError> {
    let (reference, filter) = match inner.split_once('|') {
        Some((reference, filter)) => (reference.trim(), Some(filter.trim())),
        None => (inner.trim(), None),
    };
    if reference.is_empty() {
        return Err(TemplateError::Empty);
    }
    let filter = filter
        .map(|word| match word {
            "hex" => Ok(Filter::Hex),
            "base64" => Ok(Filter::Base64),
            "pem" => Ok(Filter::Pem),
            other => Err(TemplateError::UnknownFilter(other.to_string())),
        })
        .transpose()?;
    match reference {
        "service.name" | "policy.name" => {
            if filter.is_some() {
                return Err(TemplateError::FilterOnName(reference.to_string()));
            }
            Ok(if reference == "service.name" {
                Expr::ServiceName
            } else {
                Expr::PolicyName
            })
        }
        _ => {
            let unknown = || TemplateError::UnknownReference(reference.to_string());
            let path = reference.strip_prefix("secret.").ok_or_else(unknown)?;
            let (name, part) = match path.split_once('.') {
                None => (path, Part::Value),
                Some((name, "public")) => (name, Part::Public),
                Some((name, "key")) => (name, Part::Key),
                Some(_) => return Err(unknown()),
            };
            if !is_name(name) {
                return Err(unknown());
            }
            Ok(Expr::Secret(SecretRef {
                name: name.to_string(),
                part,
                filter,
            }))
        }
    }
}

/// Why a secret of a kind cannot be rendered by a reference, or `None` when it can.
pub(crate) fn render_problem(
    kind: SecretKind,
    part: Part,
    filter: Option<Filter>,
) -> Option<String> {
    let part_ok = match part {
        Part::Value => true,
        Part::Public => kind.is_key_pair(),
        Part::Key => kind.is_certificate(),
    };
    if !part_ok {
        return Some(match part {
            Part::Public => format!("`.public` applies to rsa and ec key pairs, not to {kind}"),
            _ => format!("`.key` applies to x509 and x509-ca certificates, not to {kind}"),
        });
    }
    match (kind, filter) {
        (SecretKind::Ascii, None | Some(Filter::Hex | Filter::Base64)) => None,
        (SecretKind::Ascii, Some(Filter::Pem)) => Some("`| pem` does not apply to ascii".into()),
        (SecretKind::Binary | SecretKind::Aes256, None) => Some(format!(
            "a {kind} secret is not text: add `| hex` or `| base64`"
        )),
        (SecretKind::Binary | SecretKind::Aes256, Some(Filter::Pem)) => Some(format!(
            "`| pem` does not apply to {kind}: use `| hex` or `| base64`"
        )),
        (SecretKind::Binary | SecretKind::Aes256, Some(_)) => None,
        (_, None) => Some(format!(
            "a {kind} secret is not text: add `| pem`, `| hex` or `| base64`"
        )),
        (_, Some(_)) => None,
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filter::Hex => "hex",
            Filter::Base64 => "base64",
            Filter::Pem => "pem",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_expressions() {
        let t = Template::parse("a{{secret.x}}b{{ secret.k.public | pem }}{{service.name}}")
            .expect("parses");
        assert_eq!(t.pieces.len(), 5);
        let refs: Vec<_> = t.secret_refs().collect();
        assert_eq!(refs[0].name, "x");
        assert_eq!(
            (refs[1].part, refs[1].filter),
            (Part::Public, Some(Filter::Pem))
        );
        assert_eq!(Template::parse("plain").expect("parses").pieces.len(), 1);
    }

    #[test]
    fn rejects_malformed_expressions() {
        assert_eq!(
            Template::parse("x {{ secret.a"),
            Err(TemplateError::Unclosed(2))
        );
        assert_eq!(Template::parse("{{ }}"), Err(TemplateError::Empty));
        assert!(matches!(
            Template::parse("{{ env.HOME }}"),
            Err(TemplateError::UnknownReference(_))
        ));
        assert!(matches!(
            Template::parse("{{ secret.a.b }}"),
            Err(TemplateError::UnknownReference(_))
        ));
        assert!(matches!(
            Template::parse("{{ secret.a | rot13 }}"),
            Err(TemplateError::UnknownFilter(_))
        ));
        assert!(matches!(
            Template::parse("{{ policy.name | hex }}"),
            Err(TemplateError::FilterOnName(_))
        ));
    }

    #[test]
    fn render_rules_by_kind() {
        use SecretKind::*;
        assert!(render_problem(Ascii, Part::Value, None).is_none());
        assert!(render_problem(Aes256, Part::Value, None).is_some());
        assert!(render_problem(Aes256, Part::Value, Some(Filter::Base64)).is_none());
        assert!(render_problem(Rsa2048, Part::Public, Some(Filter::Pem)).is_none());
        assert!(render_problem(Rsa2048, Part::Key, Some(Filter::Pem)).is_some());
        assert!(render_problem(X509, Part::Key, Some(Filter::Pem)).is_none());
        assert!(render_problem(X509, Part::Value, None).is_some());
        assert!(render_problem(Ascii, Part::Value, Some(Filter::Pem)).is_some());
    }
}
