//! Digests in policies: code measurements, signer ids and job-file hashes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A digest algorithm a policy may name as a prefix (`sha256:`, `sha384:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256, 32 bytes: SGX MRENCLAVE and MRSIGNER, job-file hashes.
    Sha256,
    /// SHA-384, 48 bytes: TDX MRTD, SEV-SNP launch measurement, sim executables.
    Sha384,
}

impl DigestAlgorithm {
    /// The digest length in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
        }
    }

    /// The prefix word (`sha256`, `sha384`).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
        }
    }

    /// The algorithm whose digests have this length, if any.
    pub fn for_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(DigestAlgorithm::Sha256),
            48 => Some(DigestAlgorithm::Sha384),
            _ => None,
        }
    }
}

/// A digest written `sha384:HEX`, `sha256:HEX` or plain `HEX` (the algorithm then follows from
/// the length: 32 bytes SHA-256, 48 bytes SHA-384).
///
/// Parsing only checks the prefix and the hex; validation checks the length against the
/// algorithm, so that every wrong length in a policy is reported at once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    /// The algorithm named by the prefix, if any.
    pub algorithm: Option<DigestAlgorithm>,
    /// The digest bytes.
    pub bytes: Vec<u8>,
}

impl Digest {
    /// The algorithm, named or implied by the length; `None` when the length fits none.
    pub fn effective_algorithm(&self) -> Option<DigestAlgorithm> {
        self.algorithm
            .or_else(|| DigestAlgorithm::for_len(self.bytes.len()))
    }

    /// Whether the length matches the (named or implied) algorithm.
    pub fn has_valid_length(&self) -> bool {
        self.effective_algorithm()
            .is_some_and(|algorithm| algorithm.byte_len() == self.bytes.len())
    }
}

impl fmt::Display for Digest {
    /// The canonical spelling: `ALGORITHM:` + lowercase hex (plain hex when the length fits no
    /// algorithm).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(algorithm) = self.effective_algorithm() {
            write!(f, "{}:", algorithm.as_str())?;
        }
        f.write_str(&hex::encode(&self.bytes))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl std::str::FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, digits) = match s.split_once(':') {
            Some(("sha256", digits)) => (Some(DigestAlgorithm::Sha256), digits),
            Some(("sha384", digits)) => (Some(DigestAlgorithm::Sha384), digits),
            Some((other, _)) => {
                return Err(format!(
                    "unknown digest algorithm {other:?} (expected sha256:HEX, sha384:HEX or HEX)"
                ));
            }
            None => (None, s),
        };
        let bytes = decode_hex(digits)?;
        Ok(Self { algorithm, bytes })
    }
}

/// Decodes hex digits (either case), with a message fit for a policy error.
pub(crate) fn decode_hex(digits: &str) -> Result<Vec<u8>, String> {
    if digits.is_empty() {
        return Err("expected hex digits, found nothing".into());
    }
    hex::decode(digits).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            format!("invalid hex digit {c:?} at position {index}")
        }
        hex::FromHexError::OddLength => {
            format!("odd number of hex digits ({})", digits.len())
        }
        hex::FromHexError::InvalidStringLength => "invalid hex length".into(),
    })
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_and_plain_and_normalises() {
        let d: Digest = format!("SHA384:{}", "AB".repeat(48))
            .to_lowercase()
            .parse()
            .expect("valid");
        assert_eq!(d.to_string(), format!("sha384:{}", "ab".repeat(48)));
        let plain: Digest = "CD".repeat(32).parse().expect("valid");
        assert_eq!(plain.to_string(), format!("sha256:{}", "cd".repeat(32)));
        assert!(plain.has_valid_length());
        let short: Digest = "sha384:abcd".parse().expect("hex is fine");
        assert!(!short.has_valid_length());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!("sha256:zz".parse::<Digest>().is_err());
        assert!("sha256:abc".parse::<Digest>().is_err());
    }
}
