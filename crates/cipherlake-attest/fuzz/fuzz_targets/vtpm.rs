//! vTPM evidence JSON, through the whole Azure SEV-SNP verification path.
#![no_main]

use cipherlake_attest::{Evidence, Tee, Verifier, VerifyOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = VerifyOptions::at(1_800_000_000).with_nonce(b"challenge");
    let _ = Verifier::new().verify(&Evidence::new(Tee::AzureSnpVtpm, data.to_vec()), &options);
});
