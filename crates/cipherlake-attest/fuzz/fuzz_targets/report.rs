//! SEV-SNP report and sim report parsing, and sim verification.
#![no_main]

use cipherlake_attest::sim::{PlatformKey, PlatformKeys, SimReport, verify_report};
use cipherlake_attest::snp::SnpReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SnpReport::parse(data);
    let _ = SimReport::parse(data);
    let mut keys = PlatformKeys::default();
    keys.insert(PlatformKey::from_seed(&[5; 32]).public_key());
    let _ = verify_report(data, &keys);
});
