//! TPM 2.0 in pure Rust: the quote structure verifiers check ([`quote`]) and, for attesters,
//! the few commands cipherlake sends (NV read/write, quote, PCR read, read public) over
//! `/dev/tpmrm0` or swtpm's TCP socket ([`device`]).

pub mod device;
pub mod quote;
pub mod seal;
pub(crate) mod wire;
