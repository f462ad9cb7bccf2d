//! Parse errors: the field path, the line and column, and a message naming the problem.

use cipherlake_policy::{ParseError, PolicyError};

use super::common::{example_text, line_of, refused, replace};

fn parse_error(text: &str) -> ParseError {
    match refused(text) {
        PolicyError::Parse(e) => e,
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn unknown_field_names_path_line_and_field() {
    let text = replace(
        &example_text(),
        "    kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }\n",
        "    kms_key: { taxi-footer: [unwrap], taxi-pii: [unwrap] }\n",
    );
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "services.worker.kms_key");
    let location = e.location.expect("located");
    assert_eq!(location.line, line_of(&text, "kms_key:"));
    assert!(
        e.message.contains("unknown field `kms_key`"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("kms_keys"),
        "lists the expected fields: {}",
        e.message
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with("services.worker.kms_key (line "),
        "{shown}"
    );
}

#[test]
fn unknown_top_level_field() {
    let text = replace(&example_text(), "owners:", "ownerz:");
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "ownerz");
    assert_eq!(e.location.expect("located").line, line_of(&text, "ownerz:"));
}

#[test]
fn wrong_type_names_path_and_line() {
    let text = replace(
        &example_text(),
        "    console: row-counts\n",
        "    console: row-counts\n    min_svn: high\n",
    );
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "services.driver.min_svn");
    assert_eq!(
        e.location.expect("located").line,
        line_of(&text, "min_svn: high")
    );
}

#[test]
fn list_instead_of_map_is_a_wrong_type() {
    let text = replace(
        &example_text(),
        "      TAXI_URI: file:///data/taxi\n",
        "      - file:///data/taxi\n",
    );
    let e = parse_error(&text);
    assert!(e.path.to_string().starts_with("services.driver.env"), "{e}");
    assert!(e.location.is_some());
}

#[test]
fn bad_hex_in_measurement() {
    let text = replace(&example_text(), "sha384:5035f4", "sha384:z035f4");
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "services.driver.measurements[0]");
    assert_eq!(
        e.location.expect("located").line,
        line_of(&text, "sha384:z035f4")
    );
    assert!(e.message.contains("invalid hex digit 'z'"), "{}", e.message);
}

#[test]
fn bad_owner_key_and_unknown_digest_algorithm() {
    let text = replace(&example_text(), "ed25519:2152f8", "ed25519:52f8");
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "owners[0]");
    assert!(e.message.contains("32 bytes"), "{}", e.message);
    let text = replace(&example_text(), "sha256:9625", "md5:9625");
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "services.driver.jobs[0]");
    assert!(
        e.message.contains("unknown digest algorithm"),
        "{}",
        e.message
    );
}

#[test]
fn unknown_api_version_and_missing_fields() {
    let e = parse_error(&replace(&example_text(), "cipherlake/v1", "cipherlake/v2"));
    assert_eq!(e.path.to_string(), "apiVersion");
    assert_eq!(e.location.expect("located").line, 2);
    let e = parse_error(&replace(&example_text(), "name: taxi-analytics\n", ""));
    assert!(e.message.contains("name"), "{e}");
}

#[test]
fn duplicate_keys_are_refused() {
    let text = replace(&example_text(), "  worker:\n", "  driver:\n");
    let e = parse_error(&text);
    assert!(e.message.to_lowercase().contains("duplicate"), "{e}");
    assert!(e.location.is_some());
}

#[test]
fn malformed_yaml_has_a_location() {
    let e = parse_error("apiVersion: cipherlake/v1\nname: [unclosed\nowners: []\n");
    assert!(e.location.is_some(), "{e}");
    let e = parse_error("");
    assert!(!e.message.is_empty());
    let e = parse_error("- just\n- a list\n");
    assert!(!e.message.is_empty());
}

#[test]
fn alias_bomb_is_refused_without_exhausting_memory() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let e = parse_error(&text);
    assert!(!e.message.is_empty());
}

#[test]
fn secret_values_stay_out_of_parse_errors() {
    // A misplaced secret (a map where the value belongs) must not echo the text around it.
    let text = replace(
        &example_text(),
        "    value: \"postgres://analytics@db.internal:5432/taxi?sslmode=require\"\n",
        "    value: { password: hunter2-secret }\n",
    );
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "secrets.sql_url.value");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn the_old_kms_keys_list_names_the_new_form() {
    let text = replace(
        &example_text(),
        "    kms_keys: { taxi-footer: [unwrap], taxi-pii: [unwrap] }\n",
        "    kms_keys: [taxi-footer, taxi-pii]\n",
    );
    let e = parse_error(&text);
    assert_eq!(e.path.to_string(), "services.worker.kms_keys");
    assert!(
        e.message.contains("old form") && e.message.contains("[unwrap]"),
        "{}",
        e.message
    );
}
