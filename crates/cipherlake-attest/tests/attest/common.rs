//! Fixture paths, byte surgery and fake certificate authorities shared by the tests.

use std::path::PathBuf;
use std::sync::Arc;

use cipherlake_attest::dcap::DcapCollateral;
use cipherlake_attest::encoding::decode_binary_or_hex;
use cipherlake_attest::snp::SnpCollateral;
use cipherlake_attest::{Collateral, Evidence, Tee};

/// The shared evidence fixtures (beside the repository clone).
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/evidence")
        .join(rel)
}

/// This crate's own test data.
pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Reads a file, failing the test with its path.
pub fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unix seconds of an RFC 3339 time.
pub fn at(rfc3339: &str) -> u64 {
    cipherlake_attest::time::parse_rfc3339(rfc3339).expect("test time")
}

/// Verification time inside the 2025 SGX/TDX collateral's validity.
pub fn july_2025() -> u64 {
    at("2025-07-01T00:00:00Z")
}

/// Returns `bytes` with byte `offset` flipped.
pub fn flip(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] ^= 0x01;
    out
}

/// The collateral JSON of a DCAP fixture, as a JSON value to tamper with.
pub fn dcap_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(fixture(rel))).expect("collateral JSON")
}

/// Parses DCAP collateral from a JSON value.
pub fn dcap_collateral(json: &serde_json::Value) -> Collateral {
    let bytes = serde_json::to_vec(json).expect("serialise");
    Collateral::Dcap(Arc::new(
        DcapCollateral::from_json(&bytes).expect("collateral parses"),
    ))
}

/// A DCAP fixture quote with its collateral.
pub fn dcap_evidence(tee: Tee, quote: &str, collateral: &str) -> Evidence {
    Evidence::new(tee, read(fixture(quote)))
        .with_collateral(dcap_collateral(&dcap_json(collateral)))
}

/// The Milan SNP report fixture.
pub fn snp_report() -> Vec<u8> {
    decode_binary_or_hex(&read(fixture("snp/report_milan.hex")))
}

/// SNP collateral from a VCEK and an optional chain.
pub fn snp_collateral(vcek: &[u8], chain: Option<&[u8]>) -> Collateral {
    Collateral::Snp(Arc::new(
        SnpCollateral::new(vcek, chain).expect("SNP collateral parses"),
    ))
}

/// The Milan fixture's collateral.
pub fn milan_collateral() -> Collateral {
    snp_collateral(
        &read(fixture("snp/vcek_milan.der")),
        Some(&read(fixture("snp/cert_chain_milan"))),
    )
}

/// A self-signed CA and a leaf it issued, both ECDSA P-256, as a PEM chain (leaf first).
pub fn fake_chain_pem(root_cn: &str, leaf_cn: &str) -> String {
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut root_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, root_cn);
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).expect("root");
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut leaf_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, leaf_cn);
    let leaf = leaf_params.signed_by(&leaf_key, &root).expect("leaf");
    format!("{}{}", leaf.pem(), root.pem())
}

/// Flips a bit in the DER of the `index`th PEM certificate in `pem`, `from_end` bytes before
/// the end of its DER (the signature lives at the end), and re-encodes the PEM.
pub fn flip_in_pem_cert(pem: &str, index: usize, from_end: usize) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for (i, block) in pem.split_inclusive("-----END CERTIFICATE-----").enumerate() {
        let Some(start) = block.find("-----BEGIN CERTIFICATE-----") else {
            out.push_str(block);
            continue;
        };
        if i != index {
            out.push_str(block);
            continue;
        }
        let body: String = block[start + 27..block.len() - 25]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM base64");
        let at = der.len() - from_end;
        der[at] ^= 0x01;
        out.push_str(&block[..start]);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----");
    }
    out
}
