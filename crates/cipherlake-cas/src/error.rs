//! Errors of the CAS. Messages never contain secret values.

/// An error of a CAS operation, with the HTTP status it maps to in [`crate::server`].
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// The request is malformed (body, encoding, CSR, evidence format).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller did not authenticate (missing or invalid credentials).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The caller is authenticated but not allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An attestation was refused; every reason, as `code: message`.
    #[error("attestation denied: {}", .0.join("; "))]
    Denied(Vec<String>),
    /// No such policy or object.
    #[error("not found: {0}")]
    NotFound(String),
    /// A policy update names a predecessor that is not the current version.
    #[error("{message}")]
    Stale {
        /// The full message (names both hashes).
        message: String,
        /// The current version's hash.
        current: String,
        /// The predecessor the update named (`null` for none).
        found: Option<String>,
    },
    /// The request conflicts with the state (e.g. a secret without a value yet).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The embedded database failed.
    #[error("storage error: {0}")]
    Store(#[from] rusqlite::Error),
    /// A file of the data directory could not be read or written.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error (part of the message, not a separate cause, so that error chains do
        /// not print it twice).
        error: std::io::Error,
    },
    /// An internal cryptographic operation failed (never carries key material).
    #[error("internal cryptographic error: {0}")]
    Crypto(String),
    /// The CAS cannot do this in its configuration (e.g. it has no attester for its own
    /// evidence).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The CAS's own state was changed behind its back (a database edited by hand, rows
    /// deleted, replayed or added): the table and row are named.
    #[error("CAS state tampered with: {0}")]
    Tampered(String),
    /// A call to the CAS failed (client side).
    #[error("CAS request failed: {0}")]
    Http(String),
}

impl CasError {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CasError {
        let context = context.into();
        move |error| CasError::Io { context, error }
    }

    /// A short machine code for the error, used in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            CasError::BadRequest(_) => "bad-request",
            CasError::Unauthorized(_) => "unauthorized",
            CasError::Forbidden(_) => "forbidden",
            CasError::Denied(_) => "attestation-denied",
            CasError::NotFound(_) => "not-found",
            CasError::Stale { .. } => "stale-predecessor",
            CasError::Conflict(_) => "conflict",
            CasError::Unavailable(_) => "unavailable",
            CasError::Store(_) | CasError::Io { .. } | CasError::Crypto(_) => "internal",
            CasError::Tampered(_) => "tampered",
            CasError::Http(_) => "http",
        }
    }
}
