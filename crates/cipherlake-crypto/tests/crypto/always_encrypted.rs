//! Always Encrypted: real SQL Server vectors, attacks, normalisation and round trips.

use cipherlake_crypto::always_encrypted::{
    CekError, CellError, CellKey, EncryptedCek, EncryptionType, Error, RsaPrivateKey, RsaPublicKey,
    SqlType, SqlValue, TypeError, decrypt_cek, decrypt_value, encrypt_cek, encrypt_value,
    normalize, private_key_from_pem, public_key_from_certificate_pem, sign_cmk_metadata,
    verify_cmk_metadata,
};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/always-encrypted/"
);
const KEY_PATH: &str = "CurrentUser/My/0BE978BA81EED610015FD8B7CAEF55F1614CA3B6";
const CEK_HEX: &str = "0ff9e45335df3dec7be0649f741e6ea870e9d49d16fe4be7437ce22489f48ead";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn cmk_private() -> RsaPrivateKey {
    private_key_from_pem(&fixture_text("always-encrypted.pem")).unwrap()
}

fn cmk_public() -> RsaPublicKey {
    public_key_from_certificate_pem(&fixture_text("always-encrypted_pub.pem")).unwrap()
}

fn other_private() -> RsaPrivateKey {
    private_key_from_pem(include_str!("other_cmk.pem")).unwrap()
}

fn fixture_key() -> CellKey {
    CellKey::new(&hex::decode(CEK_HEX).unwrap()).unwrap()
}

fn ty(s: &str) -> SqlType {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

// ----------------------------------------------------------------------------------------------
// Real server vectors

#[test]
fn real_cek_value_parses_verifies_and_unwraps() {
    let value = fixture("cekv.key");
    let cek = EncryptedCek::parse(&value).unwrap();
    assert_eq!(
        cek.key_path,
        "currentuser/my/0be978ba81eed610015fd8b7caef55f1614ca3b6"
    );
    assert_eq!(cek.ciphertext.len(), 256);
    assert_eq!(cek.signature.len(), 256);
    assert_eq!(cek.to_bytes(), value);
    // The certificate alone verifies it; the key path comparison is case-insensitive.
    cek.verify(KEY_PATH, &cmk_public()).unwrap();
    let unwrapped = decrypt_cek(&value, KEY_PATH, &cmk_private()).unwrap();
    assert_eq!(hex::encode(&*unwrapped), CEK_HEX);
}

#[test]
fn real_cell_decrypts_to_known_nchar() {
    let key = fixture_key();
    let cell = fixture("column_value.enc");
    let value = decrypt_value(&key, &ty("nchar(10)"), &cell).unwrap();
    assert_eq!(value, SqlValue::String("12345     ".into()));
    assert_eq!(value.to_string(), "12345     ");
    // Randomized: re-encrypting gives a different cell that decrypts the same.
    let again = encrypt_value(&key, &ty("nchar(10)"), &value, EncryptionType::Randomized).unwrap();
    assert_ne!(again, cell);
    assert_eq!(
        decrypt_value(&key, &ty("nchar(10)"), &again).unwrap(),
        value
    );
}

#[test]
fn real_cell_via_unwrapped_cek() {
    let cek = decrypt_cek(&fixture("cekv.key"), KEY_PATH, &cmk_private()).unwrap();
    let key = CellKey::new(&cek).unwrap();
    let plain = key.decrypt(&fixture("column_value.enc")).unwrap();
    let expected: Vec<u8> = "12345     "
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(plain, expected);
}

// ----------------------------------------------------------------------------------------------
// Cell attacks

fn flip(cell: &[u8], at: usize) -> Vec<u8> {
    let mut c = cell.to_vec();
    c[at] ^= 0x01;
    c
}

#[test]
fn tampered_cells_are_rejected_by_region() {
    let key = fixture_key();
    let own = encrypt_value(
        &key,
        &ty("nvarchar(50)"),
        &SqlValue::String("tamper with me".into()),
        EncryptionType::Deterministic,
    )
    .unwrap();
    for cell in [fixture("column_value.enc"), own] {
        assert_eq!(
            key.decrypt(&flip(&cell, 0)),
            Err(CellError::UnsupportedVersion(0x00))
        );
        let mut v2 = cell.clone();
        v2[0] = 0x02;
        assert_eq!(key.decrypt(&v2), Err(CellError::UnsupportedVersion(0x02)));
        for region in [1, 32, 33, 48, 49, cell.len() - 1] {
            // MAC (1..33), IV (33..49), ciphertext (49..)
            assert_eq!(
                key.decrypt(&flip(&cell, region)),
                Err(CellError::AuthenticationFailed),
                "byte {region}"
            );
        }
        let wrong = CellKey::new(&[0x42; 32]).unwrap();
        assert_eq!(wrong.decrypt(&cell), Err(CellError::AuthenticationFailed));
        assert_eq!(
            key.decrypt(&cell[..40]),
            Err(CellError::Truncated { len: 40 })
        );
        assert_eq!(key.decrypt(&[]), Err(CellError::Truncated { len: 0 }));
        assert_eq!(
            key.decrypt(&cell[..cell.len() - 1]),
            Err(CellError::InvalidCiphertextLength(cell.len() - 50))
        );
        // A whole block cut off the end breaks the MAC.
        assert_eq!(
            key.decrypt(&cell[..cell.len() - 16]),
            Err(CellError::AuthenticationFailed)
        );
    }
    assert!(matches!(
        decrypt_value(
            &key,
            &ty("nchar(10)"),
            &flip(&fixture("column_value.enc"), 60)
        ),
        Err(Error::Cell(CellError::AuthenticationFailed))
    ));
    assert_eq!(
        CellKey::new(&[0u8; 31]).unwrap_err(),
        CellError::InvalidKeyLength(31)
    );
}

#[test]
fn decrypted_value_of_wrong_type_is_rejected() {
    let key = fixture_key();
    // 20 bytes of UTF-16 are not an 8-byte bigint.
    assert_eq!(
        decrypt_value(&key, &ty("bigint"), &fixture("column_value.enc")),
        Err(Error::Type(TypeError::InvalidNormalizedLength {
            ty: "bigint".into(),
            len: 20
        }))
    );
    let big = encrypt_value(
        &key,
        &ty("bigint"),
        &SqlValue::BigInt(300),
        EncryptionType::Randomized,
    )
    .unwrap();
    assert!(matches!(
        decrypt_value(&key, &ty("tinyint"), &big),
        Err(Error::Type(TypeError::InvalidNormalizedValue { .. }))
    ));
}

// ----------------------------------------------------------------------------------------------
// CEK value attacks and creation

#[test]
fn cek_value_attacks() {
    let value = fixture("cekv.key");
    let private = cmk_private();
    let sig_start = value.len() - 256;
    let ct_start = sig_start - 256;

    assert_eq!(
        decrypt_cek(&flip(&value, value.len() - 1), KEY_PATH, &private).unwrap_err(),
        CekError::InvalidSignature
    );
    assert_eq!(
        decrypt_cek(&flip(&value, sig_start), KEY_PATH, &private).unwrap_err(),
        CekError::InvalidSignature
    );
    // The signature covers the ciphertext and the stored key path.
    assert_eq!(
        decrypt_cek(&flip(&value, ct_start + 5), KEY_PATH, &private).unwrap_err(),
        CekError::InvalidSignature
    );
    let mut path_changed = value.clone();
    path_changed[5] = b'C'; // 'c' -> 'C': still the same path case-insensitively
    assert_eq!(
        decrypt_cek(&path_changed, KEY_PATH, &private).unwrap_err(),
        CekError::InvalidSignature
    );

    assert_eq!(
        decrypt_cek(
            &value,
            "CurrentUser/My/0000000000000000000000000000000000000000",
            &private
        )
        .unwrap_err(),
        CekError::KeyPathMismatch {
            expected: "CurrentUser/My/0000000000000000000000000000000000000000".into(),
            found: "currentuser/my/0be978ba81eed610015fd8b7caef55f1614ca3b6".into(),
        }
    );
    assert_eq!(
        decrypt_cek(&value[..value.len() / 2], KEY_PATH, &private).unwrap_err(),
        CekError::Truncated
    );
    assert_eq!(
        decrypt_cek(&value[..value.len() - 1], KEY_PATH, &private).unwrap_err(),
        CekError::Truncated
    );
    assert_eq!(
        decrypt_cek(&value[..3], KEY_PATH, &private).unwrap_err(),
        CekError::Truncated
    );
    let mut v2 = value.clone();
    v2[0] = 2;
    assert_eq!(
        decrypt_cek(&v2, KEY_PATH, &private).unwrap_err(),
        CekError::UnsupportedVersion(2)
    );
    // Another column master key: its signature check fails before any decryption.
    assert_eq!(
        decrypt_cek(&value, KEY_PATH, &other_private()).unwrap_err(),
        CekError::InvalidSignature
    );
}

#[test]
fn cek_value_creation_round_trips_and_matches_layout() {
    let private = cmk_private();
    let public = cmk_public();
    let cek = [0x5au8; 32];
    let value = encrypt_cek(&cek, KEY_PATH, &public, &private).unwrap();
    let parsed = EncryptedCek::parse(&value).unwrap();
    assert_eq!(parsed.key_path, KEY_PATH.to_lowercase());
    assert_eq!(&value[..5], &[1, 110, 0, 0, 1]);
    parsed.verify(KEY_PATH, &public).unwrap();
    assert_eq!(&*decrypt_cek(&value, KEY_PATH, &private).unwrap(), &cek);
    // OAEP is randomized.
    assert_ne!(
        encrypt_cek(&cek, KEY_PATH, &public, &private).unwrap(),
        value
    );
    let other = other_private();
    assert_eq!(
        encrypt_cek(&cek, KEY_PATH, &public, &other).unwrap_err(),
        CekError::KeyPairMismatch
    );
    assert!(matches!(
        private_key_from_pem("not a key"),
        Err(CekError::InvalidKey(_))
    ));
    assert!(matches!(
        public_key_from_certificate_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
        ),
        Err(CekError::InvalidKey(_))
    ));
}

#[test]
fn cmk_metadata_signatures() {
    let private = cmk_private();
    let public = cmk_public();
    let provider = "MSSQL_CERTIFICATE_STORE";
    let sig = sign_cmk_metadata(provider, KEY_PATH, true, &private).unwrap();
    verify_cmk_metadata(provider, KEY_PATH, true, &sig, &public).unwrap();
    verify_cmk_metadata(provider, &KEY_PATH.to_lowercase(), true, &sig, &public).unwrap();
    for (prov, path, flag) in [
        (provider, KEY_PATH, false),
        (provider, "CurrentUser/My/0000", true),
        ("MSSQL_JAVA_KEYSTORE", KEY_PATH, true),
    ] {
        assert_eq!(
            verify_cmk_metadata(prov, path, flag, &sig, &public),
            Err(CekError::InvalidSignature)
        );
    }
    let other = other_private();
    assert_eq!(
        verify_cmk_metadata(provider, KEY_PATH, true, &sig, other.as_public_key()),
        Err(CekError::InvalidSignature)
    );
}

// ----------------------------------------------------------------------------------------------
// Types: parsing, normalisation known answers, round trips

#[test]
fn sql_type_spellings() {
    for (text, canonical) in [
        ("bigint", "bigint"),
        ("BIGINT", "bigint"),
        ("nvarchar(50)", "nvarchar(50)"),
        ("nvarchar", "nvarchar(max)"),
        ("NVARCHAR(MAX)", "nvarchar(max)"),
        ("decimal(18,2)", "decimal(18,2)"),
        ("decimal( 18 , 2 )", "decimal(18,2)"),
        ("decimal", "decimal(18,0)"),
        ("numeric(10)", "numeric(10,0)"),
        ("datetime2(7)", "datetime2(7)"),
        ("datetime2", "datetime2(7)"),
        ("time(3)", "time(3)"),
        ("char(10)", "char(10)"),
        ("char", "char(1)"),
        ("float(24)", "real"),
        ("float(53)", "float"),
        (
            "varchar(20) COLLATE Latin1_General_100_BIN2_UTF8",
            "varchar(20) COLLATE Latin1_General_100_BIN2_UTF8",
        ),
        ("char(5) collate Latin1_General_BIN2", "char(5)"),
        ("datetimeoffset(0)", "datetimeoffset(0)"),
    ] {
        assert_eq!(ty(text).to_string(), canonical, "{text}");
        assert_eq!(ty(canonical), ty(text));
    }
    for bad in [
        "",
        "bigint(1)",
        "decimal(39,0)",
        "decimal(5,6)",
        "time(8)",
        "nvarchar(4001)",
        "varchar(0)",
        "text",
        "xml",
        "nvarchar(10) collate Latin1_General_BIN2",
        "varchar(10) collate Japanese_CI_AS",
        "int)",
    ] {
        assert!(bad.parse::<SqlType>().is_err(), "{bad:?} should not parse");
    }
    assert_eq!(
        "varchar(1) collate Japanese_CI_AS".parse::<SqlType>(),
        Err(TypeError::UnsupportedCollation("Japanese_CI_AS".into()))
    );
}

#[test]
fn normalisation_known_answers() {
    let n = |t: &str, v: &str| {
        hex::encode(normalize(&ty(t), &SqlValue::parse(&ty(t), v).unwrap()).unwrap())
    };
    assert_eq!(n("bit", "1"), "0100000000000000");
    assert_eq!(n("tinyint", "255"), "ff00000000000000");
    assert_eq!(n("smallint", "-2"), "feffffffffffffff");
    assert_eq!(n("int", "1"), "0100000000000000");
    assert_eq!(n("bigint", "-1"), "ffffffffffffffff");
    assert_eq!(n("real", "1"), "0000803f");
    assert_eq!(n("float", "1"), "000000000000f03f");
    assert_eq!(
        n("decimal(18,2)", "12.34"),
        "01d2040000000000000000000000000000"
    );
    assert_eq!(
        n("decimal(18,2)", "-12.34"),
        "00d2040000000000000000000000000000"
    );
    assert_eq!(n("money", "1"), "0000000010270000");
    assert_eq!(n("money", "-0.0001"), "ffffffffffffffff");
    assert_eq!(n("smallmoney", "1"), "0000000010270000");
    assert_eq!(n("nvarchar(10)", "aé"), "6100e900");
    assert_eq!(n("varchar(10)", "aé€"), "61e980");
    assert_eq!(
        n("varchar(10) collate Latin1_General_100_BIN2_UTF8", "aé€"),
        "61c3a9e282ac"
    );
    assert_eq!(n("varbinary(4)", "0xDEAD"), "dead");
    assert_eq!(
        n("uniqueidentifier", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        "ff19966f868b11d0b42d00c04fc964ff"
    );
    assert_eq!(n("date", "0001-01-01"), "000000");
    assert_eq!(n("date", "9999-12-31"), "dab937");
    assert_eq!(n("time(7)", "00:00:00.0000001"), "0100000000");
    assert_eq!(n("time(3)", "00:00:01.2345678"), "204bbc0000");
    assert_eq!(n("datetime2(0)", "0001-01-01 00:00:01"), "8096980000000000");
    // 10:00 at +02:00 is 08:00 UTC; offset 120 = 0x0078.
    assert_eq!(
        n("datetimeoffset(0)", "2000-01-01 10:00:00 +02:00"),
        "0040230e4307240b7800"
    );
    assert_eq!(n("datetime", "1900-01-01 00:00:00.003"), "0000000001000000");
    assert_eq!(n("datetime", "1899-12-31"), "ffffffff00000000");
    assert_eq!(n("smalldatetime", "1900-01-02 00:01:29.999"), "01000200");
}

#[test]
fn round_trip_every_type() {
    let key = fixture_key();
    let cases: &[(&str, &str, &str)] = &[
        ("bit", "true", "1"),
        ("bit", "0", "0"),
        ("tinyint", "0", "0"),
        ("tinyint", "255", "255"),
        ("smallint", "-32768", "-32768"),
        ("int", "2147483647", "2147483647"),
        ("bigint", "-9223372036854775808", "-9223372036854775808"),
        ("real", "3.25", "3.25"),
        ("real", "-1e-30", "-1e-30"),
        ("float", "0.1", "0.1"),
        ("float", "-1.5e300", "-1.5e300"),
        ("decimal(18,2)", "12.345", "12.35"),
        ("decimal(18,2)", "-0.5", "-0.50"),
        (
            "decimal(38,0)",
            "99999999999999999999999999999999999999",
            "99999999999999999999999999999999999999",
        ),
        (
            "numeric(38,38)",
            "-0.12345678901234567890123456789012345678",
            "-0.12345678901234567890123456789012345678",
        ),
        ("money", "922337203685477.5807", "922337203685477.5807"),
        ("money", "-922337203685477.5808", "-922337203685477.5808"),
        ("money", "12.3", "12.3000"),
        ("smallmoney", "-214748.3648", "-214748.3648"),
        ("smallmoney", "214748.3647", "214748.3647"),
        ("nchar(10)", "12345", "12345     "),
        ("nvarchar(50)", "Grüße, 世界 🎉", "Grüße, 世界 🎉"),
        ("nvarchar(max)", "", ""),
        ("char(6)", "ab€", "ab€   "),
        ("varchar(50)", "café ‰ Œ", "café ‰ Œ"),
        (
            "varchar(50) collate Latin1_General_100_CI_AS_SC_UTF8",
            "世界 🎉",
            "世界 🎉",
        ),
        ("binary(4)", "0x00ff10", "0x00FF10"),
        ("varbinary(max)", "", "0x"),
        (
            "uniqueidentifier",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        ),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "0001-01-01", "0001-01-01"),
        ("time(7)", "23:59:59.9999999", "23:59:59.9999999"),
        ("time(3)", "12:34:56.78959", "12:34:56.789"),
        ("time(0)", "01:02", "01:02:00"),
        (
            "datetime2(7)",
            "9999-12-31 23:59:59.9999999",
            "9999-12-31 23:59:59.9999999",
        ),
        (
            "datetime2(2)",
            "2024-02-29T13:45:10.123",
            "2024-02-29 13:45:10.12",
        ),
        (
            "datetimeoffset(7)",
            "2024-02-29 13:45:10.1234567 -05:30",
            "2024-02-29 13:45:10.1234567 -05:30",
        ),
        (
            "datetimeoffset(0)",
            "0001-01-01 00:00:00 -14:00",
            "0001-01-01 00:00:00 -14:00",
        ),
        (
            "datetimeoffset(3)",
            "2024-01-01 00:30:00Z",
            "2024-01-01 00:30:00.000 +00:00",
        ),
        (
            "datetime",
            "2024-02-29 13:45:10.123",
            "2024-02-29 13:45:10.123",
        ),
        ("datetime", "1753-01-01", "1753-01-01 00:00:00.000"),
        (
            "datetime",
            "9999-12-31 23:59:59.997",
            "9999-12-31 23:59:59.997",
        ),
        (
            "datetime",
            "2000-01-01 23:59:59.999",
            "2000-01-02 00:00:00.000",
        ),
        ("smalldatetime", "2079-06-06 23:59", "2079-06-06 23:59:00"),
        (
            "smalldatetime",
            "1900-01-01 10:20:29.998",
            "1900-01-01 10:20:00",
        ),
        (
            "smalldatetime",
            "1900-01-01 10:20:29.999",
            "1900-01-01 10:21:00",
        ),
    ];
    for &(t, text, shown) in cases {
        let sql_type = ty(t);
        let value = SqlValue::parse(&sql_type, text).unwrap_or_else(|e| panic!("{t} {text}: {e}"));
        let det = encrypt_value(&key, &sql_type, &value, EncryptionType::Deterministic).unwrap();
        let det2 = encrypt_value(&key, &sql_type, &value, EncryptionType::Deterministic).unwrap();
        assert_eq!(det, det2, "{t}: deterministic must repeat");
        let r1 = encrypt_value(&key, &sql_type, &value, EncryptionType::Randomized).unwrap();
        let r2 = encrypt_value(&key, &sql_type, &value, EncryptionType::Randomized).unwrap();
        assert_ne!(r1, r2, "{t}: randomized must differ");
        assert_ne!(r1, det);
        for cell in [&det, &r1, &r2] {
            let back = decrypt_value(&key, &sql_type, cell).unwrap();
            assert_eq!(back.to_string(), shown, "{t} {text}");
            if matches!(sql_type, SqlType::Char { .. } | SqlType::NChar { .. }) {
                continue; // shown padded; the padding is part of the text, not of the cell
            }
            // What is shown parses back to the same plaintext.
            let reparsed = SqlValue::parse(&sql_type, &back.to_string()).unwrap();
            assert_eq!(
                normalize(&sql_type, &reparsed).unwrap(),
                normalize(&sql_type, &value).unwrap(),
                "{t} {text}"
            );
        }
    }
}

#[test]
fn invalid_values_are_rejected_without_echoing_them() {
    for (t, text) in [
        ("tinyint", "256"),
        ("tinyint", "-1"),
        ("int", "2147483648"),
        ("bit", "yes"),
        ("float", "inf"),
        ("real", "1e39"),
        ("decimal(5,2)", "1234.5"),
        ("decimal(5,2)", "12a"),
        ("money", "922337203685477.5808"),
        ("smallmoney", "214748.3648"),
        ("nchar(3)", "secret"),
        ("varchar(3)", "secret"),
        ("varchar(10)", "secret世"),
        ("binary(2)", "0x010203"),
        ("varbinary(10)", "0x123"),
        ("uniqueidentifier", "secret"),
        ("date", "2023-02-29"),
        ("date", "10000-01-01"),
        ("time(7)", "24:00:00"),
        ("datetime", "1752-12-31"),
        ("smalldatetime", "2079-06-07"),
        ("smalldatetime", "1899-12-31 23:59"),
        ("datetimeoffset(0)", "0001-01-01 00:00:00 +01:00"),
        ("datetimeoffset(0)", "2000-01-01 00:00:00 +15:00"),
    ] {
        let err = SqlValue::parse(&ty(t), text).expect_err(&format!("{t} {text}"));
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    // A value of another type is a mismatch, not a silent conversion.
    assert_eq!(
        normalize(&ty("int"), &SqlValue::BigInt(1)),
        Err(TypeError::TypeMismatch { ty: "int".into() })
    );
    assert!(matches!(
        normalize(
            &ty("decimal(4,1)"),
            &SqlValue::parse(&ty("decimal(10,3)"), "1.234").unwrap()
        ),
        Err(TypeError::InvalidValue { .. })
    ));
    assert_eq!(
        normalize(
            &ty("decimal(10,4)"),
            &SqlValue::parse(&ty("decimal(4,1)"), "1.5").unwrap()
        )
        .unwrap(),
        normalize(
            &ty("decimal(10,4)"),
            &SqlValue::parse(&ty("decimal(10,4)"), "1.5000").unwrap()
        )
        .unwrap()
    );
}

#[test]
fn decimal_reads_any_magnitude_length() {
    let key = fixture_key();
    let t = ty("decimal(10,2)");
    // 5-byte (precision <= 9 TDS style) and 9-byte encodings of 12.34 decrypt like the 17-byte one.
    for plain in [
        &[1u8, 0xd2, 0x04, 0, 0][..],
        &[1, 0xd2, 0x04, 0, 0, 0, 0, 0, 0],
        &[0, 0xd2, 0x04],
    ] {
        let cell = key.encrypt(plain, EncryptionType::Randomized).unwrap();
        let v = decrypt_value(&key, &t, &cell).unwrap();
        let expect = if plain[0] == 1 { "12.34" } else { "-12.34" };
        assert_eq!(v.to_string(), expect);
    }
}
