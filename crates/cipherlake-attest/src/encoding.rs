//! Byte encodings shared by the verifiers and the CLI: lowercase hex in JSON, and input files
//! that may be binary or hex-encoded.

/// Serde helpers that write bytes as lowercase hex strings and read them back.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serialises any byte container as a lowercase hex string.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes.as_ref()))
    }

    /// Deserialises a hex string into a byte container of the right length.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(D::Error::custom)?;
        T::try_from(bytes).map_err(|_| D::Error::custom("hex value has the wrong length"))
    }
}

/// Like [`hex_bytes`], for optional values (`null` when absent).
pub mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serialises `Some(bytes)` as lowercase hex and `None` as `null`.
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional hex string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(D::Error::custom))
            .transpose()
    }
}

/// Like [`hex_bytes`], for a list of byte strings.
pub mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq};

    /// Serialises each element as a lowercase hex string.
    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for item in list {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    /// Deserialises a list of hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| hex::decode(s).map_err(D::Error::custom))
            .collect()
    }
}

/// Returns the bytes of an input file that may be binary or hex-encoded.
///
/// The input counts as hex when, ignoring ASCII whitespace and an optional `0x` prefix, it is
/// a non-empty, even-length run of hex digits; anything else is returned unchanged.
pub fn decode_binary_or_hex(input: &[u8]) -> Vec<u8> {
    let trimmed = input.trim_ascii();
    let body = trimmed
        .strip_prefix(b"0x")
        .or_else(|| trimmed.strip_prefix(b"0X"))
        .unwrap_or(trimmed);
    let digits: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return input.to_vec();
    }
    hex::decode(&digits).unwrap_or_else(|_| input.to_vec())
}

#[cfg(test)]
mod tests {
    use super::decode_binary_or_hex;

    #[test]
    fn hex_and_binary_inputs() {
        assert_eq!(decode_binary_or_hex(b"0A0b\n0c\n"), vec![0x0a, 0x0b, 0x0c]);
        assert_eq!(decode_binary_or_hex(b"0xff"), vec![0xff]);
        assert_eq!(
            decode_binary_or_hex(&[0x03, 0x00, 0x02]),
            vec![0x03, 0x00, 0x02]
        );
        assert_eq!(decode_binary_or_hex(b"abc"), b"abc".to_vec());
        assert_eq!(decode_binary_or_hex(b""), Vec::<u8>::new());
    }
}
