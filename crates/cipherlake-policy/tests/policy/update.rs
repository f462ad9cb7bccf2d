//! Signed versions and updates: the predecessor chain and owner signatures under attack.

use cipherlake_policy::{
    OwnerSigningKey, Policy, PolicyError, SignedPolicy, UpdateError, sign, verify_update,
};

use super::common::{example, example_text, newcomer, owner, replace, stranger};

/// The example's next version: predecessor set, one change, optionally more owners.
fn next_version(current: &Policy, extra_owner: Option<&OwnerSigningKey>) -> String {
    let text = replace(
        &example_text(),
        "predecessor: null ",
        &format!("predecessor: {} ", current.hash()),
    );
    let text = replace(&text, "console: row-counts", "console: none");
    match extra_owner {
        Some(key) => replace(
            &text,
            "attestation:\n",
            &format!("  - {}\nattestation:\n", key.public_key()),
        ),
        None => text,
    }
}

#[test]
fn first_version_signed_by_its_owner_is_accepted() {
    let signed = sign(&example_text(), &owner()).expect("signs");
    let accepted = verify_update(None, &signed).expect("accepted");
    assert_eq!(accepted.signer, owner().public_key());
    assert_eq!(accepted.policy.hash(), example().hash());
}

#[test]
fn first_version_signed_by_a_non_owner_is_refused() {
    let signed = sign(&example_text(), &stranger()).expect("signs");
    let e = verify_update(None, &signed).expect_err("refused");
    assert!(matches!(e, UpdateError::NotOwnOwner { signer } if signer == stranger().public_key()));
}

#[test]
fn first_version_naming_a_predecessor_is_refused() {
    let text = next_version(&example(), None);
    let e = verify_update(None, &sign(&text, &owner()).expect("signs")).expect_err("refused");
    assert!(
        matches!(e, UpdateError::UnexpectedPredecessor { .. }),
        "{e}"
    );
}

#[test]
fn update_on_the_current_version_signed_by_an_owner_is_accepted() {
    let current = example();
    let signed = sign(&next_version(&current, None), &owner()).expect("signs");
    let accepted = verify_update(Some(&current), &signed).expect("accepted");
    assert_eq!(accepted.policy.predecessor(), Some(current.hash()));
    assert_ne!(accepted.policy.hash(), current.hash());
}

#[test]
fn stale_update_is_refused_naming_both_hashes() {
    let v1 = example();
    let v2 = verify_update(
        Some(&v1),
        &sign(&next_version(&v1, None), &owner()).expect("signs"),
    )
    .expect("v2 accepted")
    .policy;
    // A second update still based on v1, arriving after v2.
    let concurrent = replace(&next_version(&v1, None), "console: none", "console: full");
    let e = verify_update(Some(&v2), &sign(&concurrent, &owner()).expect("signs"))
        .expect_err("refused");
    match &e {
        UpdateError::Stale { current, found, .. } => {
            assert_eq!(*current, v2.hash());
            assert_eq!(*found, Some(v1.hash()));
        }
        other => panic!("expected Stale, got {other}"),
    }
    let message = e.to_string();
    assert!(
        message.contains(&v1.hash().to_string()) && message.contains(&v2.hash().to_string()),
        "{message}"
    );
    // An update naming no predecessor at all is stale too.
    let e = verify_update(Some(&v1), &sign(&example_text(), &owner()).expect("signs"))
        .expect_err("refused");
    assert!(matches!(e, UpdateError::Stale { found: None, .. }), "{e}");
}

#[test]
fn update_signed_by_a_non_owner_is_refused_without_revealing_the_current_hash() {
    let current = example();
    let signed = sign(&next_version(&current, None), &stranger()).expect("signs");
    let e = verify_update(Some(&current), &signed).expect_err("refused");
    assert!(matches!(e, UpdateError::NotAnOwner { .. }), "{e}");
    // Stale and unauthorised: the non-owner is told only that it is not an owner.
    let signed = sign(&example_text(), &stranger()).expect("signs");
    let e = verify_update(Some(&current), &signed).expect_err("refused");
    assert!(matches!(e, UpdateError::NotAnOwner { .. }), "{e}");
    assert!(!e.to_string().contains(&current.hash().to_string()));
}

#[test]
fn a_newly_added_owner_cannot_sign_the_update_that_adds_it() {
    let current = example();
    let text = next_version(&current, Some(&newcomer()));
    let new_policy = Policy::parse(&text).expect("valid");
    assert!(new_policy.is_owner(&newcomer().public_key()));
    let e = verify_update(Some(&current), &sign(&text, &newcomer()).expect("signs"))
        .expect_err("refused");
    assert!(
        matches!(e, UpdateError::NotAnOwner { signer, .. } if signer == newcomer().public_key())
    );
    // Signed by the current owner the same update is fine, and the newcomer owns what follows.
    let v2 = verify_update(Some(&current), &sign(&text, &owner()).expect("signs"))
        .expect("accepted")
        .policy;
    let v3 = replace(
        &text,
        &format!("predecessor: {} ", current.hash()),
        &format!("predecessor: {} ", v2.hash()),
    );
    let v3 = replace(&v3, "console: none", "console: full");
    verify_update(Some(&v2), &sign(&v3, &newcomer()).expect("signs")).expect("accepted");
}

#[test]
fn tampering_after_signing_is_refused() {
    let signed = sign(&example_text(), &owner()).expect("signs");
    // One character of the job allow-list.
    let mut tampered = signed.clone();
    tampered.policy = replace(&signed.policy, "sha256:9625ed", "sha256:9625ee").into();
    let e = verify_update(None, &tampered).expect_err("refused");
    assert!(matches!(e, UpdateError::BadSignature { .. }), "{e}");
    // Claiming another signer for the same signature.
    let mut resigned = signed.clone();
    resigned.signer = newcomer().public_key();
    assert!(matches!(
        verify_update(None, &resigned),
        Err(UpdateError::BadSignature { .. })
    ));
    // Flipping a signature bit.
    let mut bytes = signed.signature.to_bytes();
    bytes[10] ^= 1;
    let mut flipped = signed.clone();
    flipped.signature = ed25519_dalek::Signature::from_bytes(&bytes);
    assert!(matches!(
        verify_update(None, &flipped),
        Err(UpdateError::BadSignature { .. })
    ));
}

#[test]
fn reformatting_a_signed_policy_keeps_the_signature_valid() {
    let signed = sign(&example_text(), &owner()).expect("signs");
    let mut reformatted = signed.clone();
    let comments_removed: String = signed
        .policy
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    reformatted.policy = comments_removed.into();
    verify_update(None, &reformatted).expect("same meaning, same signature");
}

#[test]
fn update_renaming_the_policy_is_refused() {
    let current = example();
    let text = replace(
        &next_version(&current, None),
        "name: taxi-analytics",
        "name: taxi-other",
    );
    let e =
        verify_update(Some(&current), &sign(&text, &owner()).expect("signs")).expect_err("refused");
    assert!(matches!(e, UpdateError::NameMismatch { .. }), "{e}");
}

#[test]
fn invalid_policy_text_is_refused_before_any_signature_check() {
    let e = sign("apiVersion: cipherlake/v1\n", &owner()).expect_err("refused");
    assert!(matches!(e, PolicyError::Parse(_)));
    let mut signed = sign(&example_text(), &owner()).expect("signs");
    signed.policy = replace(&signed.policy, "tees: [sim]", "tees: []").into();
    assert!(matches!(
        verify_update(None, &signed),
        Err(UpdateError::Policy(PolicyError::Invalid(_)))
    ));
}

#[test]
fn envelope_json_round_trip_and_malformed_envelopes() {
    let signed = sign(&example_text(), &owner()).expect("signs");
    let json = serde_json::to_string(&signed).expect("serialises");
    assert!(
        json.contains("\"format\":\"cipherlake-signed-policy-v1\""),
        "{json}"
    );
    let back: SignedPolicy = serde_json::from_str(&json).expect("parses");
    verify_update(None, &back).expect("accepted");
    let debug = format!("{signed:?}");
    assert!(!debug.contains("postgres://"), "{debug}");
    for bad in [
        json.replace("cipherlake-signed-policy-v1", "cipherlake-signed-policy-v0"),
        json.replace("\"signature\":\"", "\"signature\":\"zz"),
        json.replace("\"signer\":\"ed25519:", "\"signer\":\"ed25519:00"),
        json.replace("\"format\"", "\"extra\":1,\"format\""),
    ] {
        assert!(serde_json::from_str::<SignedPolicy>(&bad).is_err(), "{bad}");
    }
}
