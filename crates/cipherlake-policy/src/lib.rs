//! cipherlake policies: what the data custodian allows, in a form the CAS can enforce.
//!
//! * [`Policy::parse`] reads the YAML (`apiVersion: cipherlake/v1`, schema in [`model`] and
//!   `docs/policy.md`), rejecting unknown fields, and validates it: parse errors and every
//!   validation issue name the field path and the line ([`PolicyError`]).
//! * [`Policy::hash`] identifies a version: SHA-256 of a canonical JSON form ([`hash`]),
//!   independent of formatting, key order and comments.
//! * [`sign`] and [`verify_update`] implement owner-signed versions with a predecessor chain
//!   ([`SignedPolicy`], [`UpdateError`]); [`OwnerSigningKey`] generates and stores owner keys;
//!   [`sign_read`] and [`verify_read`] authenticate an owner's read of the full document.
//! * [`evaluate`] checks attested [`cipherlake_attest::Claims`] and a [`Request`] against a
//!   service and returns a [`Decision`] with every failing [`Reason`].
//! * [`signed_request`]: requests of users and owners, signed over a CAS nonce and the
//!   request ([`verify_request`]); users are people, not services, and never attest.
//! * [`render`] substitutes secret values into a service's `env`, `args` and `files`
//!   ([`Rendered`]); [`check_import`] resolves secrets shared between policies.
//!
//! No I/O, no network, no clock: the CAS supplies texts, values and the time.

pub mod digest;
pub mod evaluate;
pub mod hash;
pub mod identity;
pub mod import;
pub mod keys;
pub mod keyword;
pub mod model;
mod names;
pub mod owner_read;
pub mod parse;
pub mod path;
pub mod policy;
pub mod render;
pub mod signed;
pub mod signed_request;
pub mod template;
pub mod validate;

pub use digest::{Digest, DigestAlgorithm};
pub use evaluate::{Decision, Intent, Reason, Request, evaluate, required_tolerances};
pub use hash::PolicyHash;
pub use identity::{Hex, MinSnpTcb, SgxIdentity, SnpIdentity, TdxIdentity, reported};
pub use import::{ImportError, check_import};
pub use keys::{KeyError, OwnerSigningKey, PublicKey};
pub use keyword::{Console, Keyword, KmsRight, Named, Operation, SecretKind, Tolerance};
pub use model::{
    Attestation, DatabasePin, Export, Import, KmsGrants, PolicySpec, RequiredColumn, SecretSpec,
    SecretText, Service, User,
};
pub use owner_read::{ReadError, read_message, sign_read, verify_read};
pub use parse::ParseError;
pub use path::{FieldPath, Location, Segment};
pub use policy::{Policy, PolicyError};
pub use render::{RenderError, Rendered, RenderedValue, SecretValue, SecretValues, render};
pub use signed::{Accepted, SignedPolicy, UpdateError, sign, signing_message, verify_update};
pub use signed_request::{
    RequestError, Signer, Target, Verified, request_message, sign_request, verify_request,
};
pub use template::TemplateError;
pub use validate::{Invalid, Issue, IssueKind};
