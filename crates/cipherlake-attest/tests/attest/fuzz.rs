//! Parsers never panic: thousands of deterministic mutations (truncations, byte flips,
//! insertions, random bytes) of real inputs through every parser and verifier entry point.
//! The cargo-fuzz targets in `fuzz/` explore the same entry points without bounds.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cipherlake_attest::dcap::{DcapCollateral, quote_tee, verify_quote};
use cipherlake_attest::encoding::decode_binary_or_hex;
use cipherlake_attest::maa::{MaaTrust, verify_token};
use cipherlake_attest::sim::{PlatformKey, PlatformKeys, SimReport, verify_report};
use cipherlake_attest::snp::{SnpCollateral, SnpReport};

use super::common::*;

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The `i`th mutation of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    match rng.below(5) {
        0 => out.truncate(rng.below(seed.len() + 1)),
        1 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(out.len());
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let i = rng.below(out.len() + 1);
            let extra: Vec<u8> = (0..rng.below(16) + 1).map(|_| rng.next() as u8).collect();
            out.splice(i..i, extra);
        }
        3 => {
            let len = rng.below(seed.len() * 2 + 8);
            out = (0..len).map(|_| rng.next() as u8).collect();
        }
        _ => {
            // Overwrite a run with a boundary value (0x00, 0xff, 0x7f, 0x80).
            let start = rng.below(out.len());
            let end = (start + rng.below(9)).min(out.len());
            let value = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            out[start..end].fill(value);
        }
    }
    out
}

/// Runs `target` on `iterations` mutations of each seed; fails naming the input that panicked.
fn fuzz(name: &str, seeds: &[Vec<u8>], iterations: usize, target: impl Fn(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed);
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!(
                "{name}: iteration {i} panicked on input {}",
                hex::encode(&input)
            );
        }
    }
}

fn quotes() -> Vec<Vec<u8>> {
    ["sgx/sgx_quote", "tdx/tdx_quote", "tdx/tdx_quote_outdated"]
        .iter()
        .map(|p| read(fixture(p)))
        .collect()
}

#[test]
fn quote_parser_never_panics() {
    fuzz("quote", &quotes(), 4000, |input| {
        let _ = quote_tee(input);
    });
}

#[test]
fn quote_verifier_never_panics() {
    // Full verification is slow in debug builds: fewer, deeper iterations.
    let collateral =
        DcapCollateral::from_json(&read(fixture("sgx/sgx_quote_collateral.json"))).expect("parses");
    fuzz("quote-verify", &quotes()[..1], 60, |input| {
        let _ = verify_quote(input, &collateral, july_2025());
    });
}

#[test]
fn collateral_parsers_never_panic() {
    let dcap = read(fixture("tdx/tdx_quote_collateral.json"));
    fuzz("dcap-collateral", &[dcap], 2000, |input| {
        let _ = DcapCollateral::from_json(input);
    });
    let vcek = read(fixture("snp/vcek_milan.der"));
    let chain = read(fixture("snp/cert_chain_milan"));
    fuzz("snp-collateral", &[vcek, chain.clone()], 2000, |input| {
        let _ = SnpCollateral::new(input, None);
        let _ = SnpCollateral::new(&read(fixture("snp/vcek_milan.der")), Some(input));
    });
}

#[test]
fn snp_report_parser_never_panics() {
    fuzz("snp-report", &[snp_report()], 4000, |input| {
        let _ = SnpReport::parse(input);
    });
    // Through the verifier too, with valid collateral.
    let collateral = Arc::new(
        SnpCollateral::new(
            &read(fixture("snp/vcek_milan.der")),
            Some(&read(fixture("snp/cert_chain_milan"))),
        )
        .expect("collateral"),
    );
    fuzz("snp-verify", &[snp_report()], 40, |input| {
        let _ = cipherlake_attest::snp::verify_report(
            input,
            &collateral,
            &cipherlake_attest::snp::SnpTrust::default(),
            july_2025(),
        );
    });
}

#[test]
fn sim_report_parser_never_panics() {
    let key = PlatformKey::from_seed(&[5; 32]);
    let mut keys = PlatformKeys::default();
    keys.insert(key.public_key());
    let seed = key.sign_report([1; 48], [2; 64], 0, 0);
    fuzz("sim-report", &[seed], 4000, |input| {
        let _ = SimReport::parse(input);
        let _ = verify_report(input, &keys);
    });
}

#[test]
fn token_parser_never_panics() {
    let trust = MaaTrust::new(&super::maa::jwks(), super::maa::ISSUER).expect("trust");
    let token = super::maa::sign(
        &super::maa::header(),
        &super::maa::sgx_payload(),
        "maa_key.pem",
    );
    fuzz("token", &[token.into_bytes()], 3000, |input| {
        let _ = verify_token(input, &trust, super::maa::NOW);
    });
    fuzz("jwks", &[super::maa::jwks()], 1000, |input| {
        let _ = MaaTrust::new(input, "https://issuer");
    });
}

#[test]
fn input_decoding_never_panics() {
    let seeds = vec![read(fixture("snp/report_milan.hex")), b"0xABCD".to_vec()];
    fuzz("decode", &seeds, 2000, |input| {
        let _ = decode_binary_or_hex(input);
    });
}

fn azure_samples() -> Vec<Vec<u8>> {
    [
        "azure-vtpm/snp-milan-evidence-v0.json",
        "azure-vtpm/snp-genoa-evidence-v0.json",
        "azure-vtpm/tdx-evidence-v1.json",
    ]
    .iter()
    .map(|p| read(fixture(p)))
    .collect()
}

#[test]
fn vtpm_parsers_never_panic() {
    use cipherlake_attest::tpm::quote::QuoteInfo;
    use cipherlake_attest::vtpm::{HclReport, ReportType, RuntimeClaims, VtpmEvidence};
    let parsed: Vec<VtpmEvidence> = azure_samples()
        .iter()
        .map(|json| VtpmEvidence::parse(json).expect("sample"))
        .collect();
    fuzz("vtpm-json", &azure_samples(), 1500, |input| {
        let _ = VtpmEvidence::parse(input);
    });
    let messages: Vec<Vec<u8>> = parsed.iter().map(|e| e.quote_message.clone()).collect();
    fuzz("tpm-quote", &messages, 4000, |input| {
        if let Ok(info) = QuoteInfo::parse(input) {
            let _ = info.check_pcr_values(&vec![vec![0; 32]; 24]);
        }
    });
    let hcl: Vec<Vec<u8>> = parsed.iter().map(|e| e.hcl_report.clone()).collect();
    fuzz("hcl-report", &hcl, 4000, |input| {
        for kind in [ReportType::Snp, ReportType::Tdx, ReportType::Sim] {
            let _ = HclReport::parse(input, kind);
        }
    });
    let claims: Vec<Vec<u8>> = parsed
        .iter()
        .map(|e| {
            HclReport::parse(&e.hcl_report, ReportType::Snp)
                .or_else(|_| HclReport::parse(&e.hcl_report, ReportType::Tdx))
                .expect("hcl")
                .runtime_claims
                .to_vec()
        })
        .collect();
    fuzz("runtime-claims", &claims, 3000, |input| {
        let _ = RuntimeClaims::parse(input);
    });
}

#[test]
fn vtpm_verifier_never_panics() {
    use cipherlake_attest::{Evidence, Tee, Verifier, VerifyOptions};
    let verifier = Verifier::new();
    let options = VerifyOptions::now().with_nonce(b"challenge");
    let milan = azure_samples().remove(0);
    fuzz("vtpm-verify", &[milan], 60, |input| {
        let _ = verifier.verify(&Evidence::new(Tee::AzureSnpVtpm, input.to_vec()), &options);
    });
}

#[test]
fn amd_crl_parser_never_panics() {
    use cipherlake_attest::snp::AmdCrl;
    let seeds = ["crl-empty.der", "crl-revoking-ask.der"]
        .iter()
        .map(|name| read(data(&format!("snp-test-pki/{name}"))))
        .collect::<Vec<_>>();
    fuzz("amd-crl", &seeds, 3000, |input| {
        let _ = AmdCrl::parse(input);
    });
}

#[test]
fn sev_guest_parsers_never_panic() {
    use cipherlake_attest::attester::{parse_report_response, vek_from_cert_table};
    // A host table with the VCEK (GUID 63da758d-e664-4564-adc5-f4b93be8accd), then the
    // terminating all-zero entry, then the certificate.
    let vcek = read(data("snp-turin/vcek_turin.der"));
    let mut table = hex::decode("63da758de6644564adc5f4b93be8accd").expect("guid");
    table.extend_from_slice(&48u32.to_le_bytes());
    table.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&vcek);
    let report = snp_report();
    assert!(
        vek_from_cert_table(&table, &report)
            .expect("seed")
            .is_some()
    );
    fuzz("cert-table", &[table], 4000, |input| {
        let _ = vek_from_cert_table(input, &report);
    });
    let mut response = vec![0u8; 32];
    response[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
    response.extend_from_slice(&report);
    response.resize(4000, 0);
    assert!(parse_report_response(&response).is_ok());
    fuzz("report-response", &[response], 3000, |input| {
        let _ = parse_report_response(input);
    });
}
