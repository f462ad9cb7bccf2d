//! PKMT1 key material: round trips, vectors written by other implementations, and every
//! failure mode with its own error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cipherlake_crypto::key_material::{
    DataKeyLength, FileKeyUnwrapper, FileKeyWrapper, KeyMaterial, KeyMaterialError,
    KeyWrappingOptions, KmsClient, KmsError, LocalKms, LocalWrapError, Wrapping, WriterKeks,
};
use serde_json::Value;
use zeroize::Zeroizing;

/// kf = 00..0f (128 bits), kc1 = 20..3f (256 bits), kc2 = 40..57 (192 bits).
const KEY_LIST: &str = "kf:AAECAwQFBgcICQoLDA0ODw==,\n  kc1: ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\nkc2:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZX\n";

fn local_kms() -> Arc<LocalKms> {
    Arc::new(LocalKms::from_key_list(KEY_LIST).unwrap())
}

/// A KMS that counts calls, to observe caching.
struct CountingKms {
    inner: LocalKms,
    wraps: AtomicUsize,
    unwraps: AtomicUsize,
}

impl CountingKms {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: LocalKms::from_key_list(KEY_LIST).unwrap(),
            wraps: AtomicUsize::new(0),
            unwraps: AtomicUsize::new(0),
        })
    }
}

impl KmsClient for CountingKms {
    fn wrap_key(&self, key: &[u8], master_key_id: &str) -> Result<String, KmsError> {
        self.wraps.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap_key(key, master_key_id)
    }

    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_key(wrapped_key, master_key_id)
    }
}

fn json(metadata: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(metadata).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn options(double_wrapping: bool, data_key_length: DataKeyLength) -> KeyWrappingOptions {
    KeyWrappingOptions {
        double_wrapping,
        data_key_length,
        ..KeyWrappingOptions::default()
    }
}

/// Flips one bit inside the decoded bytes of a base64 field.
fn tamper_base64(value: &str, index: usize) -> String {
    let mut bytes = STANDARD.decode(value).unwrap();
    bytes[index] ^= 0x01;
    STANDARD.encode(bytes)
}

fn with_field(metadata: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut map = json(metadata);
    map.insert(field.to_owned(), value);
    serde_json::to_vec(&map).unwrap()
}

fn without_field(metadata: &[u8], field: &str) -> Vec<u8> {
    let mut map = json(metadata);
    map.remove(field);
    serde_json::to_vec(&map).unwrap()
}

#[test]
fn defaults_match_parquet_java() {
    let defaults = KeyWrappingOptions::default();
    assert!(defaults.double_wrapping);
    assert_eq!(defaults.data_key_length, DataKeyLength::Aes128);
    assert_eq!(defaults.kms_instance_id, "DEFAULT");
    assert_eq!(defaults.kms_instance_url, "DEFAULT");
}

#[test]
fn round_trip_all_modes_and_key_lengths() {
    let kms = local_kms();
    for double in [true, false] {
        for length in [DataKeyLength::Aes128, DataKeyLength::Aes256] {
            let mut wrapper = FileKeyWrapper::new(kms.clone(), options(double, length));
            let footer = wrapper.generate_footer_key("kf").unwrap();
            let col_a = wrapper.generate_column_key("kc1").unwrap();
            let col_b = wrapper.generate_column_key("kc2").unwrap();
            for key in [&footer, &col_a, &col_b] {
                assert_eq!(key.key.len(), length.bytes());
            }
            assert_ne!(col_a.key, col_b.key);

            let unwrapper = FileKeyUnwrapper::new(kms.clone());
            for key in [&footer, &col_a, &col_b] {
                assert_eq!(unwrapper.unwrap(&key.key_metadata).unwrap(), key.key);
            }

            // Exact JSON shape.
            let footer_json = json(&footer.key_metadata);
            let column_json = json(&col_a.key_metadata);
            assert_eq!(footer_json["keyMaterialType"], "PKMT1");
            assert_eq!(footer_json["internalStorage"], true);
            assert_eq!(footer_json["isFooterKey"], true);
            assert_eq!(footer_json["kmsInstanceID"], "DEFAULT");
            assert_eq!(footer_json["kmsInstanceURL"], "DEFAULT");
            assert_eq!(footer_json["masterKeyID"], "kf");
            assert_eq!(footer_json["doubleWrapping"], double);
            assert_eq!(column_json["isFooterKey"], false);
            assert_eq!(column_json["masterKeyID"], "kc1");
            assert!(!column_json.contains_key("kmsInstanceID"));
            assert!(!column_json.contains_key("kmsInstanceURL"));
            for map in [&footer_json, &column_json] {
                assert_eq!(map.contains_key("keyEncryptionKeyID"), double);
                assert_eq!(map.contains_key("wrappedKEK"), double);
                let footer_fields = if map["isFooterKey"] == true { 2 } else { 0 };
                let kek_fields = if double { 2 } else { 0 };
                assert_eq!(map.len(), 6 + footer_fields + kek_fields, "{map:?}");
            }
            if double {
                let kek_id = STANDARD
                    .decode(footer_json["keyEncryptionKeyID"].as_str().unwrap())
                    .unwrap();
                assert_eq!(kek_id.len(), 16);
            }
        }
    }
}

#[test]
fn field_order_is_arrow_cpp_order() {
    let mut wrapper = FileKeyWrapper::new(local_kms(), KeyWrappingOptions::default());
    let footer = wrapper.generate_footer_key("kf").unwrap();
    let text = String::from_utf8(footer.key_metadata).unwrap();
    let order = [
        "keyMaterialType",
        "internalStorage",
        "isFooterKey",
        "kmsInstanceID",
        "kmsInstanceURL",
        "masterKeyID",
        "wrappedDEK",
        "doubleWrapping",
        "keyEncryptionKeyID",
        "wrappedKEK",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|field| text.find(&format!("\"{field}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.starts_with("{\"keyMaterialType\":\"PKMT1\",\"internalStorage\":true,"));
    assert!(!text.contains(' '));
}

#[test]
fn one_kek_per_master_key_per_writer() {
    let kms = CountingKms::new();
    let mut wrapper = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let a = wrapper.generate_column_key("kc1").unwrap();
    let b = wrapper.generate_column_key("kc1").unwrap();
    let c = wrapper.generate_column_key("kc2").unwrap();
    let footer = wrapper.generate_footer_key("kf").unwrap();
    assert_eq!(
        kms.wraps.load(Ordering::SeqCst),
        3,
        "one KMS wrap per master key"
    );
    let (a, b, c) = (
        json(&a.key_metadata),
        json(&b.key_metadata),
        json(&c.key_metadata),
    );
    assert_eq!(a["keyEncryptionKeyID"], b["keyEncryptionKeyID"]);
    assert_eq!(a["wrappedKEK"], b["wrappedKEK"]);
    assert_ne!(a["wrappedDEK"], b["wrappedDEK"]);
    assert_ne!(a["keyEncryptionKeyID"], c["keyEncryptionKeyID"]);

    // A new writer makes new KEKs.
    let mut second = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let d = json(&second.generate_column_key("kc1").unwrap().key_metadata);
    assert_ne!(a["keyEncryptionKeyID"], d["keyEncryptionKeyID"]);

    // Debug output never shows key bytes.
    let debug = format!("{footer:?} {wrapper:?}");
    assert!(debug.contains("redacted"), "{debug}");
    let hex_byte = format!("{}", footer.key[0]);
    assert!(!debug.contains(&format!("[{hex_byte},")), "{debug}");
}

#[test]
fn unwrapper_caches_keks_and_deks() {
    let kms = CountingKms::new();
    let mut wrapper = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let a = wrapper.generate_column_key("kc1").unwrap();
    let b = wrapper.generate_column_key("kc1").unwrap();
    let unwrapper = FileKeyUnwrapper::new(kms.clone());
    assert_eq!(unwrapper.unwrap(&a.key_metadata).unwrap(), a.key);
    assert_eq!(unwrapper.unwrap(&b.key_metadata).unwrap(), b.key);
    assert_eq!(unwrapper.unwrap(&a.key_metadata).unwrap(), a.key);
    assert_eq!(kms.unwraps.load(Ordering::SeqCst), 1, "KEK unwrapped once");
    unwrapper.clear();
    assert_eq!(unwrapper.unwrap(&b.key_metadata).unwrap(), b.key);
    assert_eq!(kms.unwraps.load(Ordering::SeqCst), 2);

    // A cached KEK is not reused for key material naming another master key.
    let mut forged = json(&b.key_metadata);
    forged.insert("masterKeyID".into(), "kc2".into());
    let forged = serde_json::to_vec(&forged).unwrap();
    assert!(matches!(
        unwrapper.unwrap(&forged).unwrap_err(),
        KeyMaterialError::UnwrapKek {
            cause: KmsError::UnwrapFailed { .. },
            ..
        }
    ));
}

/// Key material as parquet-java writes it (Jackson over a HashMap: arbitrary field order),
/// with wrapped keys computed here from fixed nonces exactly as `KeyToolkit.encryptKeyLocally`
/// does, and checked against the same values computed independently with Python's
/// `cryptography` AESGCM.
#[test]
fn parses_and_unwraps_hand_written_parquet_java_material() {
    let master = [0x00u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let kek: Vec<u8> = (0x10..0x20).collect();
    let kek_id: Vec<u8> = (0x20..0x30).collect();
    let dek: Vec<u8> = (0x30..0x40).collect();
    let seal = |key: &[u8], nonce_byte: u8, plaintext: &[u8], aad: &[u8]| {
        let cipher = Aes128Gcm::new_from_slice(key).unwrap();
        let nonce = [nonce_byte; 12];
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap();
        STANDARD.encode([nonce.as_slice(), &sealed].concat())
    };
    let wrapped_kek = seal(&master, 0xa0, &kek, b"kf");
    let wrapped_dek = seal(&kek, 0xb0, &dek, &kek_id);
    // Python: AESGCM(kf).encrypt(b"\xa0"*12, kek, b"kf") etc.
    assert_eq!(
        wrapped_kek,
        "oKCgoKCgoKCgoKCgTEnS8VmfyVprsVaYjav3wgm8TjqNaALtFr+RmwA+LB4="
    );
    assert_eq!(
        wrapped_dek,
        "sLCwsLCwsLCwsLCwskrCo1VOX6KGvrcaqsR6CZrjhnol4iz7QaBreQbxdJM="
    );
    let literal = format!(
        r#"{{"wrappedDEK":"{wrapped_dek}","keyEncryptionKeyID":"{}","doubleWrapping":true,
            "isFooterKey":true,"kmsInstanceURL":"DEFAULT","masterKeyID":"kf","keyMaterialType":"PKMT1",
            "wrappedKEK":"{wrapped_kek}","internalStorage":true,"kmsInstanceID":"DEFAULT"}}"#,
        STANDARD.encode(&kek_id)
    );
    let material = KeyMaterial::parse(literal.as_bytes()).unwrap();
    assert_eq!(
        material,
        KeyMaterial {
            is_footer_key: true,
            kms_instance_id: Some("DEFAULT".into()),
            kms_instance_url: Some("DEFAULT".into()),
            master_key_id: "kf".into(),
            wrapped_dek: wrapped_dek.clone(),
            wrapping: Wrapping::Double {
                kek_id: "ICEiIyQlJicoKSorLC0uLw==".into(),
                wrapped_kek,
            },
        }
    );
    let unwrapper = FileKeyUnwrapper::new(local_kms());
    assert_eq!(
        unwrapper.unwrap(literal.as_bytes()).unwrap().as_slice(),
        dek
    );
    // Re-serialising gives the canonical form, which parses back to the same material.
    assert_eq!(
        KeyMaterial::parse(&material.to_key_metadata()).unwrap(),
        material
    );

    // Single wrapping, 256-bit DEK, column key: wrapped by the master key with AAD "kf".
    let literal = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"kf","wrappedDEK":"wMDAwMDAwMDAwMDAsCsuZ/JmT3GblG/UdgFA/hcaQKoZ9YXvMuGTAg+XKa8LI7lFJzmuxkxX8nb06mrK","doubleWrapping":false}"#;
    let dek256: Vec<u8> = (0x40..0x60).collect();
    assert_eq!(
        unwrapper.unwrap(literal.as_bytes()).unwrap().as_slice(),
        dek256
    );
}

/// Key metadata written by pyarrow 26.0.1 (`CryptoFactory`, plaintext footer, internal key
/// material) with a Python `KmsClient` wrapping like parquet-java's `InMemoryKMS`
/// (AES-GCM, AAD = master key id) via `cryptography`, extracted from the files.
#[test]
fn unwraps_key_metadata_written_by_pyarrow() {
    let unwrapper = FileKeyUnwrapper::new(local_kms());
    // Double wrapping, 128-bit DEKs: footer and a column.
    let footer = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"kmsInstanceID":"DEFAULT","kmsInstanceURL":"DEFAULT","masterKeyID":"kf","wrappedDEK":"/7n4eW8D8L+n7IQoTtJ2HhzAUtUhqoq3tWBKdLhAj4bw4qOdSRlBu5O+2sQ=","doubleWrapping":true,"keyEncryptionKeyID":"ivkamJJatcwf6m9plw0erA==","wrappedKEK":"MMf31xqzqPhx5/2dEZbjvq9NeoRqmxQUz+Ma1n6+vCtEuJ/0Pev39xLFHr0="}"#;
    let column = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"kc2","wrappedDEK":"9PUk27Xa7/GO5sytwHtRP5wfsjjB8J8RSefS81WcuuEpLEemPuQiYzteX1w=","doubleWrapping":true,"keyEncryptionKeyID":"xQ2M1VYz/DOw7ll8wnlpOg==","wrappedKEK":"3RjDYUdMJ5qcgz2MJ8wivdSLV9Jy7gcP+TqWv2MxRMtx5coH+Jcij1z2VaY="}"#;
    assert_eq!(unwrapper.unwrap(footer.as_bytes()).unwrap().len(), 16);
    assert_eq!(unwrapper.unwrap(column.as_bytes()).unwrap().len(), 16);

    // Single wrapping, 256-bit DEKs: the DEKs the Python KMS client was asked to wrap.
    let footer = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"kmsInstanceID":"DEFAULT","kmsInstanceURL":"DEFAULT","masterKeyID":"kf","wrappedDEK":"oW9OO28uHCZuVesiZ0mZccZKPG47E9Tp3oFt71bgt5Qz/SAIN+F70bfMALMZFNW3lDyG2BupYLigOrRC","doubleWrapping":false}"#;
    let column = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"kc2","wrappedDEK":"o+0nOL0pSUWBRD2wEjNqZO2tvJfJ6RQdjHpT1ux+Y0iKQ6Z0i43a0dRiLVvlRM1krdyOgFF8U64StSBK","doubleWrapping":false}"#;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(&unwrapper.unwrap(footer.as_bytes()).unwrap()),
        "c3cff47df35588144400854321b3b5b2730152916cb4c1b7eda808d13f46badd"
    );
    assert_eq!(
        hex(&unwrapper.unwrap(column.as_bytes()).unwrap()),
        "da68084a55c223ac512689258de91b23ce8d29b5723390b6dd49793db27522f7"
    );
}

#[test]
fn wrong_master_key_is_named() {
    let wrong = Arc::new(
        LocalKms::from_key_list("kf:AQEBAQEBAQEBAQEBAQEBAQ==,kc1:AQEBAQEBAQEBAQEBAQEBAQ==")
            .unwrap(),
    );
    for double in [true, false] {
        let mut wrapper = FileKeyWrapper::new(local_kms(), options(double, DataKeyLength::Aes128));
        let key = wrapper.generate_column_key("kc1").unwrap();
        let error = FileKeyUnwrapper::new(wrong.clone())
            .unwrap(&key.key_metadata)
            .unwrap_err();
        let expected = KmsError::UnwrapFailed {
            master_key_id: "kc1".into(),
        };
        match (double, &error) {
            (true, KeyMaterialError::UnwrapKek { cause, .. }) => assert_eq!(cause, &expected),
            (false, KeyMaterialError::UnwrapDek(cause)) => assert_eq!(cause, &expected),
            _ => panic!("unexpected error {error:?}"),
        }
        assert!(error.to_string().contains("\"kc1\""), "{error}");
    }
}

#[test]
fn unknown_master_key_is_named() {
    let kms = Arc::new(LocalKms::from_key_list("other:AAECAwQFBgcICQoLDA0ODw==").unwrap());
    let mut wrapper = FileKeyWrapper::new(local_kms(), KeyWrappingOptions::default());
    let key = wrapper.generate_column_key("kc1").unwrap();
    assert!(matches!(
        FileKeyUnwrapper::new(kms.clone()).unwrap(&key.key_metadata).unwrap_err(),
        KeyMaterialError::UnwrapKek { cause: KmsError::UnknownMasterKey { master_key_id }, .. }
            if master_key_id == "kc1"
    ));
    let mut wrapper = FileKeyWrapper::new(kms, KeyWrappingOptions::default());
    assert!(matches!(
        wrapper.generate_footer_key("kf").unwrap_err(),
        KeyMaterialError::Wrap(KmsError::UnknownMasterKey { master_key_id }) if master_key_id == "kf"
    ));
}

#[test]
fn tampered_wrapped_dek_is_rejected() {
    let kms = local_kms();
    // Double wrapping: the DEK fails to authenticate under its KEK.
    let mut wrapper = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let key = wrapper.generate_column_key("kc1").unwrap();
    let dek = json(&key.key_metadata)["wrappedDEK"]
        .as_str()
        .unwrap()
        .to_owned();
    for index in [0, 12, 20, 43] {
        let tampered = with_field(
            &key.key_metadata,
            "wrappedDEK",
            tamper_base64(&dek, index).into(),
        );
        let error = FileKeyUnwrapper::new(kms.clone())
            .unwrap(&tampered)
            .unwrap_err();
        assert!(
            matches!(&error, KeyMaterialError::DekAuthentication { master_key_id, .. } if master_key_id == "kc1"),
            "{error:?}"
        );
    }
    // A KEK id that is not the one the DEK was sealed with (AAD) fails the same way.
    let tampered = with_field(
        &key.key_metadata,
        "keyEncryptionKeyID",
        STANDARD.encode([7u8; 16]).into(),
    );
    assert!(matches!(
        FileKeyUnwrapper::new(kms.clone())
            .unwrap(&tampered)
            .unwrap_err(),
        KeyMaterialError::DekAuthentication { .. }
    ));
    // Truncated wrapped DEK.
    let tampered = with_field(
        &key.key_metadata,
        "wrappedDEK",
        STANDARD.encode([1u8; 20]).into(),
    );
    assert!(matches!(
        FileKeyUnwrapper::new(kms.clone())
            .unwrap(&tampered)
            .unwrap_err(),
        KeyMaterialError::MalformedWrappedKey {
            field: "wrappedDEK",
            cause: LocalWrapError::TooShort(20),
            ..
        }
    ));

    // Single wrapping: the KMS rejects it, naming the master key.
    let mut wrapper = FileKeyWrapper::new(kms.clone(), options(false, DataKeyLength::Aes256));
    let key = wrapper.generate_column_key("kc2").unwrap();
    let dek = json(&key.key_metadata)["wrappedDEK"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered = with_field(
        &key.key_metadata,
        "wrappedDEK",
        tamper_base64(&dek, 30).into(),
    );
    assert_eq!(
        format!(
            "{:?}",
            FileKeyUnwrapper::new(kms).unwrap(&tampered).unwrap_err()
        ),
        format!(
            "{:?}",
            KeyMaterialError::UnwrapDek(KmsError::UnwrapFailed {
                master_key_id: "kc2".into()
            })
        )
    );
}

#[test]
fn tampered_wrapped_kek_is_rejected() {
    let kms = local_kms();
    let mut wrapper = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let key = wrapper.generate_footer_key("kf").unwrap();
    let map = json(&key.key_metadata);
    let kek = map["wrappedKEK"].as_str().unwrap();
    let kek_id = map["keyEncryptionKeyID"].as_str().unwrap().to_owned();
    let tampered = with_field(
        &key.key_metadata,
        "wrappedKEK",
        tamper_base64(kek, 15).into(),
    );
    match FileKeyUnwrapper::new(kms.clone())
        .unwrap(&tampered)
        .unwrap_err()
    {
        KeyMaterialError::UnwrapKek { kek_id: id, cause } => {
            assert_eq!(id, kek_id);
            assert_eq!(
                cause,
                KmsError::UnwrapFailed {
                    master_key_id: "kf".into()
                }
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let tampered = with_field(&key.key_metadata, "wrappedKEK", "@@not base64@@".into());
    assert!(matches!(
        FileKeyUnwrapper::new(kms).unwrap(&tampered).unwrap_err(),
        KeyMaterialError::UnwrapKek {
            cause: KmsError::MalformedWrappedKey {
                cause: LocalWrapError::InvalidBase64,
                ..
            },
            ..
        }
    ));
}

#[test]
fn unknown_key_material_type_is_rejected() {
    let mut wrapper = FileKeyWrapper::new(local_kms(), KeyWrappingOptions::default());
    let key = wrapper.generate_column_key("kc1").unwrap();
    let other = with_field(&key.key_metadata, "keyMaterialType", "PKMT2".into());
    assert!(matches!(
        KeyMaterial::parse(&other).unwrap_err(),
        KeyMaterialError::UnknownKeyMaterialType { found } if found == "PKMT2"
    ));
}

#[test]
fn external_key_material_is_rejected_by_name() {
    // As parquet-java's KeyMetadata.createSerializedForExternalMaterial writes it.
    let external =
        br#"{"keyMaterialType":"PKMT1","internalStorage":false,"keyReference":"columnKey0"}"#;
    let error = FileKeyUnwrapper::new(local_kms())
        .unwrap(external)
        .unwrap_err();
    assert!(matches!(
        &error,
        KeyMaterialError::ExternalKeyMaterial { key_reference: Some(r) } if r == "columnKey0"
    ));
    assert!(
        error.to_string().contains("external key material"),
        "{error}"
    );
}

#[test]
fn malformed_json_is_rejected_naming_the_field() {
    let mut wrapper = FileKeyWrapper::new(local_kms(), KeyWrappingOptions::default());
    let key = wrapper.generate_footer_key("kf").unwrap();
    let meta = &key.key_metadata;

    assert!(matches!(
        KeyMaterial::parse(b"{\"keyMaterialType\":").unwrap_err(),
        KeyMaterialError::MalformedJson { .. }
    ));
    assert!(matches!(
        KeyMaterial::parse(b"[1,2]").unwrap_err(),
        KeyMaterialError::MalformedJson { .. }
    ));
    assert!(matches!(
        KeyMaterial::parse(&[0xff, 0xfe]).unwrap_err(),
        KeyMaterialError::NotUtf8
    ));
    for field in [
        "keyMaterialType",
        "internalStorage",
        "isFooterKey",
        "masterKeyID",
        "wrappedDEK",
        "doubleWrapping",
        "keyEncryptionKeyID",
        "wrappedKEK",
    ] {
        match KeyMaterial::parse(&without_field(meta, field)).unwrap_err() {
            KeyMaterialError::MissingField { field: missing } => assert_eq!(missing, field),
            other => panic!("{field}: unexpected error {other:?}"),
        }
    }
    for (field, value, expected) in [
        ("isFooterKey", Value::from("true"), "boolean"),
        ("doubleWrapping", Value::from(1), "boolean"),
        ("masterKeyID", Value::from(7), "string"),
        ("wrappedDEK", Value::Null, "string"),
        ("kmsInstanceID", Value::from(false), "string"),
    ] {
        match KeyMaterial::parse(&with_field(meta, field, value)).unwrap_err() {
            KeyMaterialError::WrongFieldType {
                field: wrong,
                expected: kind,
            } => assert_eq!((wrong, kind), (field, expected)),
            other => panic!("{field}: unexpected error {other:?}"),
        }
    }
    let bad_id = with_field(meta, "keyEncryptionKeyID", "%%%".into());
    assert!(matches!(
        FileKeyUnwrapper::new(local_kms())
            .unwrap(&bad_id)
            .unwrap_err(),
        KeyMaterialError::InvalidBase64 {
            field: "keyEncryptionKeyID"
        }
    ));
    // Footer KMS instance fields are optional on read; unknown fields are ignored.
    let lenient = with_field(
        &without_field(meta, "kmsInstanceURL"),
        "futureField",
        1.into(),
    );
    let material = KeyMaterial::parse(&lenient).unwrap();
    assert_eq!(material.kms_instance_url, None);
    assert_eq!(material.kms_instance_id.as_deref(), Some("DEFAULT"));
}

#[test]
fn unsupported_data_key_lengths_are_rejected() {
    // A 192-bit DEK, valid per parquet-java, which the Parquet reader does not support.
    let kms = local_kms();
    let mut wrapper = FileKeyWrapper::new(kms.clone(), KeyWrappingOptions::default());
    let metadata = wrapper.wrap_data_key(&[9u8; 24], "kc1", false).unwrap();
    assert!(matches!(
        FileKeyUnwrapper::new(kms.clone()).unwrap(&metadata).unwrap_err(),
        KeyMaterialError::UnsupportedDataKeyLength { bits: 192, master_key_id } if master_key_id == "kc1"
    ));
    // wrap_data_key round-trips caller-chosen keys.
    let metadata = wrapper.wrap_data_key(&[9u8; 32], "kf", true).unwrap();
    assert_eq!(
        FileKeyUnwrapper::new(kms)
            .unwrap(&metadata)
            .unwrap()
            .as_slice(),
        &[9u8; 32]
    );
    assert_eq!(json(&metadata)["isFooterKey"], true);
}

#[test]
fn types_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FileKeyUnwrapper>();
    assert_send_sync::<FileKeyWrapper>();
    assert_send_sync::<LocalKms>();
    assert_send_sync::<Arc<dyn KmsClient>>();
    assert_send_sync::<KeyMaterialError>();
}

#[test]
fn the_files_of_one_write_share_keks_until_they_expire() {
    let kms = CountingKms::new();
    let keks = WriterKeks::default();
    let files: Vec<_> = (0..3)
        .map(|_| {
            let mut wrapper =
                FileKeyWrapper::with_keks(kms.clone(), KeyWrappingOptions::default(), keks.clone());
            let footer = wrapper.generate_footer_key("kf").unwrap();
            let column = wrapper.generate_column_key("kc1").unwrap();
            (footer, column)
        })
        .collect();
    assert_eq!(
        kms.wraps.load(Ordering::SeqCst),
        2,
        "one KMS wrap per master key for the whole write"
    );
    let kek_ids: Vec<_> = files
        .iter()
        .map(|(_, column)| json(&column.key_metadata)["keyEncryptionKeyID"].clone())
        .collect();
    assert!(kek_ids.windows(2).all(|w| w[0] == w[1]), "{kek_ids:?}");
    assert_ne!(
        files[0].1.key, files[1].1.key,
        "every file has its own DEKs"
    );

    // A reader of every file unwraps one KEK per master key.
    let unwrapper = FileKeyUnwrapper::new(kms.clone());
    for (footer, column) in &files {
        assert_eq!(unwrapper.unwrap(&footer.key_metadata).unwrap(), footer.key);
        assert_eq!(unwrapper.unwrap(&column.key_metadata).unwrap(), column.key);
    }
    assert_eq!(kms.unwraps.load(Ordering::SeqCst), 2);

    // Another KMS instance never gets a KEK wrapped by the first.
    let other = KeyWrappingOptions {
        kms_instance_id: "other".to_owned(),
        ..KeyWrappingOptions::default()
    };
    let mut wrapper = FileKeyWrapper::with_keks(kms.clone(), other, keks.clone());
    let elsewhere = json(&wrapper.generate_column_key("kc1").unwrap().key_metadata);
    assert_ne!(elsewhere["keyEncryptionKeyID"], kek_ids[0]);
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 3);

    // An expired KEK is replaced: with no lifetime, every file makes its own.
    let expiring = WriterKeks::new(std::time::Duration::ZERO);
    let ids: Vec<_> = (0..2)
        .map(|_| {
            let mut wrapper = FileKeyWrapper::with_keks(
                kms.clone(),
                KeyWrappingOptions::default(),
                expiring.clone(),
            );
            json(&wrapper.generate_column_key("kc1").unwrap().key_metadata)["keyEncryptionKeyID"]
                .clone()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(kms.wraps.load(Ordering::SeqCst), 5);

    // Debug output names master keys, never key bytes.
    let debug = format!("{keks:?}");
    assert!(debug.contains("kc1") && debug.contains("kf"), "{debug}");
    assert!(!debug.contains("key:"), "{debug}");
}
