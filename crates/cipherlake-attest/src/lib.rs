//! TEE evidence for cipherlake.
//!
//! * **Verifiers** turn evidence into normalised [`Claims`] or refuse it with a precise
//!   [`VerifyError`]: Intel SGX and TDX DCAP quotes ([`dcap`], offline collateral), AMD SEV-SNP
//!   attestation reports ([`snp`], VCEK/VLEK chain to AMD's built-in roots), Azure Attestation
//!   tokens ([`maa`], pinned JWKS) and simulated reports signed by a LAS platform key ([`sim`]).
//!   [`Verifier::verify`] dispatches on the evidence's TEE.
//! * **Attesters** ([`attester`]) collect evidence binding 64 bytes of report data: Linux
//!   configfs-tsm (SEV-SNP and TDX guests), Gramine's `/dev/attestation` (SGX) and the LAS.
//! * **The LAS** ([`las`]), the node agent of simulation mode: it measures the calling process
//!   itself (SO_PEERCRED, `/proc/PID/exe`) and signs a [`sim`] report with its platform key.
//!
//! Outdated TCB and debug mode are not verification errors: they are reported in the claims
//! ([`Claims::tcb_status`], [`Claims::debug`]) for the policy layer to decide.

pub mod attester;
pub mod claims;
pub mod dcap;
pub mod encoding;
pub mod error;
pub mod evidence;
pub mod las;
pub mod maa;
pub mod sim;
pub mod snp;
pub mod time;
pub mod tpm;
pub mod vtpm;

pub use claims::{
    Claims, CollateralClaims, SgxClaims, SnpClaims, SnpPolicy, SnpTcb, TcbStatus, TdxClaims, Tee,
    VtpmClaims,
};
pub use error::VerifyError;
pub use evidence::{Collateral, Evidence, Verifier, VerifyOptions, verify_binding};
