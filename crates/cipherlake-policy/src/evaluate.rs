//! Evaluation: may this attested workload run as this service under this policy?
//!
//! Every check runs and every failure is reported, so a refused workload learns all it must fix
//! at once (and the audit log records all of it).

use std::fmt;

use cipherlake_attest::{Claims, TcbStatus, Tee};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::keys::PublicKey;
use crate::keyword::{Keyword, Operation, Tolerance};
use crate::model::Service;
use crate::policy::Policy;

/// What the workload asks for besides its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the attesting code says it does (bound into its evidence).
    pub intent: Intent,
    /// SHA-256 of the job file the workload will run (bound into its evidence), if any.
    pub job_hash: Option<[u8; 32]>,
}

/// What the attesting code binds into its evidence: the operation it performs, or a probe
/// (`cipherlake attest`: checks admission, receives no certificate and no KMS rights, and sees
/// released values only for a `debug: true` service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// The code performs this operation with what it receives.
    Perform(Operation),
    /// The code only checks whether it would be admitted.
    Probe,
}

impl Intent {
    /// The word bound into the report data and sent to the CAS (`run`, …, `probe`).
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Perform(operation) => operation.as_str(),
            Intent::Probe => "probe",
        }
    }

    /// Parses [`Intent::as_str`]'s words.
    pub fn parse(word: &str) -> Option<Self> {
        if word == "probe" {
            return Some(Intent::Probe);
        }
        <Operation as crate::keyword::Keyword>::parse(word).map(Intent::Perform)
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the workload may proceed (exactly when `reasons` is empty).
    pub allowed: bool,
    /// Every failed check.
    pub reasons: Vec<Reason>,
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The policy has no such service.
    UnknownService {
        /// The service asked for.
        service: String,
    },
    /// The evidence comes from a TEE the policy does not list (simulation included).
    TeeNotAllowed {
        /// The evidence's TEE.
        tee: Tee,
        /// The TEEs the policy lists.
        allowed: Vec<Tee>,
    },
    /// The code measurement is not among the service's measurements.
    MeasurementNotAllowed {
        /// The measurement, hex.
        measurement: String,
    },
    /// The signer is not among the service's signers (or the evidence has none).
    SignerNotAllowed {
        /// The signer, hex, if the evidence has one.
        signer: Option<String>,
    },
    /// The product id differs from the service's.
    ProductIdMismatch {
        /// The service's product id.
        expected: u16,
        /// The evidence's, if any.
        found: Option<u16>,
    },
    /// The security version is below the service's minimum (or absent).
    SvnTooLow {
        /// The minimum.
        minimum: u32,
        /// The evidence's, if any.
        found: Option<u32>,
    },
    /// A debug-mode TEE, and the policy does not tolerate `debug`.
    DebugNotTolerated,
    /// A TCB status that needs a tolerance the policy does not list.
    TcbNotTolerated {
        /// The platform's status.
        status: TcbStatus,
        /// The tolerance it needs.
        needs: Tolerance,
    },
    /// SGX or TDX evidence without a TCB verdict (collateral was not evaluated).
    TcbNotEvaluated {
        /// The evidence's TEE.
        tee: Tee,
    },
    /// A TEE identity field the service pins has another value (or the evidence lacks it).
    FieldMismatch {
        /// The field, as the policy names it (`tdx.rtmr1`, `sev_snp.host_data`, ...).
        field: String,
        /// The pinned value (or values), hex or a number.
        expected: String,
        /// The evidence's value, if it reports one.
        found: Option<String>,
    },
    /// A TEE version field is below the service's minimum (or the evidence lacks it).
    BelowMinimum {
        /// The field (`sev_snp.min_reported_tcb.microcode`, `sgx.min_config_svn`, ...).
        field: String,
        /// The minimum.
        minimum: String,
        /// The evidence's value, if it reports one.
        found: Option<String>,
    },
    /// The evidence was judged with collateral the policy considers too old: a lower TCB
    /// evaluation data number than its minimum, or issued longer ago than its maximum age.
    CollateralTooOld {
        /// What is too old, with both values.
        reason: String,
    },
    /// An SEV-SNP guest policy that allows a migration agent, not tolerated.
    MigrationAgentNotTolerated,
    /// A PCR the service pins has another value in the evidence (or the evidence has no PCRs).
    PcrMismatch {
        /// The PCR index.
        index: u8,
        /// The pinned value, hex.
        expected: String,
        /// The evidence's value, hex (none for evidence without PCRs).
        found: Option<String>,
    },
    /// Sim evidence from a LAS platform key the policy or service does not list.
    PlatformNotAllowed {
        /// The platform key, if the evidence names one.
        platform: Option<String>,
    },
    /// The evidence binds another operation than the one the service admits.
    OperationMismatch {
        /// The service.
        service: String,
        /// The operation it admits (none for a policy of the old model).
        admits: Option<Operation>,
        /// The operation the evidence binds.
        bound: Operation,
    },
    /// The service allow-lists jobs and the request names none.
    JobMissing,
    /// The job hash is not allow-listed for the service (or the service runs no job files).
    JobNotAllowed {
        /// The job hash, `sha256:HEX`.
        job: String,
    },
    /// The evidence is older than `attestation.max_evidence_age`.
    EvidenceTooOld {
        /// Its age in seconds.
        age: u64,
        /// The limit in seconds.
        max: u64,
    },
}

impl Reason {
    /// Every machine code, for pre-registering metrics labels.
    pub const CODES: &'static [&'static str] = &[
        "unknown-service",
        "tee-not-allowed",
        "measurement-not-allowed",
        "signer-not-allowed",
        "product-id-mismatch",
        "svn-too-low",
        "debug-not-tolerated",
        "tcb-outdated",
        "tcb-sw-hardening-needed",
        "tcb-configuration-needed",
        "tcb-not-evaluated",
        "platform-not-allowed",
        "operation-mismatch",
        "job-missing",
        "job-not-allowed",
        "evidence-too-old",
        "pcr-mismatch",
        "field-mismatch",
        "below-minimum",
        "migration-agent-not-tolerated",
        "collateral-too-old",
    ];

    /// A stable machine code (metrics label, API field).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::UnknownService { .. } => "unknown-service",
            Reason::TeeNotAllowed { .. } => "tee-not-allowed",
            Reason::MeasurementNotAllowed { .. } => "measurement-not-allowed",
            Reason::SignerNotAllowed { .. } => "signer-not-allowed",
            Reason::ProductIdMismatch { .. } => "product-id-mismatch",
            Reason::SvnTooLow { .. } => "svn-too-low",
            Reason::DebugNotTolerated => "debug-not-tolerated",
            Reason::TcbNotTolerated { needs, .. } => match needs {
                Tolerance::Debug => "debug-not-tolerated",
                Tolerance::OutdatedTcb => "tcb-outdated",
                Tolerance::SwHardeningNeeded => "tcb-sw-hardening-needed",
                Tolerance::ConfigurationNeeded => "tcb-configuration-needed",
                // Never required by a TCB status; their own reasons have their own codes.
                Tolerance::MigrationAgent => "migration-agent-not-tolerated",
                Tolerance::UnevaluatedTcb => "tcb-not-evaluated",
            },
            Reason::TcbNotEvaluated { .. } => "tcb-not-evaluated",
            Reason::PlatformNotAllowed { .. } => "platform-not-allowed",
            Reason::OperationMismatch { .. } => "operation-mismatch",
            Reason::JobMissing => "job-missing",
            Reason::JobNotAllowed { .. } => "job-not-allowed",
            Reason::EvidenceTooOld { .. } => "evidence-too-old",
            Reason::PcrMismatch { .. } => "pcr-mismatch",
            Reason::FieldMismatch { .. } => "field-mismatch",
            Reason::BelowMinimum { .. } => "below-minimum",
            Reason::MigrationAgentNotTolerated => "migration-agent-not-tolerated",
            Reason::CollateralTooOld { .. } => "collateral-too-old",
        }
    }
}

fn optional<T: fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "none".into())
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownService { service } => {
                write!(f, "the policy has no service {service:?}")
            }
            Reason::FieldMismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "{field} is {}, the service requires {expected}",
                optional(found)
            ),
            Reason::BelowMinimum {
                field,
                minimum,
                found,
            } => write!(
                f,
                "{field}: {} is below the minimum {minimum}",
                optional(found)
            ),
            Reason::CollateralTooOld { reason } => write!(f, "collateral too old: {reason}"),
            Reason::MigrationAgentNotTolerated => f.write_str(
                "the SEV-SNP guest policy allows a migration agent, and migration-agent is not tolerated",
            ),
            Reason::PcrMismatch {
                index,
                expected,
                found,
            } => write!(
                f,
                "PCR {index} is {}, the service requires {expected}",
                optional(found)
            ),
            Reason::TeeNotAllowed { tee: Tee::Sim, .. } => f.write_str(
                "simulation mode (no memory protection) is not accepted: the policy does not list sim",
            ),
            Reason::TeeNotAllowed { tee, allowed } => {
                let allowed: Vec<&str> = allowed.iter().map(|tee| tee.as_str()).collect();
                write!(
                    f,
                    "{tee} evidence is not accepted (the policy accepts {})",
                    allowed.join(", ")
                )
            }
            Reason::MeasurementNotAllowed { measurement } => {
                write!(f, "measurement {measurement} is not allowed for this service")
            }
            Reason::SignerNotAllowed { signer } => {
                write!(f, "signer {} is not allowed for this service", optional(signer))
            }
            Reason::ProductIdMismatch { expected, found } => write!(
                f,
                "product id {} does not match the required {expected}",
                optional(found)
            ),
            Reason::SvnTooLow { minimum, found } => write!(
                f,
                "security version {} is below the minimum {minimum}",
                optional(found)
            ),
            Reason::DebugNotTolerated => f.write_str(
                "the TEE runs in debug mode (the host can read its memory) and the policy does not tolerate debug",
            ),
            Reason::TcbNotTolerated { status, needs } => write!(
                f,
                "TCB status {} needs the tolerance {needs}, which the policy does not list",
                tcb_status_name(*status)
            ),
            Reason::TcbNotEvaluated {
                tee: tee @ (Tee::SevSnp | Tee::AzureSnpVtpm),
            } => write!(
                f,
                "{tee} evidence carries no TCB verdict: set sev_snp.min_reported_tcb, or tolerate unevaluated-tcb"
            ),
            Reason::TcbNotEvaluated { tee } => write!(
                f,
                "{tee} evidence without a TCB verdict (collateral not evaluated) is not accepted"
            ),
            Reason::PlatformNotAllowed { platform } => write!(
                f,
                "LAS platform {} is not allowed by the policy",
                optional(platform)
            ),
            Reason::OperationMismatch {
                service,
                admits,
                bound,
            } => match admits {
                Some(admits) => write!(
                    f,
                    "the evidence binds operation {bound}, but service {service:?} admits only {admits}"
                ),
                None => write!(
                    f,
                    "the evidence binds operation {bound}, but service {service:?} declares no operation (a policy of the old model: add `operation:`)"
                ),
            },
            Reason::JobMissing => {
                f.write_str("the service runs allow-listed job files only, and no job was named")
            }
            Reason::JobNotAllowed { job } => {
                write!(f, "job {job} is not allow-listed for this service")
            }
            Reason::EvidenceTooOld { age, max } => {
                write!(f, "the evidence is {age} s old, more than the allowed {max} s")
            }
        }
    }
}

impl Serialize for Reason {
    /// `{"code": "...", "message": "..."}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Reason", 2)?;
        out.serialize_field("code", self.code())?;
        out.serialize_field("message", &self.to_string())?;
        out.end()
    }
}

/// The kebab-case name of a TCB status, as in the claims' JSON.
fn tcb_status_name(status: TcbStatus) -> &'static str {
    match status {
        TcbStatus::UpToDate => "up-to-date",
        TcbStatus::SwHardeningNeeded => "sw-hardening-needed",
        TcbStatus::ConfigurationNeeded => "configuration-needed",
        TcbStatus::ConfigurationAndSwHardeningNeeded => "configuration-and-sw-hardening-needed",
        TcbStatus::OutOfDate => "out-of-date",
        TcbStatus::OutOfDateConfigurationNeeded => "out-of-date-configuration-needed",
        TcbStatus::TdRelaunchAdvised => "td-relaunch-advised",
        TcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
            "td-relaunch-advised-configuration-needed"
        }
        TcbStatus::NotEvaluated => "not-evaluated",
    }
}

/// The tolerances a TCB status needs. `NotEvaluated` needs none here; whether it is acceptable
/// depends on the TEE (see [`evaluate`]).
pub fn required_tolerances(status: TcbStatus) -> &'static [Tolerance] {
    match status {
        TcbStatus::UpToDate | TcbStatus::NotEvaluated => &[],
        TcbStatus::SwHardeningNeeded => &[Tolerance::SwHardeningNeeded],
        TcbStatus::ConfigurationNeeded => &[Tolerance::ConfigurationNeeded],
        TcbStatus::ConfigurationAndSwHardeningNeeded => {
            &[Tolerance::ConfigurationNeeded, Tolerance::SwHardeningNeeded]
        }
        TcbStatus::OutOfDate | TcbStatus::TdRelaunchAdvised => &[Tolerance::OutdatedTcb],
        TcbStatus::OutOfDateConfigurationNeeded
        | TcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
            &[Tolerance::OutdatedTcb, Tolerance::ConfigurationNeeded]
        }
    }
}

/// Evaluates attested `claims` and a `request` against `policy` for `service`, at `now` (unix
/// seconds). Every failing check adds a reason:
///
/// * the evidence's TEE must be listed (`sim` too);
/// * debug mode needs the `debug` tolerance;
/// * a TCB status other than up-to-date needs its tolerances ([`required_tolerances`]);
///   `not-evaluated` is accepted for sim (no TCB), azure (the attestation service applied its
///   own policy) and sev-snp (reports carry no verdict), and refused for sgx and tdx, whose
///   DCAP verification always yields one;
/// * sim evidence must come from a listed LAS platform when the policy or the service lists
///   platforms (each non-empty list must contain it);
/// * evidence with a timestamp must not be older than `attestation.max_evidence_age`;
/// * the service must exist; its measurements (if listed) must contain the measurement, its
///   signers (if listed) the signer; `product_id` must match and `min_svn` be reached;
/// * jobs: with allow-listed jobs the request must name one of them; without, it must name
///   none;
/// * the TEE identity fields the service pins (`sgx`, `tdx`, `sev_snp`, `pcrs`); SEV-SNP
///   evidence must come from VMPL 0 unless `sev_snp.vmpl` says otherwise, may not allow a
///   migration agent unless `migration-agent` is tolerated, and needs
///   `sev_snp.min_reported_tcb` or the `unevaluated-tcb` tolerance ([`crate::identity`]).
pub fn evaluate(
    policy: &Policy,
    service: &str,
    claims: &Claims,
    request: &Request,
    now: u64,
) -> Decision {
    let mut reasons = Vec::new();
    platform_checks(policy, claims, now, &mut reasons);
    let spec = policy.service(service);
    platform_key_check(policy, spec, claims, &mut reasons);
    match spec {
        None => reasons.push(Reason::UnknownService {
            service: service.to_string(),
        }),
        Some(spec) => {
            if let Intent::Perform(bound) = request.intent
                && spec.operation() != Some(bound)
            {
                reasons.push(Reason::OperationMismatch {
                    service: service.to_string(),
                    admits: spec.operation(),
                    bound,
                });
            }
            service_checks(spec, claims, request, &mut reasons);
            let identity = crate::identity::Identity {
                sgx: spec.sgx.as_ref(),
                tdx: spec.tdx.as_ref(),
                sev_snp: spec.sev_snp.as_ref(),
            };
            crate::identity::evaluate(identity, claims, &tolerated(policy), &mut reasons);
        }
    }
    Decision {
        allowed: reasons.is_empty(),
        reasons,
    }
}

/// The tolerances the policy lists.
fn tolerated(policy: &Policy) -> Vec<Tolerance> {
    policy
        .spec()
        .attestation
        .tolerate
        .iter()
        .filter_map(|t| t.known())
        .collect()
}

fn platform_checks(policy: &Policy, claims: &Claims, now: u64, reasons: &mut Vec<Reason>) {
    let attestation = &policy.spec().attestation;
    let allowed: Vec<Tee> = attestation.tees.iter().filter_map(|t| t.known()).collect();
    if !allowed.contains(&claims.tee) {
        reasons.push(Reason::TeeNotAllowed {
            tee: claims.tee,
            allowed,
        });
    }
    let tolerated = tolerated(policy);
    if claims.debug && !tolerated.contains(&Tolerance::Debug) {
        reasons.push(Reason::DebugNotTolerated);
    }
    for needs in required_tolerances(claims.tcb_status) {
        if !tolerated.contains(needs) {
            reasons.push(Reason::TcbNotTolerated {
                status: claims.tcb_status,
                needs: *needs,
            });
        }
    }
    if claims.tcb_status == TcbStatus::NotEvaluated
        && matches!(claims.tee, Tee::Sgx | Tee::Tdx | Tee::AzureTdxVtpm)
    {
        reasons.push(Reason::TcbNotEvaluated { tee: claims.tee });
    }
    let dcap = matches!(claims.tee, Tee::Sgx | Tee::Tdx | Tee::AzureTdxVtpm);
    if let Some(minimum) = attestation.min_tcb_evaluation_data_number
        && dcap
    {
        let number = claims.collateral.map(|c| c.tcb_evaluation_data_number);
        if number.is_none_or(|n| n < minimum) {
            reasons.push(Reason::CollateralTooOld {
                reason: format!(
                    "TCB evaluation data number {}, the policy requires at least {minimum}",
                    number.map_or_else(|| "unknown".into(), |n| n.to_string())
                ),
            });
        }
    }
    if let Some(max) = attestation.max_collateral_age
        && dcap
    {
        let age = claims.collateral.map(|c| now.saturating_sub(c.issued));
        if age.is_none_or(|a| a > max) {
            reasons.push(Reason::CollateralTooOld {
                reason: format!(
                    "issued {} s ago, the policy accepts at most {max} s",
                    age.map_or_else(|| "an unknown time".into(), |a| a.to_string())
                ),
            });
        }
    }
    if let (Some(max), Some(timestamp)) = (attestation.max_evidence_age, claims.timestamp) {
        let age = now.saturating_sub(timestamp);
        if age > max {
            reasons.push(Reason::EvidenceTooOld { age, max });
        }
    }
}

/// Sim only: each non-empty platform list (policy-wide, then the service's) must contain the
/// evidence's LAS platform key.
fn platform_key_check(
    policy: &Policy,
    service: Option<&Service>,
    claims: &Claims,
    reasons: &mut Vec<Reason>,
) {
    if !claims.tee.is_sim() {
        return;
    }
    let platform = claims
        .platform_id
        .as_deref()
        .and_then(|id| <[u8; 32]>::try_from(id).ok())
        .map(PublicKey);
    let policy_wide = Some(&policy.spec().attestation.platforms);
    let refused = [policy_wide, service.map(|s| &s.platforms)]
        .into_iter()
        .flatten()
        .any(|list| !list.is_empty() && !platform.is_some_and(|key| list.contains(&key)));
    if refused {
        reasons.push(Reason::PlatformNotAllowed {
            platform: claims.platform_id.as_ref().map(hex::encode),
        });
    }
}

fn service_checks(
    service: &Service,
    claims: &Claims,
    request: &Request,
    reasons: &mut Vec<Reason>,
) {
    if !service.measurements.is_empty()
        && !service
            .measurements
            .iter()
            .any(|m| m.bytes == claims.measurement)
    {
        reasons.push(Reason::MeasurementNotAllowed {
            measurement: hex::encode(&claims.measurement),
        });
    }
    if !service.signers.is_empty()
        && !claims
            .signer
            .as_ref()
            .is_some_and(|signer| service.signers.iter().any(|s| &s.bytes == signer))
    {
        reasons.push(Reason::SignerNotAllowed {
            signer: claims.signer.as_ref().map(hex::encode),
        });
    }
    if let Some(expected) = service.product_id
        && claims.product_id != Some(expected)
    {
        reasons.push(Reason::ProductIdMismatch {
            expected,
            found: claims.product_id,
        });
    }
    if let Some(minimum) = service.min_svn
        && claims.svn.is_none_or(|svn| svn < minimum)
    {
        reasons.push(Reason::SvnTooLow {
            minimum,
            found: claims.svn,
        });
    }
    for (index, expected) in &service.pcrs {
        let found = claims
            .vtpm
            .as_ref()
            .and_then(|v| v.tpm_pcrs.get(usize::from(*index)));
        if found != Some(&expected.bytes) {
            reasons.push(Reason::PcrMismatch {
                index: *index,
                expected: hex::encode(&expected.bytes),
                found: found.map(hex::encode),
            });
        }
    }
    match request.job_hash {
        None if !service.jobs.is_empty() => reasons.push(Reason::JobMissing),
        None => {}
        Some(job) if !service.jobs.iter().any(|allowed| allowed.bytes == job) => {
            reasons.push(Reason::JobNotAllowed {
                job: format!("sha256:{}", hex::encode(job)),
            });
        }
        Some(_) => {}
    }
}
