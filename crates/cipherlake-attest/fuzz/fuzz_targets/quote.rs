//! DCAP quote parsing, then full verification against the SGX fixture's collateral.
#![no_main]

use std::sync::OnceLock;

use cipherlake_attest::dcap::{DcapCollateral, quote_tee, verify_quote};
use libfuzzer_sys::fuzz_target;

/// 2025-07-01T00:00:00Z, inside the fixture collateral's validity.
const AT: u64 = 1_751_328_000;

fn collateral() -> Option<&'static DcapCollateral> {
    static COLLATERAL: OnceLock<Option<DcapCollateral>> = OnceLock::new();
    COLLATERAL
        .get_or_init(|| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../../shared/fixtures/evidence/sgx/sgx_quote_collateral.json"
            );
            DcapCollateral::from_json(&std::fs::read(path).ok()?).ok()
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if quote_tee(data).is_ok()
        && let Some(collateral) = collateral()
    {
        let _ = verify_quote(data, collateral, AT);
    }
});
