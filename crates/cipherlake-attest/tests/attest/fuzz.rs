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
