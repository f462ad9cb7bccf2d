//! vTPM evidence: the real Azure confidential VM samples (SEV-SNP Milan and Genoa, TDX), and an
//! attack on each check through sim-vtpm evidence whose TPM quote a test key signs.

use cipherlake_attest::sim::PlatformKey;
use cipherlake_attest::tpm::quote::{QuoteError, QuoteInfo};
use cipherlake_attest::vtpm::{HclReport, ReportType, RuntimeClaims, VtpmEvidence, runtime_claims};
use cipherlake_attest::{Claims, Evidence, Tee, Verifier, VerifyError, VerifyOptions};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use sha2::{Digest as _, Sha256};

use super::common::*;

const CHALLENGE: &[u8] = b"challenge";
const GENOA_NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";

fn azure(name: &str) -> Vec<u8> {
    read(fixture(&format!("azure-vtpm/{name}")))
}

fn verify_snp(json: Vec<u8>, nonce: &[u8]) -> Result<Claims, VerifyError> {
    Verifier::new().verify(
        &Evidence::new(Tee::AzureSnpVtpm, json),
        &VerifyOptions::now().with_nonce(nonce),
    )
}

/// The JSON of a fixture with `edit` applied to its parsed value.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&azure(name)).expect("json");
    edit(&mut value);
    serde_json::to_vec(&value).expect("json")
}

fn byte_list(value: &mut serde_json::Value, offset: usize, edit: impl FnOnce(&mut u64)) {
    let mut v = value[offset].as_u64().expect("byte");
    edit(&mut v);
    value[offset] = v.into();
}

#[test]
fn azure_snp_milan_sample_verifies_with_its_claims() {
    let claims = verify_snp(azure("snp-milan-evidence-v0.json"), CHALLENGE).expect("verifies");
    assert_eq!(claims.tee, Tee::AzureSnpVtpm);
    assert_eq!(claims.attested_tee, Some(Tee::SevSnp));
    let vtpm = claims.vtpm.as_ref().expect("vtpm claims");
    assert_eq!(vtpm.nonce, CHALLENGE);
    assert_eq!(vtpm.tpm_pcrs.len(), 24);
    assert_eq!(
        hex::encode(&vtpm.tpm_pcrs[0]),
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    assert_eq!(vtpm.vm_configuration["secure-boot"], true);
    assert_eq!(
        vtpm.vm_configuration["vmUniqueId"],
        "26F8BC30-774E-4290-8E7A-535F3B672AEE"
    );
    assert_eq!(vtpm.user_data, vec![0; 64]);
    assert_eq!(&claims.report_data[..9], CHALLENGE);
    let snp = claims.snp.as_ref().expect("snp claims");
    assert_eq!(snp.product, "Milan");
    assert_eq!(snp.signing_key, "vcek");
    assert_eq!(claims.measurement.len(), 48);
    let json = serde_json::to_value(&claims).expect("claims serialise");
    assert_eq!(json["tee"], "azure-snp-vtpm");
    assert_eq!(json["vtpm"]["tpm_pcrs"].as_array().map(Vec::len), Some(24));
}

#[test]
fn azure_snp_genoa_sample_verifies_with_its_claims() {
    let nonce = hex::decode(GENOA_NONCE).expect("hex");
    let claims = verify_snp(azure("snp-genoa-evidence-v0.json"), &nonce).expect("verifies");
    assert_eq!(
        claims.snp.as_ref().map(|s| s.product.as_str()),
        Some("Genoa")
    );
    let vtpm = claims.vtpm.expect("vtpm claims");
    assert_eq!(
        hex::encode(&vtpm.tpm_pcrs[0]),
        "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338"
    );
    assert_eq!(vtpm.vm_configuration["tpm-persisted"], true);
}

#[test]
fn azure_tdx_sample_checks_offline_and_needs_collateral_for_its_td_quote() {
    let json = azure("tdx-evidence-v1.json");
    let evidence = VtpmEvidence::parse(&json).expect("v1 layout");
    assert_eq!(evidence.version, 1);
    let hcl = HclReport::parse(&evidence.hcl_report, ReportType::Tdx).expect("HCL report");
    // The binding of the runtime claims, checked against the TD quote's report data (TDX
    // quote v4: 48-byte header, report data at 520 of the TD report body).
    let td_quote = evidence.td_quote.as_deref().expect("td quote");
    assert_eq!(
        Sha256::digest(hcl.runtime_claims).as_slice(),
        &td_quote[48 + 520..48 + 552]
    );
    let runtime = RuntimeClaims::parse(hcl.runtime_claims).expect("runtime claims");
    let info = QuoteInfo::parse(&evidence.quote_message).expect("quote");
    cipherlake_attest::tpm::quote::verify_signature(
        &runtime.attestation_key,
        &evidence.quote_message,
        &evidence.quote_signature,
    )
    .expect("signed by HCLAkPub");
    cipherlake_attest::tpm::quote::check_nonce(&info, CHALLENGE).expect("nonce");
    let pcrs = info.check_pcr_values(&evidence.pcrs).expect("pcrs");
    assert_eq!(
        hex::encode(pcrs[0]),
        "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
    );
    // Without DCAP collateral the TD quote, and so the evidence, cannot verify.
    let err = Verifier::new()
        .verify(
            &Evidence::new(Tee::AzureTdxVtpm, json),
            &VerifyOptions::now().with_nonce(CHALLENGE),
        )
        .expect_err("no collateral");
    assert!(
        matches!(err, VerifyError::MissingCollateral { .. }),
        "{err}"
    );
}

#[test]
fn a_tdx_vtpm_binding_is_checked_against_the_dcap_verified_td_quote() {
    // A genuine TD quote with valid collateral inside vTPM evidence whose runtime claims it
    // does not bind: DCAP verifies, the binding check refuses.
    let (ak, platform) = (test_ak(), PlatformKey::from_seed(&[3; 32]));
    let mut built = SimVtpm::new(&ak, &platform).build_parts();
    let claims = built.runtime_claims.clone();
    // Make the HCL report's unsigned TDREPORT copy bind the claims: it must not matter.
    let mut tdreport = vec![0u8; 1024];
    tdreport[128..160].copy_from_slice(&Sha256::digest(&claims));
    built.hcl = HclReport::build(ReportType::Tdx, &tdreport, &claims).expect("hcl");
    built.td_quote = Some(read(fixture("tdx/tdx_quote")));
    let json = built.json();
    let evidence = Evidence::new(Tee::AzureTdxVtpm, json)
        .with_collateral(dcap_collateral(&dcap_json("tdx/tdx_quote_collateral.json")));
    let err = Verifier::new()
        .verify(
            &evidence,
            &VerifyOptions::at(july_2025()).with_nonce(&[7; 64]),
        )
        .expect_err("unbound runtime claims");
    assert!(
        matches!(err, VerifyError::RuntimeClaimsMismatch { .. }),
        "{err}"
    );
}

#[test]
fn the_wrong_nonce_is_refused() {
    let err = verify_snp(azure("snp-milan-evidence-v0.json"), b"challengf").expect_err("nonce");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::NonceMismatch { .. })),
        "{err}"
    );
    let err = Verifier::new()
        .verify(
            &Evidence::new(Tee::AzureSnpVtpm, azure("snp-milan-evidence-v0.json")),
            &VerifyOptions::now(),
        )
        .expect_err("no nonce");
    assert_eq!(err, VerifyError::MissingNonce);
    let err = verify_snp(azure("snp-milan-evidence-v0.json"), &[0; 65]).expect_err("long");
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
}

#[test]
fn runtime_claims_changed_by_one_byte_are_refused() {
    // Byte 1236 + 20 is inside the runtime claims JSON ("kid" of the first key).
    let json = edited("snp-milan-evidence-v0.json", |v| {
        byte_list(&mut v["report"], 1236 + 10, |b| *b ^= 0x01)
    });
    let err = verify_snp(json, CHALLENGE).expect_err("changed claims");
    assert!(
        matches!(err, VerifyError::RuntimeClaimsMismatch { .. }),
        "{err}"
    );
}

#[test]
fn the_unsigned_header_never_chooses_the_report_type() {
    let json = edited("snp-milan-evidence-v0.json", |v| {
        byte_list(&mut v["report"], 1224, |b| *b = 4)
    });
    let err = verify_snp(json, CHALLENGE).expect_err("header says TDX");
    assert_eq!(
        err,
        VerifyError::HclReportType {
            expected: 2,
            found: 4
        }
    );
    // TDX evidence offered as SEV-SNP: the header disagrees with what the verifier expects.
    let err = verify_snp(azure("tdx-evidence-v1.json"), CHALLENGE).expect_err("tdx as snp");
    assert!(matches!(err, VerifyError::HclReportType { .. }), "{err}");
}

#[test]
fn a_flipped_quote_or_signature_is_refused() {
    // The last byte of the message is in pcrDigest; the first of the signature anywhere.
    let json = edited("snp-milan-evidence-v0.json", |v| {
        byte_list(&mut v["quote"]["message"], 121, |b| *b ^= 0x01)
    });
    let err = verify_snp(json, CHALLENGE).expect_err("flipped message");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::BadSignature)),
        "{err}"
    );
    let json = edited("snp-milan-evidence-v0.json", |v| {
        byte_list(&mut v["quote"]["signature"], 0, |b| *b ^= 0x01)
    });
    let err = verify_snp(json, CHALLENGE).expect_err("flipped signature");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::BadSignature)),
        "{err}"
    );
    let json = edited("snp-milan-evidence-v0.json", |v| {
        byte_list(&mut v["quote"]["message"], 0, |b| *b ^= 0x01)
    });
    let err = verify_snp(json, CHALLENGE).expect_err("magic");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::BadMagic { .. })),
        "{err}"
    );
}

#[test]
fn pcr_values_moved_between_slots_are_refused() {
    let json = edited("snp-milan-evidence-v0.json", |v| {
        let pcrs = v["quote"]["pcrs"].as_array_mut().expect("pcrs");
        pcrs.swap(4, 7);
    });
    let err = verify_snp(json, CHALLENGE).expect_err("swapped");
    assert_eq!(err, VerifyError::Tpm(QuoteError::PcrDigestMismatch));
    let json = edited("snp-milan-evidence-v0.json", |v| {
        v["quote"]["pcrs"].as_array_mut().expect("pcrs").pop();
    });
    let err = verify_snp(json, CHALLENGE).expect_err("23 values");
    assert!(
        matches!(err, VerifyError::Tpm(QuoteError::PcrValues { .. })),
        "{err}"
    );

    // A genuinely signed quote over another selection: PCRs 1..23 and 0 reordered into the
    // SHA-1 bank's slot, with values that hash right for that selection.
    let (ak, platform) = (test_ak(), PlatformKey::from_seed(&[3; 32]));
    for selection in [
        vec![(0x000b, vec![0xfe, 0xff, 0xff])],
        vec![
            (0x000b, vec![0xff, 0xff, 0x7f]),
            (0x0004, vec![0x00, 0x00, 0x80]),
        ],
        vec![(0x000c, vec![0xff, 0xff, 0xff])],
        vec![(0x000b, vec![0xff, 0xff, 0xff, 0x01])],
    ] {
        let mut vtpm = SimVtpm::new(&ak, &platform);
        vtpm.selection = selection;
        let err = vtpm.verify().expect_err("partial selection");
        assert!(
            matches!(err, VerifyError::Tpm(QuoteError::PcrSelection { .. })),
            "{err}"
        );
    }
}

#[test]
fn the_attestation_key_is_taken_by_kid_not_by_position() {
    let (ak, attacker, platform) = (test_ak(), attacker_ak(), PlatformKey::from_seed(&[3; 32]));
    // The genuine layout, with the EK before the AK: verifies.
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.extra_keys_first = vec![jwk("HCLEkPub", &attacker)];
    let claims = vtpm.verify().expect("AK found by kid");
    assert_eq!(claims.tee, Tee::SimVtpm);
    // A second key placed first signs the quote: refused, the quote is checked with HCLAkPub.
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.extra_keys_first = vec![jwk("HCLEkPub", &attacker)];
    vtpm.quote_signer = Some(attacker.clone());
    let err = vtpm.verify().expect_err("signed by the first key");
    assert_eq!(err, VerifyError::Tpm(QuoteError::BadSignature));
    // Two keys claiming to be the AK, or none.
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.extra_keys_first = vec![jwk("HCLAkPub", &attacker)];
    let err = vtpm.verify().expect_err("two AKs");
    assert!(matches!(err, VerifyError::AttestationKey { .. }), "{err}");
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.ak_kid = "HCLAkPub2".into();
    let err = vtpm.verify().expect_err("no AK");
    assert!(matches!(err, VerifyError::AttestationKey { .. }), "{err}");
}

#[test]
fn version_2_user_data_must_start_with_the_nonce() {
    let (ak, platform) = (test_ak(), PlatformKey::from_seed(&[3; 32]));
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.user_data = vec![0; 64];
    let err = vtpm.verify().expect_err("stale user data");
    assert!(matches!(err, VerifyError::UserDataMismatch { .. }), "{err}");
    // Version 1 makes no such promise.
    let mut vtpm = SimVtpm::new(&ak, &platform);
    vtpm.user_data = vec![0; 64];
    vtpm.version = 1;
    vtpm.verify().expect("v1 evidence with other user data");
}

#[test]
fn sim_vtpm_needs_a_registered_platform_key() {
    let (ak, platform) = (test_ak(), PlatformKey::from_seed(&[3; 32]));
    let vtpm = SimVtpm::new(&ak, &platform);
    let err = Verifier::new()
        .verify(
            &Evidence::new(Tee::SimVtpm, vtpm.build_parts().json()),
            &VerifyOptions::now().with_nonce(&vtpm.nonce),
        )
        .expect_err("unregistered");
    assert!(
        matches!(err, VerifyError::UnknownPlatformKey { .. }),
        "{err}"
    );
}

#[test]
fn binding_requires_both_the_nonce_and_the_user_data() {
    let (ak, platform) = (test_ak(), PlatformKey::from_seed(&[3; 32]));
    let vtpm = SimVtpm::new(&ak, &platform);
    let claims = vtpm.verify().expect("verifies");
    let binding: [u8; 64] = vtpm.nonce.clone().try_into().expect("64 bytes");
    cipherlake_attest::verify_binding(&claims, &binding).expect("bound");
    let mut other = binding;
    other[63] ^= 1;
    assert!(cipherlake_attest::verify_binding(&claims, &other).is_err());
    // v1 evidence whose user data is stale verifies but does not bind.
    let mut stale = SimVtpm::new(&ak, &platform);
    stale.user_data = vec![0; 64];
    stale.version = 1;
    let claims = stale.verify().expect("v1 verifies");
    assert!(matches!(
        cipherlake_attest::verify_binding(&claims, &binding),
        Err(VerifyError::UserDataMismatch { .. })
    ));
}

#[test]
fn evidence_layouts_round_trip() {
    for name in [
        "snp-milan-evidence-v0.json",
        "snp-genoa-evidence-v0.json",
        "tdx-evidence-v1.json",
    ] {
        let parsed = VtpmEvidence::parse(&azure(name)).expect(name);
        let again = VtpmEvidence::parse(&parsed.to_json()).expect("v2");
        assert_eq!(again.version, 2);
        assert_eq!(
            VtpmEvidence {
                version: parsed.version,
                ..again
            },
            parsed
        );
    }
    let err = VtpmEvidence::parse(br#"{"version":3}"#).expect_err("v3");
    assert!(
        matches!(err, VerifyError::UnsupportedVersion { .. }),
        "{err}"
    );
}

// ---- sim-vtpm evidence signed by test keys ----

fn test_ak() -> rsa::PrivateKey {
    let pem = String::from_utf8(read(data("vtpm/ak.pem"))).expect("pem");
    rsa::PrivateKey::from_pkcs8_pem(&pem).expect("AK")
}

fn attacker_ak() -> rsa::PrivateKey {
    let pem = String::from_utf8(read(data("vtpm/attacker-ak.pem"))).expect("pem");
    rsa::PrivateKey::from_pkcs8_pem(&pem).expect("attacker AK")
}

fn modulus_exponent(key: &rsa::PrivateKey) -> (Vec<u8>, Vec<u8>) {
    use rsa::traits::PublicKeyParts as _;
    (
        key.n().to_be_bytes().to_vec(),
        key.e().to_be_bytes().to_vec(),
    )
}

fn jwk(kid: &str, key: &rsa::PrivateKey) -> serde_json::Value {
    use base64::Engine as _;
    let (n, e) = modulus_exponent(key);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::json!({"kid": kid, "kty": "RSA", "n": b64.encode(n), "e": b64.encode(e)})
}

/// A sim-vtpm evidence builder: every part can be changed before it is signed.
struct SimVtpm<'a> {
    ak: &'a rsa::PrivateKey,
    platform: &'a PlatformKey,
    nonce: Vec<u8>,
    user_data: Vec<u8>,
    version: u32,
    pcrs: Vec<[u8; 32]>,
    selection: Vec<(u16, Vec<u8>)>,
    extra_keys_first: Vec<serde_json::Value>,
    ak_kid: String,
    quote_signer: Option<rsa::PrivateKey>,
}

struct Parts {
    version: u32,
    message: Vec<u8>,
    signature: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    hcl: Vec<u8>,
    runtime_claims: Vec<u8>,
    td_quote: Option<Vec<u8>>,
}

impl Parts {
    fn json(&self) -> Vec<u8> {
        let json = VtpmEvidence {
            version: 2,
            quote_message: self.message.clone(),
            quote_signature: self.signature.clone(),
            pcrs: self.pcrs.clone(),
            hcl_report: self.hcl.clone(),
            vcek: None,
            td_quote: self.td_quote.clone(),
        }
        .to_json();
        let mut value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        value["version"] = self.version.into();
        serde_json::to_vec(&value).expect("json")
    }
}

impl<'a> SimVtpm<'a> {
    fn new(ak: &'a rsa::PrivateKey, platform: &'a PlatformKey) -> Self {
        let nonce: Vec<u8> = (0..64).collect();
        SimVtpm {
            ak,
            platform,
            user_data: nonce.clone(),
            nonce,
            version: 2,
            pcrs: (0..24).map(|i| [i as u8; 32]).collect(),
            selection: vec![(0x000b, vec![0xff, 0xff, 0xff])],
            extra_keys_first: Vec::new(),
            ak_kid: "HCLAkPub".into(),
            quote_signer: None,
        }
    }

    fn build_parts(&self) -> Parts {
        let (n, e) = modulus_exponent(self.ak);
        let mut doc: serde_json::Value = serde_json::from_slice(&runtime_claims::document(
            &n,
            &e,
            &serde_json::json!({"secure-boot": true}),
            &self.user_data,
        ))
        .expect("claims");
        doc["keys"][0]["kid"] = self.ak_kid.clone().into();
        let mut keys = self.extra_keys_first.clone();
        keys.extend(doc["keys"].as_array().cloned().unwrap_or_default());
        doc["keys"] = keys.into();
        let runtime_claims = serde_json::to_vec(&doc).expect("claims");
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&Sha256::digest(&runtime_claims));
        let sim = self
            .platform
            .sign_report([9; 48], report_data, 0, 1_700_000_000);
        let hcl = HclReport::build(ReportType::Sim, &sim, &runtime_claims).expect("hcl");
        let mut digest = Sha256::new();
        for pcr in &self.pcrs {
            digest.update(pcr);
        }
        let message = quote_message(&self.nonce, &self.selection, &digest.finalize());
        let signer = self.quote_signer.as_ref().unwrap_or(self.ak);
        let signature = rsa::pkcs1v15::SigningKey::<Sha256>::new(signer.clone())
            .sign(&message)
            .to_vec();
        Parts {
            version: self.version,
            message,
            signature,
            pcrs: self.pcrs.iter().map(|p| p.to_vec()).collect(),
            hcl,
            runtime_claims,
            td_quote: None,
        }
    }

    fn verify(&self) -> Result<Claims, VerifyError> {
        Verifier::new()
            .with_sim_platform_key(self.platform.public_key())
            .verify(
                &Evidence::new(Tee::SimVtpm, self.build_parts().json()),
                &VerifyOptions::now().with_nonce(&self.nonce),
            )
    }
}

/// A marshalled `TPMS_ATTEST` quote.
fn quote_message(nonce: &[u8], selection: &[(u16, Vec<u8>)], digest: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&0xff54_4347u32.to_be_bytes());
    m.extend_from_slice(&0x8018u16.to_be_bytes());
    m.extend_from_slice(&2u16.to_be_bytes());
    m.extend_from_slice(&[0x00, 0x0b]);
    m.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&[0; 17]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(selection.len() as u32).to_be_bytes());
    for (alg, bitmap) in selection {
        m.extend_from_slice(&alg.to_be_bytes());
        m.push(bitmap.len() as u8);
        m.extend_from_slice(bitmap);
    }
    m.extend_from_slice(&(digest.len() as u16).to_be_bytes());
    m.extend_from_slice(digest);
    m
}

#[test]
fn a_vcek_from_the_other_product_line_is_refused() {
    // Genoa evidence with the Milan sample's VCEK: the report's CPUID says Genoa.
    let milan = VtpmEvidence::parse(&azure("snp-milan-evidence-v0.json")).expect("milan");
    let collateral =
        cipherlake_attest::snp::SnpCollateral::new(milan.vcek.as_deref().expect("vcek"), None)
            .expect("vcek");
    let nonce = hex::decode(GENOA_NONCE).expect("hex");
    let err = Verifier::new()
        .verify(
            &Evidence::new(Tee::AzureSnpVtpm, azure("snp-genoa-evidence-v0.json")).with_collateral(
                cipherlake_attest::Collateral::Snp(std::sync::Arc::new(collateral)),
            ),
            &VerifyOptions::now().with_nonce(&nonce),
        )
        .expect_err("Milan VCEK for a Genoa report");
    assert_eq!(
        err,
        VerifyError::ProductMismatch {
            report: "Genoa".into(),
            certificate: "Milan".into()
        }
    );
}

#[test]
fn an_expired_vcek_is_refused() {
    let err = Verifier::new()
        .verify(
            &Evidence::new(Tee::AzureSnpVtpm, azure("snp-milan-evidence-v0.json")),
            &VerifyOptions::at(at("2033-01-01T00:00:00Z")).with_nonce(CHALLENGE),
        )
        .expect_err("VCEK expired in 2032");
    assert!(
        matches!(err, VerifyError::CollateralExpired { .. }),
        "{err}"
    );
}
