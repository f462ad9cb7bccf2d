//! Evaluation: every reason triggered alone by one change of hand-built claims, tolerances
//! that lift them, and all reasons collected together.

use cipherlake_attest::{Claims, TcbStatus, Tee};
use cipherlake_policy::{
    Decision, Intent, Operation, Policy, Reason, Request, Tolerance, evaluate,
};

use super::common::{
    DRIVER, MRSIGNER, NOW, PLATFORM, WORKER, example, example_text, job, replace, sgx_claims,
    sgx_text, sim_claims,
};

fn with_job() -> Request {
    Request {
        intent: Intent::Perform(Operation::Run),
        job_hash: Some(job()),
    }
}

/// A probe without a job: every check but the operation's.
fn no_job() -> Request {
    Request {
        intent: Intent::Probe,
        job_hash: None,
    }
}

fn driver(policy: &Policy, claims: &Claims) -> Decision {
    evaluate(policy, "driver", claims, &with_job(), NOW)
}

/// Asserts the decision refuses with exactly `expected` and returns it.
fn refused_with(decision: Decision, expected: &[Reason]) {
    assert!(!decision.allowed, "allowed: {decision:?}");
    assert_eq!(decision.reasons, expected);
}

fn sgx() -> Policy {
    Policy::parse(&sgx_text()).expect("valid")
}

fn sgx_driver(claims: &Claims) -> Decision {
    evaluate(&sgx(), "driver", claims, &with_job(), NOW)
}

#[test]
fn healthy_workloads_are_allowed() {
    let policy = example();
    let decision = driver(&policy, &sim_claims(DRIVER));
    assert!(
        decision.allowed && decision.reasons.is_empty(),
        "{decision:?}"
    );
    let worker = evaluate(&policy, "worker", &sim_claims(WORKER), &no_job(), NOW);
    assert!(worker.allowed, "{worker:?}");
    assert!(sgx_driver(&sgx_claims()).allowed);
}

#[test]
fn sim_is_refused_when_not_listed() {
    let decision = sgx_driver(&Claims {
        tee: Tee::Sim,
        tcb_status: TcbStatus::NotEvaluated,
        ..sgx_claims()
    });
    refused_with(
        decision.clone(),
        &[Reason::TeeNotAllowed {
            tee: Tee::Sim,
            allowed: vec![Tee::Sgx],
        }],
    );
    assert!(decision.reasons[0].to_string().contains("simulation mode"));
    assert_eq!(decision.reasons[0].code(), "tee-not-allowed");
}

#[test]
fn other_tee_is_refused() {
    let claims = Claims {
        tee: Tee::Tdx,
        ..sim_claims(DRIVER)
    };
    refused_with(
        driver(&example(), &claims),
        &[
            Reason::TeeNotAllowed {
                tee: Tee::Tdx,
                allowed: vec![Tee::Sim],
            },
            Reason::TcbNotEvaluated { tee: Tee::Tdx },
        ],
    );
}

#[test]
fn measurement_not_allowed() {
    refused_with(
        driver(&example(), &sim_claims(WORKER)),
        &[Reason::MeasurementNotAllowed {
            measurement: WORKER.into(),
        }],
    );
}

#[test]
fn signer_not_allowed_or_missing() {
    let other = vec![0x33; 32];
    refused_with(
        sgx_driver(&Claims {
            signer: Some(other.clone()),
            ..sgx_claims()
        }),
        &[Reason::SignerNotAllowed {
            signer: Some(hex::encode(&other)),
        }],
    );
    refused_with(
        sgx_driver(&Claims {
            signer: None,
            ..sgx_claims()
        }),
        &[Reason::SignerNotAllowed { signer: None }],
    );
    assert!(MRSIGNER.len() == 64);
}

#[test]
fn product_id_mismatch() {
    refused_with(
        sgx_driver(&Claims {
            product_id: Some(8),
            ..sgx_claims()
        }),
        &[Reason::ProductIdMismatch {
            expected: 7,
            found: Some(8),
        }],
    );
}

#[test]
fn svn_below_minimum_or_absent() {
    refused_with(
        sgx_driver(&Claims {
            svn: Some(2),
            ..sgx_claims()
        }),
        &[Reason::SvnTooLow {
            minimum: 3,
            found: Some(2),
        }],
    );
    refused_with(
        sgx_driver(&Claims {
            svn: None,
            ..sgx_claims()
        }),
        &[Reason::SvnTooLow {
            minimum: 3,
            found: None,
        }],
    );
    assert!(
        sgx_driver(&Claims {
            svn: Some(9),
            ..sgx_claims()
        })
        .allowed
    );
}

#[test]
fn debug_is_refused_unless_tolerated() {
    let claims = Claims {
        debug: true,
        ..sim_claims(DRIVER)
    };
    refused_with(driver(&example(), &claims), &[Reason::DebugNotTolerated]);
    let tolerant = Policy::parse(&replace(
        &example_text(),
        "tolerate: []",
        "tolerate: [debug]",
    ))
    .expect("valid");
    assert!(driver(&tolerant, &claims).allowed);
}

#[test]
fn outdated_tcb_is_refused_unless_tolerated() {
    let claims = Claims {
        tcb_status: TcbStatus::OutOfDate,
        ..sgx_claims()
    };
    let decision = sgx_driver(&claims);
    refused_with(
        decision.clone(),
        &[Reason::TcbNotTolerated {
            status: TcbStatus::OutOfDate,
            needs: Tolerance::OutdatedTcb,
        }],
    );
    assert_eq!(decision.reasons[0].code(), "tcb-outdated");
    let tolerant = Policy::parse(&replace(
        &sgx_text(),
        "tees: [sgx]",
        "tees: [sgx]\n  tolerate: [outdated-tcb]",
    ))
    .expect("valid");
    assert!(evaluate(&tolerant, "driver", &claims, &with_job(), NOW).allowed);
}

#[test]
fn every_tcb_status_maps_to_its_tolerances() {
    use Tolerance::*;
    let cases: [(TcbStatus, &[Tolerance]); 7] = [
        (TcbStatus::SwHardeningNeeded, &[SwHardeningNeeded]),
        (TcbStatus::ConfigurationNeeded, &[ConfigurationNeeded]),
        (
            TcbStatus::ConfigurationAndSwHardeningNeeded,
            &[ConfigurationNeeded, SwHardeningNeeded],
        ),
        (TcbStatus::OutOfDate, &[OutdatedTcb]),
        (
            TcbStatus::OutOfDateConfigurationNeeded,
            &[OutdatedTcb, ConfigurationNeeded],
        ),
        (TcbStatus::TdRelaunchAdvised, &[OutdatedTcb]),
        (
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded,
            &[OutdatedTcb, ConfigurationNeeded],
        ),
    ];
    let all = "tolerate: [outdated-tcb, sw-hardening-needed, configuration-needed]";
    let tolerant = Policy::parse(&replace(
        &sgx_text(),
        "tees: [sgx]",
        &format!("tees: [sgx]\n  {all}"),
    ))
    .expect("valid");
    for (status, needs) in cases {
        let claims = Claims {
            tcb_status: status,
            ..sgx_claims()
        };
        let expected: Vec<Reason> = needs
            .iter()
            .map(|needs| Reason::TcbNotTolerated {
                status,
                needs: *needs,
            })
            .collect();
        refused_with(sgx_driver(&claims), &expected);
        assert!(
            evaluate(&tolerant, "driver", &claims, &with_job(), NOW).allowed,
            "{status:?}"
        );
    }
    // One tolerance of two is not enough.
    let partial = Policy::parse(&replace(
        &sgx_text(),
        "tees: [sgx]",
        "tees: [sgx]\n  tolerate: [sw-hardening-needed]",
    ))
    .expect("valid");
    let claims = Claims {
        tcb_status: TcbStatus::ConfigurationAndSwHardeningNeeded,
        ..sgx_claims()
    };
    let decision = evaluate(&partial, "driver", &claims, &with_job(), NOW);
    assert_eq!(
        decision.reasons,
        [Reason::TcbNotTolerated {
            status: TcbStatus::ConfigurationAndSwHardeningNeeded,
            needs: ConfigurationNeeded
        }]
    );
    assert_eq!(decision.reasons[0].code(), "tcb-configuration-needed");
}

#[test]
fn tcb_not_evaluated_is_refused_for_dcap_only() {
    let claims = Claims {
        tcb_status: TcbStatus::NotEvaluated,
        ..sgx_claims()
    };
    refused_with(
        sgx_driver(&claims),
        &[Reason::TcbNotEvaluated { tee: Tee::Sgx }],
    );
    // Sim and Azure tokens carry no verdict (the attestation service applied its own policy):
    // accepted when the TEE is listed. SEV-SNP needs a minimum TCB or the `unevaluated-tcb`
    // tolerance (identity::sev_snp_defaults_refuse_other_vmpls_migration_agents_and_unevaluated_tcbs).
    let tee = Tee::Azure;
    let text = replace(&sgx_text(), "tees: [sgx]", &format!("tees: [{tee}]"));
    let policy = Policy::parse(&text).expect("valid");
    let claims = Claims {
        tee,
        tcb_status: TcbStatus::NotEvaluated,
        ..sgx_claims()
    };
    assert!(
        evaluate(&policy, "driver", &claims, &with_job(), NOW).allowed,
        "{tee}"
    );
}

#[test]
fn sim_platform_must_be_listed_when_platforms_are() {
    let listed = hex::encode(PLATFORM);
    let other = hex::encode([0x77; 32]);
    let policy_wide = |key: &str| {
        let text = replace(
            &example_text(),
            "  # platforms: [ed25519:<key printed by `cipherlake las init-key`>]",
            &format!("  platforms: [{key}]"),
        );
        Policy::parse(&text).expect("valid")
    };
    assert!(driver(&policy_wide(&listed), &sim_claims(DRIVER)).allowed);
    refused_with(
        driver(&policy_wide(&other), &sim_claims(DRIVER)),
        &[Reason::PlatformNotAllowed {
            platform: Some(listed.clone()),
        }],
    );
    let anonymous = Claims {
        platform_id: None,
        ..sim_claims(DRIVER)
    };
    refused_with(
        driver(&policy_wide(&listed), &anonymous),
        &[Reason::PlatformNotAllowed { platform: None }],
    );
    // A service list applies on top of the policy-wide one.
    let text = replace(
        &example_text(),
        "    console: row-counts",
        &format!("    console: row-counts\n    platforms: [ed25519:{other}]"),
    );
    let service_level = Policy::parse(&text).expect("valid");
    refused_with(
        driver(&service_level, &sim_claims(DRIVER)),
        &[Reason::PlatformNotAllowed {
            platform: Some(listed),
        }],
    );
    assert!(
        evaluate(
            &service_level,
            "worker",
            &sim_claims(WORKER),
            &no_job(),
            NOW
        )
        .allowed
    );
}

#[test]
fn job_must_be_allow_listed() {
    let policy = example();
    let other = Request {
        job_hash: Some([9; 32]),
        ..with_job()
    };
    refused_with(
        evaluate(&policy, "driver", &sim_claims(DRIVER), &other, NOW),
        &[Reason::JobNotAllowed {
            job: format!("sha256:{}", hex::encode([9; 32])),
        }],
    );
    refused_with(
        evaluate(&policy, "driver", &sim_claims(DRIVER), &no_job(), NOW),
        &[Reason::JobMissing],
    );
    // A service without allow-listed jobs runs none.
    let probe = Request {
        intent: Intent::Probe,
        job_hash: Some(job()),
    };
    let decision = evaluate(&policy, "worker", &sim_claims(WORKER), &probe, NOW);
    assert_eq!(decision.reasons.len(), 1);
    assert_eq!(decision.reasons[0].code(), "job-not-allowed");
}

#[test]
fn unknown_service() {
    refused_with(
        evaluate(&example(), "executor", &sim_claims(DRIVER), &no_job(), NOW),
        &[Reason::UnknownService {
            service: "executor".into(),
        }],
    );
}

#[test]
fn old_evidence_is_refused_when_an_age_limit_is_set() {
    let text = replace(
        &example_text(),
        "tolerate: []",
        "tolerate: []\n  max_evidence_age: 60",
    );
    let policy = Policy::parse(&text).expect("valid");
    assert!(driver(&policy, &sim_claims(DRIVER)).allowed);
    let old = Claims {
        timestamp: Some(NOW - 61),
        ..sim_claims(DRIVER)
    };
    refused_with(
        driver(&policy, &old),
        &[Reason::EvidenceTooOld { age: 61, max: 60 }],
    );
    // Without a limit, the nonce is the freshness guarantee.
    assert!(driver(&example(), &old).allowed);
}

#[test]
fn all_failing_reasons_are_collected() {
    let claims = Claims {
        tee: Tee::Sgx,
        measurement: vec![0; 32],
        debug: true,
        tcb_status: TcbStatus::OutOfDateConfigurationNeeded,
        ..sim_claims(DRIVER)
    };
    let decision = evaluate(&example(), "driver", &claims, &no_job(), NOW);
    let codes: Vec<&str> = decision.reasons.iter().map(Reason::code).collect();
    assert_eq!(
        codes,
        [
            "tee-not-allowed",
            "debug-not-tolerated",
            "tcb-outdated",
            "tcb-configuration-needed",
            "measurement-not-allowed",
            "job-missing",
        ]
    );
    assert!(!decision.allowed);
    let sgx_all = Claims {
        signer: None,
        product_id: None,
        svn: Some(0),
        measurement: vec![1; 32],
        ..sgx_claims()
    };
    let codes: Vec<&str> = sgx_driver(&sgx_all)
        .reasons
        .iter()
        .map(Reason::code)
        .collect();
    assert_eq!(
        codes,
        [
            "measurement-not-allowed",
            "signer-not-allowed",
            "product-id-mismatch",
            "svn-too-low"
        ]
    );
}

#[test]
fn decisions_serialise_with_codes_and_messages() {
    let decision = evaluate(&example(), "nope", &sim_claims(DRIVER), &no_job(), NOW);
    let json = serde_json::to_value(&decision).expect("serialises");
    assert_eq!(json["allowed"], false);
    assert_eq!(json["reasons"][0]["code"], "unknown-service");
    assert_eq!(
        json["reasons"][0]["message"],
        "the policy has no service \"nope\""
    );
}

#[test]
fn reason_codes_are_unique_and_listed() {
    let mut codes = Reason::CODES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::CODES.len());
    let samples = [
        Reason::DebugNotTolerated,
        Reason::JobMissing,
        Reason::TcbNotEvaluated { tee: Tee::Sgx },
        Reason::TcbNotTolerated {
            status: TcbStatus::SwHardeningNeeded,
            needs: Tolerance::SwHardeningNeeded,
        },
    ];
    for reason in samples {
        assert!(Reason::CODES.contains(&reason.code()), "{}", reason.code());
    }
}

#[test]
fn evidence_binding_another_operation_is_refused() {
    let policy = example();
    // The worker's code binding `run` (as `attest --job` could claim before operations), and
    // the driver's binding `worker`: both refused, naming both operations.
    let decision = evaluate(&policy, "worker", &sim_claims(WORKER), &with_job(), NOW);
    assert!(decision.reasons.contains(&Reason::OperationMismatch {
        service: "worker".into(),
        admits: Some(Operation::Worker),
        bound: Operation::Run,
    }));
    let as_worker = Request {
        intent: Intent::Perform(Operation::Worker),
        job_hash: Some(job()),
    };
    let decision = evaluate(&policy, "driver", &sim_claims(DRIVER), &as_worker, NOW);
    refused_with(
        decision.clone(),
        &[Reason::OperationMismatch {
            service: "driver".into(),
            admits: Some(Operation::Run),
            bound: Operation::Worker,
        }],
    );
    let shown = decision.reasons[0].to_string();
    assert!(
        shown.contains("binds operation worker") && shown.contains("admits only run"),
        "{shown}"
    );
    assert_eq!(decision.reasons[0].code(), "operation-mismatch");
    // Every operation other than the service's is refused.
    for op in Operation::ALL
        .into_iter()
        .filter(|op| *op != Operation::Run)
    {
        let request = Request {
            intent: Intent::Perform(op),
            job_hash: Some(job()),
        };
        assert!(!evaluate(&policy, "driver", &sim_claims(DRIVER), &request, NOW).allowed);
    }
    let worker = Request {
        intent: Intent::Perform(Operation::Worker),
        job_hash: None,
    };
    assert!(evaluate(&policy, "worker", &sim_claims(WORKER), &worker, NOW).allowed);
}

/// The example policy accepting sim-vtpm evidence, its driver pinning PCRs 4 and 8.
fn vtpm_pinned(pcr8: &str) -> Policy {
    let text = replace(&example_text(), "tees: [sim]", "tees: [sim, sim-vtpm]");
    let text = replace(
        &text,
        "    console: row-counts\n",
        &format!(
            "    console: row-counts\n    pcrs:\n      4: sha256:{}\n      8: {pcr8}\n",
            hex::encode([4u8; 32])
        ),
    );
    Policy::parse(&text).expect("valid")
}

#[test]
fn pinned_pcrs_must_hold_their_values() {
    let policy = vtpm_pinned(&hex::encode([8u8; 32]));
    let claims = super::common::sim_vtpm_claims(DRIVER);
    assert!(
        driver(&policy, &claims).allowed,
        "{:?}",
        driver(&policy, &claims)
    );
    // PCR 8 (init data) pinned to another value.
    let policy = vtpm_pinned(&hex::encode([9u8; 32]));
    refused_with(
        driver(&policy, &claims),
        &[Reason::PcrMismatch {
            index: 8,
            expected: hex::encode([9u8; 32]),
            found: Some(hex::encode([8u8; 32])),
        }],
    );
    let reason = driver(&policy, &claims).reasons[0].to_string();
    assert!(
        reason.contains("PCR 8") && reason.contains(&hex::encode([9u8; 32])),
        "{reason}"
    );
    // Evidence without PCRs (plain sim) cannot satisfy a PCR pin.
    let decision = driver(&vtpm_pinned(&hex::encode([8u8; 32])), &sim_claims(DRIVER));
    assert_eq!(
        decision
            .reasons
            .iter()
            .map(Reason::code)
            .collect::<Vec<_>>(),
        ["pcr-mismatch", "pcr-mismatch"]
    );
    // Another vTPM kind than the policy lists is refused by kind.
    let azure = Claims {
        tee: Tee::AzureSnpVtpm,
        ..super::common::sim_vtpm_claims(DRIVER)
    };
    let decision = driver(&vtpm_pinned(&hex::encode([8u8; 32])), &azure);
    assert!(
        matches!(decision.reasons[0], Reason::TeeNotAllowed { .. }),
        "{decision:?}"
    );
}

#[test]
fn sim_vtpm_evidence_is_held_to_the_platform_list() {
    let text = replace(&example_text(), "tees: [sim]", "tees: [sim-vtpm]");
    let text = replace(
        &text,
        "  # platforms: [ed25519:<key printed by `cipherlake las init-key`>]",
        &format!("  platforms: [{}]", hex::encode([0x11; 32])),
    );
    let policy = Policy::parse(&text).expect("valid");
    let decision = driver(&policy, &super::common::sim_vtpm_claims(DRIVER));
    assert!(
        matches!(
            decision.reasons.as_slice(),
            [Reason::PlatformNotAllowed { .. }]
        ),
        "{decision:?}"
    );
}
