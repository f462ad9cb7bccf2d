//! How to encrypt a Parquet file: master key ids, footer mode, wrapping and data key length.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use cipherlake_crypto::key_material::{
    DataKeyLength, FileKeyWrapper, KeyWrappingOptions, KmsClient, WriterKeks,
};
use parquet::encryption::encrypt::FileEncryptionProperties;

use super::EncryptionError;

/// Column keys: for each master key id, the columns encrypted under it (in order given).
pub type ColumnKeys = Vec<(String, Vec<String>)>;

/// Factory option: master key id of the footer key (required to encrypt).
const FOOTER_KEY: &str = "footer_key";
/// Factory option: column keys, `ID:col1,col2;ID2:col3`.
const COLUMN_KEYS: &str = "column_keys";
/// Factory option: `true` to write a plaintext (signed) footer.
const PLAINTEXT_FOOTER: &str = "plaintext_footer";
/// Factory option: `false` for single wrapping.
const DOUBLE_WRAPPING: &str = "double_wrapping";
/// Factory option: `128` or `256`.
const DATA_KEY_BITS: &str = "data_key_bits";

/// How to encrypt a Parquet file.
///
/// With no column keys every column is encrypted with the footer key ("uniform encryption");
/// with column keys only the named columns are encrypted, each with its own data key wrapped
/// under the named master key, and the other columns stay plaintext (as in parquet-java and
/// pyarrow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionSpec {
    /// Master key id of the footer key.
    pub footer_key: String,
    /// Per-column master key ids.
    pub column_keys: ColumnKeys,
    /// Write the footer in plaintext (signed with the footer key) so that readers without keys
    /// can see the schema and plaintext columns.
    pub plaintext_footer: bool,
    /// Double wrapping (the default) or single wrapping of data keys.
    pub double_wrapping: bool,
    /// Length of generated data keys.
    pub data_key_length: DataKeyLength,
}

impl EncryptionSpec {
    /// Uniform encryption under `footer_key` with the defaults (encrypted footer, double
    /// wrapping, 128-bit data keys).
    pub fn new(footer_key: impl Into<String>) -> Self {
        Self {
            footer_key: footer_key.into(),
            column_keys: Vec::new(),
            plaintext_footer: false,
            double_wrapping: true,
            data_key_length: DataKeyLength::Aes128,
        }
    }

    /// Reads the spec from encryption factory options; `None` when no `footer_key` is given
    /// (the file is written in plaintext). Unknown options are rejected.
    pub fn from_factory_options(
        options: &HashMap<String, String>,
    ) -> Result<Option<Self>, EncryptionError> {
        for key in options.keys() {
            if ![
                FOOTER_KEY,
                COLUMN_KEYS,
                PLAINTEXT_FOOTER,
                DOUBLE_WRAPPING,
                DATA_KEY_BITS,
            ]
            .contains(&key.as_str())
            {
                return Err(option_error(
                    key,
                    "unknown option (expected footer_key, column_keys, plaintext_footer, double_wrapping or data_key_bits)",
                ));
            }
        }
        let Some(footer_key) = options.get(FOOTER_KEY).map(|v| v.trim()) else {
            if let Some(key) = options.keys().next() {
                return Err(option_error(key, "requires footer_key"));
            }
            return Ok(None);
        };
        if footer_key.is_empty() {
            return Err(option_error(FOOTER_KEY, "is empty"));
        }
        let mut spec = Self::new(footer_key);
        if let Some(text) = options.get(COLUMN_KEYS) {
            spec.column_keys = parse_column_keys(text)?;
        }
        if let Some(value) = options.get(PLAINTEXT_FOOTER) {
            spec.plaintext_footer = parse_bool(PLAINTEXT_FOOTER, value)?;
        }
        if let Some(value) = options.get(DOUBLE_WRAPPING) {
            spec.double_wrapping = parse_bool(DOUBLE_WRAPPING, value)?;
        }
        if let Some(value) = options.get(DATA_KEY_BITS) {
            spec.data_key_length = parse_data_key_bits(value)?;
        }
        Ok(Some(spec))
    }

    /// The factory options describing this spec (the inverse of
    /// [`EncryptionSpec::from_factory_options`]).
    pub fn to_factory_options(&self) -> HashMap<String, String> {
        let mut options = HashMap::new();
        options.insert(FOOTER_KEY.to_owned(), self.footer_key.clone());
        if !self.column_keys.is_empty() {
            let text = self
                .column_keys
                .iter()
                .map(|(id, columns)| format!("{id}:{}", columns.join(",")))
                .collect::<Vec<_>>()
                .join(";");
            options.insert(COLUMN_KEYS.to_owned(), text);
        }
        options.insert(
            PLAINTEXT_FOOTER.to_owned(),
            self.plaintext_footer.to_string(),
        );
        options.insert(DOUBLE_WRAPPING.to_owned(), self.double_wrapping.to_string());
        let bits = self.data_key_length.bytes() * 8;
        options.insert(DATA_KEY_BITS.to_owned(), bits.to_string());
        options
    }

    /// Generates fresh data keys for one file, wraps them through `kms` under the KEKs of the
    /// write (`keks`, shared by its files), and returns the encryption properties for the
    /// Parquet writer. Every column named in the column keys must be a top-level column of
    /// `schema`. `path` is only used in error messages.
    pub fn file_encryption_properties(
        &self,
        kms: Arc<dyn KmsClient>,
        keks: &WriterKeks,
        schema: &Schema,
        path: &str,
    ) -> Result<Arc<FileEncryptionProperties>, EncryptionError> {
        let key_error =
            |e: cipherlake_crypto::key_material::KeyMaterialError| EncryptionError::KeyGeneration {
                path: path.to_owned(),
                reason: e.to_string(),
            };
        let options = KeyWrappingOptions {
            double_wrapping: self.double_wrapping,
            data_key_length: self.data_key_length,
            ..KeyWrappingOptions::default()
        };
        let mut wrapper = FileKeyWrapper::with_keks(kms, options, keks.clone());
        let footer = wrapper
            .generate_footer_key(&self.footer_key)
            .map_err(key_error)?;
        let mut builder = FileEncryptionProperties::builder(footer.key.to_vec())
            .with_footer_key_metadata(footer.key_metadata.clone())
            .with_plaintext_footer(self.plaintext_footer);
        for (master_key_id, columns) in &self.column_keys {
            for column in columns {
                if schema.field_with_name(column).is_err() {
                    return Err(EncryptionError::Option {
                        option: COLUMN_KEYS.to_owned(),
                        reason: format!(
                            "column '{column}' (master key {master_key_id:?}) is not in the schema of {path}"
                        ),
                    });
                }
                let key = wrapper
                    .generate_column_key(master_key_id)
                    .map_err(key_error)?;
                builder = builder.with_column_key_and_metadata(
                    column,
                    key.key.to_vec(),
                    key.key_metadata,
                );
            }
        }
        builder.build().map_err(|e| EncryptionError::Properties {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Parses column keys of the form `ID:col1,col2;ID2:col3` (whitespace trimmed, empty entries
/// ignored). Master key ids and columns must be non-empty and a column may appear only once.
pub fn parse_column_keys(text: &str) -> Result<ColumnKeys, EncryptionError> {
    let mut keys: ColumnKeys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, columns)) = entry.split_once(':') else {
            return Err(option_error(
                COLUMN_KEYS,
                &format!("entry '{entry}' is not of the form ID:col1,col2"),
            ));
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(option_error(
                COLUMN_KEYS,
                &format!("entry '{entry}' has no master key id"),
            ));
        }
        let columns: Vec<String> = columns
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if columns.is_empty() {
            return Err(option_error(
                COLUMN_KEYS,
                &format!("entry '{entry}' names no columns"),
            ));
        }
        for column in &columns {
            if !seen.insert(column.clone()) {
                return Err(option_error(
                    COLUMN_KEYS,
                    &format!("column '{column}' is given more than one key"),
                ));
            }
        }
        match keys.iter_mut().find(|(existing, _)| existing == id) {
            Some((_, existing)) => existing.extend(columns),
            None => keys.push((id.to_owned(), columns)),
        }
    }
    Ok(keys)
}

fn option_error(option: &str, reason: &str) -> EncryptionError {
    EncryptionError::Option {
        option: option.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_bool(option: &str, value: &str) -> Result<bool, EncryptionError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(option_error(
            option,
            &format!("'{value}' is not true or false"),
        )),
    }
}

fn parse_data_key_bits(value: &str) -> Result<DataKeyLength, EncryptionError> {
    match value.trim() {
        "128" => Ok(DataKeyLength::Aes128),
        "256" => Ok(DataKeyLength::Aes256),
        _ => Err(option_error(
            DATA_KEY_BITS,
            &format!("'{value}' is not supported (use 128 or 256)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_keys_parse_and_round_trip() {
        let keys = parse_column_keys(" k1: a , b ;k2:c;k1:d").unwrap();
        assert_eq!(
            keys,
            vec![
                ("k1".to_owned(), vec!["a".into(), "b".into(), "d".into()]),
                ("k2".to_owned(), vec!["c".into()])
            ]
        );
        assert!(parse_column_keys("k1:a;k2:a").is_err());
        assert!(parse_column_keys("nocolon").is_err());
        assert!(parse_column_keys(":a").is_err());
        let mut spec = EncryptionSpec::new("f");
        spec.column_keys = keys;
        spec.data_key_length = DataKeyLength::Aes256;
        let back = EncryptionSpec::from_factory_options(&spec.to_factory_options()).unwrap();
        assert_eq!(back, Some(spec));
    }

    #[test]
    fn options_are_checked() {
        let opts = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            EncryptionSpec::from_factory_options(&opts(&[])).unwrap(),
            None
        );
        let err = EncryptionSpec::from_factory_options(&opts(&[
            ("footer_key", "f"),
            ("data_key_bits", "192"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("192"), "{err}");
        assert!(EncryptionSpec::from_factory_options(&opts(&[("column_keys", "k:a")])).is_err());
        assert!(
            EncryptionSpec::from_factory_options(&opts(&[("footer_key", "f"), ("bogus", "1")]))
                .is_err()
        );
    }
}
