//! The canonical form of a policy and its hash, which identifies a policy version.
//!
//! Canonical form: the parsed policy (defaults filled in, keywords, digests and keys in their
//! canonical spelling) serialised as JSON per RFC 8785 (JCS): UTF-8, no whitespace, object
//! members sorted by the UTF-16 code units of their names, strings with only `"`, `\` and
//! control characters escaped, integers in plain decimal (the model has no floating-point
//! numbers). Lists keep their order. The hash is SHA-256 of those bytes, written
//! `sha256:HEX`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::digest::decode_hex;

/// The hash of a policy version: SHA-256 of its canonical form, written `sha256:HEX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyHash(pub [u8; 32]);

impl fmt::Display for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyHash({self})")
    }
}

impl std::str::FromStr for PolicyHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix("sha256:")
            .ok_or_else(|| "a policy hash is written sha256:HEX".to_string())?;
        let bytes = decode_hex(digits)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "a policy hash has 32 bytes (64 hex digits), found {}",
                bytes.len()
            )
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for PolicyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Errors producing the canonical form (only possible for values outside the policy model).
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The value could not be represented as JSON.
    #[error("cannot serialise the policy: {0}")]
    Serialize(String),
    /// A floating-point number, which the canonical form does not allow.
    #[error("floating-point numbers have no canonical form here")]
    Float,
}

/// The canonical JSON bytes of a serialisable value (see the module docs). The buffer is
/// zeroized on drop because a policy may carry inline secret values.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, CanonicalError> {
    let mut tree =
        serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(1024));
    let written = write_value(&tree, &mut out);
    wipe_strings(&mut tree);
    written?;
    Ok(out)
}

/// SHA-256 of the canonical form.
pub fn canonical_hash<T: Serialize>(value: &T) -> Result<PolicyHash, CanonicalError> {
    let bytes = canonical_json(value)?;
    Ok(PolicyHash(Sha256::digest(bytes.as_slice()).into()))
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else if let Some(n) = number.as_i64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float);
            }
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // Sort explicitly (serde_json's map order depends on its features).
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Overwrites every string value of the tree (inline secret values live there).
fn wipe_strings(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(members) => members.values_mut().for_each(wipe_strings),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_and_escapes() {
        let value = json!({"b": [1, -2, "x\"y\n\u{1}é"], "a": {"z": null, "é": true, "e": false}});
        let bytes = canonical_json(&value).expect("canonical");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            "{\"a\":{\"e\":false,\"z\":null,\"é\":true},\"b\":[1,-2,\"x\\\"y\\n\\u0001é\"]}"
        );
        assert!(matches!(
            canonical_json(&json!({"f": 1.5})),
            Err(CanonicalError::Float)
        ));
    }

    #[test]
    fn hash_round_trips_as_text() {
        let hash = canonical_hash(&json!({"a": 1})).expect("hash");
        let text = hash.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(text.parse::<PolicyHash>().expect("parses"), hash);
        assert!("sha256:00".parse::<PolicyHash>().is_err());
        assert!(hex::encode([0u8; 32]).parse::<PolicyHash>().is_err());
    }
}
