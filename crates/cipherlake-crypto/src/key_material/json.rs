//! The PKMT1 key material JSON, as parquet-java's `KeyMaterial`/`KeyMetadata` and Arrow C++'s
//! `key_material.cc`/`key_metadata.cc` read and write it (internal storage).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{KEY_MATERIAL_TYPE_PKMT1, KeyMaterialError};

const KEY_MATERIAL_TYPE: &str = "keyMaterialType";
const INTERNAL_STORAGE: &str = "internalStorage";
const KEY_REFERENCE: &str = "keyReference";
const IS_FOOTER_KEY: &str = "isFooterKey";
const KMS_INSTANCE_ID: &str = "kmsInstanceID";
const KMS_INSTANCE_URL: &str = "kmsInstanceURL";
const MASTER_KEY_ID: &str = "masterKeyID";
const WRAPPED_DEK: &str = "wrappedDEK";
const DOUBLE_WRAPPING: &str = "doubleWrapping";
const KEK_ID: &str = "keyEncryptionKeyID";
const WRAPPED_KEK: &str = "wrappedKEK";

/// How the data encryption key of a [`KeyMaterial`] is wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wrapping {
    /// `doubleWrapping: false`: `wrappedDEK` is the KMS-wrapped DEK.
    Single,
    /// `doubleWrapping: true`: `wrappedDEK` is the DEK encrypted locally under a KEK, and the
    /// KEK is KMS-wrapped.
    Double {
        /// `keyEncryptionKeyID`: base64 of the random 16-byte KEK id (the raw id is the AAD of
        /// the DEK encryption).
        kek_id: String,
        /// `wrappedKEK`: the KMS-wrapped KEK.
        wrapped_kek: String,
    },
}

/// One PKMT1 key material object with internal storage: the content of a Parquet key metadata
/// field written by the key management tools. Holds wrapped keys only, so `Debug` is safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// `isFooterKey`: the material belongs to the footer key (and then carries the KMS
    /// instance) rather than a column key.
    pub is_footer_key: bool,
    /// `kmsInstanceID`, written only for the footer key.
    pub kms_instance_id: Option<String>,
    /// `kmsInstanceURL`, written only for the footer key.
    pub kms_instance_url: Option<String>,
    /// `masterKeyID`: the master key that (directly or through a KEK) wraps the DEK.
    pub master_key_id: String,
    /// `wrappedDEK`: the wrapped data encryption key.
    pub wrapped_dek: String,
    /// `doubleWrapping` and, when true, `keyEncryptionKeyID` and `wrappedKEK`.
    pub wrapping: Wrapping,
}

/// Serialisation shape, in the field order Arrow C++ writes (parquet-java's order is that of
/// a `HashMap`; readers do not depend on it).
#[derive(Serialize)]
struct KeyMaterialJson<'a> {
    #[serde(rename = "keyMaterialType")]
    key_material_type: &'a str,
    #[serde(rename = "internalStorage")]
    internal_storage: bool,
    #[serde(rename = "isFooterKey")]
    is_footer_key: bool,
    #[serde(rename = "kmsInstanceID", skip_serializing_if = "Option::is_none")]
    kms_instance_id: Option<&'a str>,
    #[serde(rename = "kmsInstanceURL", skip_serializing_if = "Option::is_none")]
    kms_instance_url: Option<&'a str>,
    #[serde(rename = "masterKeyID")]
    master_key_id: &'a str,
    #[serde(rename = "wrappedDEK")]
    wrapped_dek: &'a str,
    #[serde(rename = "doubleWrapping")]
    double_wrapping: bool,
    #[serde(rename = "keyEncryptionKeyID", skip_serializing_if = "Option::is_none")]
    kek_id: Option<&'a str>,
    #[serde(rename = "wrappedKEK", skip_serializing_if = "Option::is_none")]
    wrapped_kek: Option<&'a str>,
}

impl KeyMaterial {
    /// Parses Parquet key metadata bytes holding PKMT1 key material.
    ///
    /// Fails on non-UTF-8 or non-object JSON, on a `keyMaterialType` other than `PKMT1`, on
    /// external storage (`internalStorage: false`), and on any required field that is absent or
    /// of the wrong type, naming it. Unknown fields are ignored, as parquet-java and Arrow do.
    pub fn parse(key_metadata: &[u8]) -> Result<Self, KeyMaterialError> {
        let text = std::str::from_utf8(key_metadata).map_err(|_| KeyMaterialError::NotUtf8)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| KeyMaterialError::MalformedJson {
                reason: e.to_string(),
            })?;
        let Value::Object(json) = value else {
            return Err(KeyMaterialError::MalformedJson {
                reason: "the top-level value is not an object".into(),
            });
        };

        let key_material_type = string_field(&json, KEY_MATERIAL_TYPE)?;
        if key_material_type != KEY_MATERIAL_TYPE_PKMT1 {
            return Err(KeyMaterialError::UnknownKeyMaterialType {
                found: key_material_type.to_owned(),
            });
        }
        if !bool_field(&json, INTERNAL_STORAGE)? {
            return Err(KeyMaterialError::ExternalKeyMaterial {
                key_reference: json
                    .get(KEY_REFERENCE)
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }

        let is_footer_key = bool_field(&json, IS_FOOTER_KEY)?;
        let (kms_instance_id, kms_instance_url) = if is_footer_key {
            (
                optional_string_field(&json, KMS_INSTANCE_ID)?,
                optional_string_field(&json, KMS_INSTANCE_URL)?,
            )
        } else {
            (None, None)
        };
        let master_key_id = string_field(&json, MASTER_KEY_ID)?.to_owned();
        let wrapped_dek = string_field(&json, WRAPPED_DEK)?.to_owned();
        let wrapping = if bool_field(&json, DOUBLE_WRAPPING)? {
            Wrapping::Double {
                kek_id: string_field(&json, KEK_ID)?.to_owned(),
                wrapped_kek: string_field(&json, WRAPPED_KEK)?.to_owned(),
            }
        } else {
            Wrapping::Single
        };
        Ok(Self {
            is_footer_key,
            kms_instance_id,
            kms_instance_url,
            master_key_id,
            wrapped_dek,
            wrapping,
        })
    }

    /// Serialises to Parquet key metadata bytes (compact UTF-8 JSON with `internalStorage:
    /// true`), as the key tools write it. KMS instance fields are written for the footer key
    /// only; KEK fields for double wrapping only.
    pub fn to_key_metadata(&self) -> Vec<u8> {
        let (kek_id, wrapped_kek) = match &self.wrapping {
            Wrapping::Single => (None, None),
            Wrapping::Double {
                kek_id,
                wrapped_kek,
            } => (Some(kek_id.as_str()), Some(wrapped_kek.as_str())),
        };
        let is_footer_key = self.is_footer_key;
        let json = KeyMaterialJson {
            key_material_type: KEY_MATERIAL_TYPE_PKMT1,
            internal_storage: true,
            is_footer_key: self.is_footer_key,
            kms_instance_id: self.kms_instance_id.as_deref().filter(|_| is_footer_key),
            kms_instance_url: self.kms_instance_url.as_deref().filter(|_| is_footer_key),
            master_key_id: &self.master_key_id,
            wrapped_dek: &self.wrapped_dek,
            double_wrapping: matches!(self.wrapping, Wrapping::Double { .. }),
            kek_id,
            wrapped_kek,
        };
        // Serialising a struct of strings and booleans cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }
}

fn field<'a>(
    json: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a Value, KeyMaterialError> {
    json.get(name)
        .ok_or(KeyMaterialError::MissingField { field: name })
}

fn string_field<'a>(
    json: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, KeyMaterialError> {
    field(json, name)?
        .as_str()
        .ok_or(KeyMaterialError::WrongFieldType {
            field: name,
            expected: "string",
        })
}

fn optional_string_field(
    json: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, KeyMaterialError> {
    match json.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KeyMaterialError::WrongFieldType {
            field: name,
            expected: "string",
        }),
    }
}

fn bool_field(json: &Map<String, Value>, name: &'static str) -> Result<bool, KeyMaterialError> {
    field(json, name)?
        .as_bool()
        .ok_or(KeyMaterialError::WrongFieldType {
            field: name,
            expected: "boolean",
        })
}
