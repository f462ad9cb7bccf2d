//! Integration tests of cipherlake-attest: real fixtures, attacks on every check, the LAS end
//! to end, attesters against fake directory trees, and parsers under mutated input.

mod attest {
    pub mod common;

    mod attester;
    mod dcap;
    mod fuzz;
    mod las;
    mod maa;
    mod sim;
    mod snp;
    mod tpm;
    mod vtpm;
}
