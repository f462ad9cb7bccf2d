//! Azure Attestation token parsing and verification against a JWKS with an `n`/`e` key.
#![no_main]

use std::sync::OnceLock;

use cipherlake_attest::maa::{MaaTrust, verify_token};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kid":"k","kty":"RSA","e":"AQAB","n":"sfYLlVEMNVA0QUZ_-kbvGZLEExHqF0ZClsCAnU93moyrd3LFASucrrt7uBW1xGpAZgEzXZ0R-IOjPe8BmGTmnMCLf_iNlzwiIc-EFSSnE7n1V4R1IlHpDE4tBmMaYK8QN5zjpmuI9MzZLrbepy6RlHG8w1v4sFlanAxTvcLuVqs3yzTDTysQbDSTrPe4b0wLuiUI5qbaqbYZjdgwsw7TM1i12cBZa2U1X3Dg0U0CqPNi6D5I_E2D_rytTAG2eqZ0gD8oJstuhhNBNRYjq54qCbsTql4-r_AL5LexxGPzJdYbvoiWh2wmNt-U2YBKab3aBTrOKRKvcTB1kUjX4rrNAw"}]}"#;

fn trust() -> Option<&'static MaaTrust> {
    static TRUST: OnceLock<Option<MaaTrust>> = OnceLock::new();
    TRUST
        .get_or_init(|| MaaTrust::new(JWKS.as_bytes(), "https://issuer").ok())
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Some(trust) = trust() {
        let _ = verify_token(data, trust, 1_751_328_000);
    }
    let _ = MaaTrust::new(data, "https://issuer");
});
