//! Prometheus metrics (`GET /metrics`, OpenMetrics text) and the per-request log line.
//!
//! * `cipherlake_cas_attestations_total{decision, reason}`: attestation decisions. An allowed
//!   attestation counts once with `reason="none"`; a denied one counts once per distinct
//!   [`ReasonCategory`] among its reasons (so denials can be split by cause).
//! * `cipherlake_cas_kms_calls_total{operation, outcome}`: KMS calls by operation (`wrap`,
//!   `unwrap`, `rsa-decrypt`, `rsa-sign`) and outcome (`ok`, `denied`, `error`).
//! * `cipherlake_cas_request_duration_seconds{route}`: request latency by route template.
//!
//! Every label value comes from a fixed set (enums, or the router's route templates): no
//! request text, name or secret ever becomes a label.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::CasError;
use crate::kms::Operation;

/// An attestation decision.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Decision {
    allowed,
    denied,
}

/// Why an attestation was denied, coarsely: a fixed label set derived from the policy
/// evaluation's reason codes and the error kind.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReasonCategory {
    /// Allowed: no reason.
    none,
    /// `nonce-unknown`, `nonce-expired`.
    nonce,
    /// `evidence-invalid`, `evidence-too-old`.
    evidence,
    /// `report-data-mismatch`: the evidence does not bind the nonce, keys and job.
    binding,
    /// `tee-not-allowed`.
    tee,
    /// `measurement-not-allowed`, `signer-not-allowed`, `product-id-mismatch`, `svn-too-low`.
    measurement,
    /// `debug-not-tolerated`.
    debug,
    /// `tcb-*`: outdated or not evaluated TCB, hardening or configuration needed.
    tcb,
    /// `platform-not-allowed`.
    platform,
    /// `operation-mismatch`: the evidence binds another operation than the service's.
    operation,
    /// `job-missing`, `job-not-allowed`.
    job,
    /// `unknown-service`.
    service,
    /// The named policy does not exist.
    policy,
    /// The request is malformed.
    request,
    /// Anything else (e.g. the configuration cannot be rendered, internal errors).
    other,
}

impl ReasonCategory {
    /// The category of one denial reason (`code: message`).
    pub fn of_reason(reason: &str) -> Self {
        let code = reason.split(':').next().unwrap_or_default().trim();
        match code {
            "nonce-unknown" | "nonce-expired" => Self::nonce,
            "evidence-invalid" | "evidence-too-old" => Self::evidence,
            "report-data-mismatch" => Self::binding,
            "tee-not-allowed" => Self::tee,
            "measurement-not-allowed"
            | "signer-not-allowed"
            | "product-id-mismatch"
            | "svn-too-low" => Self::measurement,
            "debug-not-tolerated" => Self::debug,
            "platform-not-allowed" => Self::platform,
            "operation-mismatch" => Self::operation,
            "job-missing" | "job-not-allowed" => Self::job,
            "unknown-service" => Self::service,
            code if code.starts_with("tcb-") => Self::tcb,
            _ => Self::other,
        }
    }

    /// The distinct categories of a failed attestation.
    pub fn of_error(error: &CasError) -> BTreeSet<Self> {
        match error {
            CasError::Denied(reasons) => reasons.iter().map(|r| Self::of_reason(r)).collect(),
            CasError::BadRequest(_) => BTreeSet::from([Self::request]),
            CasError::NotFound(_) => BTreeSet::from([Self::policy]),
            _ => BTreeSet::from([Self::other]),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestLabels {
    decision: Decision,
    reason: ReasonCategory,
}

/// The outcome of a KMS call.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    ok,
    denied,
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KmsLabels {
    /// [`Operation::as_str`].
    operation: &'static str,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// The route template (e.g. `/v1/policies/{name}`), or `unmatched`.
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The CAS's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    attestations: Family<AttestLabels, Counter>,
    kms: Family<KmsLabels, Counter>,
    latency: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cipherlake_cas");
        let attestations = Family::<AttestLabels, Counter>::default();
        registry.register(
            "attestations",
            "Attestation decisions; a denial counts once per reason category",
            attestations.clone(),
        );
        let kms = Family::<KmsLabels, Counter>::default();
        registry.register(
            "kms_calls",
            "KMS calls by operation and outcome",
            kms.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        Metrics {
            registry,
            attestations,
            kms,
            latency,
        }
    }
}

impl Metrics {
    /// Counts an attestation decision; returns the categories counted (for the log line).
    pub fn record_attestation<T>(&self, result: &Result<T, CasError>) -> BTreeSet<ReasonCategory> {
        let (decision, categories) = match result {
            Ok(_) => (Decision::allowed, BTreeSet::from([ReasonCategory::none])),
            Err(e) => (Decision::denied, ReasonCategory::of_error(e)),
        };
        for &reason in &categories {
            self.attestations
                .get_or_create(&AttestLabels { decision, reason })
                .inc();
        }
        categories
    }

    /// Counts a KMS call.
    pub fn record_kms<T>(&self, op: Operation, result: &Result<T, CasError>) -> &'static str {
        let outcome = match result {
            Ok(_) => Outcome::ok,
            Err(CasError::Unauthorized(_) | CasError::Forbidden(_)) => Outcome::denied,
            Err(_) => Outcome::error,
        };
        self.kms
            .get_or_create(&KmsLabels {
                operation: op.as_str(),
                outcome,
            })
            .inc();
        match outcome {
            Outcome::ok => "ok",
            Outcome::denied => "denied",
            Outcome::error => "error",
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, CasError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| CasError::Crypto(format!("encoding metrics: {e}")))?;
        Ok(text)
    }
}

/// Middleware: observes each request's latency under its route template and logs one
/// structured line (route, method, status, latency). Never the URI, headers or body.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        route,
        method = %method,
        status = response.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_fixed_categories() {
        let denied = CasError::Denied(vec![
            "nonce-unknown: the nonce was never issued".into(),
            "tcb-outdated: the platform's TCB is out of date".into(),
            "measurement-not-allowed: sha384:ab".into(),
            "svn-too-low: 1 < 2".into(),
            "something-new: free text".into(),
        ]);
        let categories: Vec<_> = ReasonCategory::of_error(&denied).into_iter().collect();
        assert_eq!(
            categories,
            [
                ReasonCategory::nonce,
                ReasonCategory::measurement,
                ReasonCategory::tcb,
                ReasonCategory::other
            ]
        );
        assert_eq!(
            ReasonCategory::of_error(&CasError::NotFound("no policy".into())),
            BTreeSet::from([ReasonCategory::policy])
        );
    }
}
