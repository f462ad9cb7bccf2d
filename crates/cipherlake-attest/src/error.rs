//! Why evidence was refused.

use crate::Tee;

/// A reason to refuse evidence. Each variant is a distinct failure class, so callers (and the
/// audit log) can tell a forged signature from stale collateral.
///
/// An outdated TCB or debug mode is *not* an error: see [`crate::Claims::tcb_status`] and
/// [`crate::Claims::debug`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The evidence is not well formed.
    #[error("malformed {what} at byte {offset}: {reason}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Collateral, a certificate chain, a key set or a token part could not be parsed.
    #[error("malformed {what}: {reason}")]
    MalformedCollateral {
        /// Which input.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The evidence format version is not supported.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The evidence is of another TEE than the caller asked to verify.
    #[error("evidence is {found} evidence, expected {expected}")]
    WrongTee {
        /// What the caller asked for.
        expected: Tee,
        /// What the evidence is.
        found: Tee,
    },
    /// Verification needs collateral that was not supplied.
    #[error("missing collateral: {what}")]
    MissingCollateral {
        /// What is missing.
        what: &'static str,
    },
    /// A signature over the evidence or its collateral does not verify.
    #[error("bad signature over {what}")]
    BadSignature {
        /// What was signed.
        what: String,
    },
    /// A certificate in a chain is malformed or not signed by its issuer.
    #[error("bad certificate in the {what} chain: {reason}")]
    BadCertificate {
        /// Which chain.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A chain does not end in the vendor's root (Intel SGX Root CA, AMD ARK).
    #[error("the {what} chain is not rooted in the vendor root: {reason}")]
    UntrustedRoot {
        /// Which chain.
        what: String,
        /// Why.
        reason: String,
    },
    /// The VCEK/VLEK is issued by the wrong kind of AMD key (a VLEK by an ASK, a VCEK by an
    /// ASVK).
    #[error("SEV-SNP signing key: {reason}")]
    VekIssuer {
        /// What issued what.
        reason: String,
    },
    /// The report names another processor generation than its certificate's.
    #[error("the SEV-SNP report is from a {report} part, its certificate from {certificate}")]
    ProductMismatch {
        /// The product the report's CPUID names.
        report: String,
        /// The product whose key issued the certificate.
        certificate: String,
    },
    /// A certificate or the platform TCB is revoked.
    #[error("revoked: {what}")]
    Revoked {
        /// What is revoked.
        what: String,
    },
    /// Collateral (a certificate, CRL, TCB info, QE identity) has expired at the verification time.
    #[error("collateral expired: {what} (verification time {at})")]
    CollateralExpired {
        /// What expired, and when.
        what: String,
        /// Verification time, RFC 3339.
        at: String,
    },
    /// Collateral is not yet valid at the verification time.
    #[error("collateral not yet valid: {what} (verification time {at})")]
    CollateralNotYetValid {
        /// What is not yet valid, and from when.
        what: String,
        /// Verification time, RFC 3339.
        at: String,
    },
    /// The collateral belongs to another platform (FMSPC, TEE type, chip id or TCB differ).
    #[error("collateral is for another platform: {reason}")]
    PlatformMismatch {
        /// Which values differ.
        reason: String,
    },
    /// Sim: the report is signed by a platform key that is not registered.
    #[error("unknown platform key {platform_id}")]
    UnknownPlatformKey {
        /// The report's platform id (public key), hex.
        platform_id: String,
    },
    /// Azure: the token names a signing key that is not in the pinned JWKS.
    #[error("token signed by unknown key id {kid:?}")]
    UnknownKeyId {
        /// The `kid` from the token header.
        kid: String,
    },
    /// Azure: the token's algorithm is not RS256 (for example `none`).
    #[error("unsupported token algorithm {alg:?} (only RS256 is accepted)")]
    UnsupportedAlgorithm {
        /// The `alg` from the token header.
        alg: String,
    },
    /// Azure: the token was issued by another attestation provider.
    #[error("token issuer {found:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The pinned issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// Azure: the token expired (`exp`).
    #[error("token expired at {exp} (verification time {at})")]
    TokenExpired {
        /// Expiry, RFC 3339.
        exp: String,
        /// Verification time, RFC 3339.
        at: String,
    },
    /// Azure: the token is not yet valid (`nbf`).
    #[error("token not valid before {nbf} (verification time {at})")]
    TokenNotYetValid {
        /// Not-before, RFC 3339.
        nbf: String,
        /// Verification time, RFC 3339.
        at: String,
    },
    /// Azure: a claim the mapping needs is missing or has the wrong type.
    #[error("token claim {name} is missing or invalid")]
    MissingClaim {
        /// The claim name.
        name: String,
    },
    /// The report data does not match what the relying party expected (binding check).
    #[error("report data does not match the expected value")]
    ReportDataMismatch,
    /// A verification time could not be parsed.
    #[error("invalid time {value:?}: {reason}")]
    InvalidTime {
        /// The input.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A TPM quote check failed.
    #[error(transparent)]
    Tpm(#[from] crate::tpm::quote::QuoteError),
    /// The HCL report's header names another hardware report type than expected.
    #[error("the HCL report's header says report type {found}, expected {expected}")]
    HclReportType {
        /// The type the verifier expects.
        expected: u32,
        /// The type the header names.
        found: u32,
    },
    /// SHA-256 of the runtime claims is not what the verified hardware report binds.
    #[error(
        "the runtime claims hash to {runtime_claims}, but the verified hardware report binds {report_data}"
    )]
    RuntimeClaimsMismatch {
        /// SHA-256 of the runtime claims, hex.
        runtime_claims: String,
        /// The hardware report's report data [0..32], hex.
        report_data: String,
    },
    /// The runtime claims carry no usable attestation key.
    #[error("attestation key: {reason}")]
    AttestationKey {
        /// Why it is missing or unusable.
        reason: String,
    },
    /// The runtime claims' user data does not start with the nonce: the HCL report was made
    /// for an earlier request.
    #[error(
        "the HCL report's user-data {user_data} does not start with the nonce (a stale report)"
    )]
    UserDataMismatch {
        /// The user data found, hex.
        user_data: String,
    },
    /// vTPM evidence needs the nonce its TPM quote must carry.
    #[error("vTPM evidence is verified against a nonce; none was given")]
    MissingNonce,
    /// The DCAP verifier refused the quote for a reason not classified above.
    #[error("quote rejected: {reason}")]
    QuoteRejected {
        /// The verifier's reason.
        reason: String,
    },
}

impl VerifyError {
    /// Shorthand for [`VerifyError::Malformed`].
    pub(crate) fn malformed(what: &'static str, offset: usize, reason: impl Into<String>) -> Self {
        VerifyError::Malformed {
            what,
            offset,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`VerifyError::MalformedCollateral`].
    pub(crate) fn collateral(what: impl Into<String>, reason: impl ToString) -> Self {
        VerifyError::MalformedCollateral {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
