//! Templating: values substituted, undefined and missing secrets refused by name, nothing
//! printed by Debug.

use std::collections::BTreeMap;

use cipherlake_policy::{Policy, PolicyError, RenderError, SecretValue, render};
use zeroize::Zeroizing;

use super::common::{example, example_text, refused, replace};

const SQL_URL: &str = "postgres://analytics@db.internal:5432/taxi?sslmode=require";

fn values() -> BTreeMap<String, SecretValue> {
    let mut values = BTreeMap::new();
    values.insert(
        "sql_url".into(),
        SecretValue::Text(Zeroizing::new(SQL_URL.into())),
    );
    values.insert(
        "taxi-footer".into(),
        SecretValue::Bytes(Zeroizing::new(vec![0xf0; 32])),
    );
    values.insert(
        "results-cmk".into(),
        SecretValue::KeyPair {
            private_pkcs8_der: Zeroizing::new(vec![0xaa; 40]),
            public_spki_der: vec![0x30, 0x82, 0x01, 0x22],
        },
    );
    values
}

#[test]
fn renders_env_args_and_files() {
    let rendered = render(&example(), "driver", &values()).expect("renders");
    assert_eq!(rendered.env["SQL_URL"].expose(), SQL_URL);
    assert_eq!(rendered.env["TAXI_URI"].expose(), "file:///data/taxi");
    let args: Vec<&str> = rendered.args.iter().map(|a| a.expose()).collect();
    assert_eq!(args, ["--policy", "taxi-analytics", "--service", "driver"]);
    let pem = rendered.files["/etc/cipherlake/results-cmk.pub.pem"].expose();
    assert_eq!(
        pem,
        "-----BEGIN PUBLIC KEY-----\nMIIBIg==\n-----END PUBLIC KEY-----\n"
    );
}

#[test]
fn filters_encode_bytes() {
    let text = replace(
        &example_text(),
        "TAXI_URI: file:///data/taxi",
        "FOOTER_HEX: \"{{ secret.taxi-footer | hex }}\"\n      FOOTER_B64: \"{{secret.taxi-footer|base64}}\"\n      URL_B64: \"{{ secret.sql_url | base64 }}\"",
    );
    let policy = Policy::parse(&text).expect("valid");
    let rendered = render(&policy, "driver", &values()).expect("renders");
    assert_eq!(rendered.env["FOOTER_HEX"].expose(), "f0".repeat(32));
    assert_eq!(
        rendered.env["FOOTER_B64"].expose(),
        "8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PA="
    );
    assert_eq!(
        rendered.env["URL_B64"].expose().len(),
        SQL_URL.len().div_ceil(3) * 4
    );
}

#[test]
fn debug_output_shows_no_values() {
    let rendered = render(&example(), "driver", &values()).expect("renders");
    let debug = format!("{rendered:?} {:?}", values());
    assert!(!debug.contains("postgres://"), "{debug}");
    assert!(!debug.contains("MIIB"), "{debug}");
    assert!(debug.contains("SQL_URL"), "names are fine: {debug}");
    let spec = format!("{:?}", example().spec());
    assert!(!spec.contains("postgres://"), "{spec}");
}

#[test]
fn undefined_secret_in_a_template_is_refused_naming_it() {
    let text = replace(
        &example_text(),
        "{{ policy.name }}",
        "{{ secret.db_password }}",
    );
    match refused(&text) {
        PolicyError::Invalid(invalid) => {
            let shown = invalid.to_string();
            assert!(shown.contains("services.driver.args[1]"), "{shown}");
            assert!(
                shown.contains("undefined secret \"db_password\""),
                "{shown}"
            );
        }
        other => panic!("expected validation issues, got {other}"),
    }
}

#[test]
fn missing_value_is_refused_naming_the_secret() {
    let mut values = values();
    values.remove("sql_url");
    let e = render(&example(), "driver", &values).expect_err("refused");
    assert!(
        matches!(&e, RenderError::MissingValue { name, .. } if name == "sql_url"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("services.driver.env.SQL_URL: "),
        "{e}"
    );
}

#[test]
fn value_of_the_wrong_kind_is_refused() {
    let mut values = values();
    values.insert(
        "sql_url".into(),
        SecretValue::Bytes(Zeroizing::new(b"raw".to_vec())),
    );
    let e = render(&example(), "driver", &values).expect_err("refused");
    assert!(
        matches!(&e, RenderError::WrongMaterial { name, .. } if name == "sql_url"),
        "{e}"
    );
    let mut values = self::values();
    values.insert(
        "results-cmk".into(),
        SecretValue::Bytes(Zeroizing::new(vec![1; 32])),
    );
    assert!(matches!(
        render(&example(), "driver", &values),
        Err(RenderError::WrongMaterial { .. })
    ));
}

#[test]
fn unknown_service_is_refused() {
    assert!(matches!(
        render(&example(), "executor", &values()),
        Err(RenderError::UnknownService(_))
    ));
}
