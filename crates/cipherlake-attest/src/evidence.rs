//! Evidence, its collateral, and the verifier that turns both into claims.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::{Claims, Tee, VerifyError, dcap, maa, sim, snp, vtpm};

/// Evidence as produced by an attester: the TEE it claims to come from, its bytes, and the
/// collateral needed to verify it when it does not carry everything itself.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The TEE that produced the evidence.
    pub tee: Tee,
    /// The raw evidence: quote, report, token (UTF-8) or sim report.
    pub bytes: Vec<u8>,
    /// Collateral for DCAP quotes and SEV-SNP reports.
    pub collateral: Option<Collateral>,
}

impl Evidence {
    /// Evidence without collateral.
    pub fn new(tee: Tee, bytes: Vec<u8>) -> Self {
        Evidence {
            tee,
            bytes,
            collateral: None,
        }
    }

    /// Attaches collateral.
    pub fn with_collateral(mut self, collateral: Collateral) -> Self {
        self.collateral = Some(collateral);
        self
    }
}

/// Parsed collateral, cheap to clone and reuse across verifications.
#[derive(Debug, Clone)]
pub enum Collateral {
    /// Intel DCAP collateral: PCK CRL, root CA CRL, TCB info, QE identity and their chains.
    Dcap(Arc<dcap::DcapCollateral>),
    /// AMD SEV-SNP: the VCEK (or VLEK) and optionally its ASK/ARK chain.
    Snp(Arc<snp::SnpCollateral>),
}

/// Per-verification options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Verification time, unix seconds: collateral, certificates and tokens must be valid then.
    pub at: u64,
    /// The nonce a vTPM quote must carry as its extraData (at most 64 bytes). Required for
    /// vTPM evidence; other kinds bind report data checked by [`verify_binding`].
    pub nonce: Option<Vec<u8>>,
}

impl VerifyOptions {
    /// Verify as of the given unix time.
    pub fn at(unix_secs: u64) -> Self {
        VerifyOptions {
            at: unix_secs,
            nonce: None,
        }
    }

    /// Sets the nonce vTPM evidence must carry.
    pub fn with_nonce(mut self, nonce: &[u8]) -> Self {
        self.nonce = Some(nonce.to_vec());
        self
    }

    /// Verify as of a [`SystemTime`](std::time::SystemTime) (times before 1970 count as 1970).
    pub fn at_system_time(time: std::time::SystemTime) -> Self {
        Self::at(
            time.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Verify as of now.
    pub fn now() -> Self {
        Self::at(crate::time::now_unix())
    }
}

/// Verifies evidence of every supported kind. Holds the trust configuration that is not part
/// of the evidence: registered sim platform keys, the pinned Azure Attestation provider and
/// AMD CRLs. Vendor roots (Intel, AMD) are built in.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    sim_platforms: sim::PlatformKeys,
    maa: Option<maa::MaaTrust>,
    snp: snp::SnpTrust,
}

impl Verifier {
    /// A verifier that trusts only the built-in vendor roots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts sim reports signed by this LAS platform key.
    pub fn with_sim_platform_key(mut self, key: sim::PlatformPublicKey) -> Self {
        self.sim_platforms.insert(key);
        self
    }

    /// Checks SEV-SNP chains against this AMD CRL too (VCEK or VLEK, any product: a CRL
    /// applies to the ARK that signed it).
    pub fn with_amd_crl(mut self, crl: snp::AmdCrl) -> Self {
        self.snp = self.snp.with_crl(crl);
        self
    }

    /// Trusts tokens from this Azure Attestation provider.
    pub fn with_maa(mut self, trust: maa::MaaTrust) -> Self {
        self.maa = Some(trust);
        self
    }

    /// Verifies `evidence` as of `options.at` and returns its claims.
    pub fn verify(
        &self,
        evidence: &Evidence,
        options: &VerifyOptions,
    ) -> Result<Claims, VerifyError> {
        match evidence.tee {
            Tee::Sgx | Tee::Tdx => {
                let collateral = match &evidence.collateral {
                    Some(Collateral::Dcap(c)) => c,
                    _ => {
                        return Err(VerifyError::MissingCollateral {
                            what: "DCAP collateral (PCK CRL, TCB info, QE identity)",
                        });
                    }
                };
                let found = dcap::quote_tee(&evidence.bytes)?;
                if found != evidence.tee {
                    return Err(VerifyError::WrongTee {
                        expected: evidence.tee,
                        found,
                    });
                }
                dcap::verify_quote(&evidence.bytes, collateral, options.at)
            }
            Tee::SevSnp => {
                let collateral = match &evidence.collateral {
                    Some(Collateral::Snp(c)) => c,
                    _ => {
                        return Err(VerifyError::MissingCollateral {
                            what: "SEV-SNP VCEK or VLEK certificate",
                        });
                    }
                };
                snp::verify_report(&evidence.bytes, collateral, &self.snp, options.at)
            }
            Tee::Azure => {
                let trust = self.maa.as_ref().ok_or(VerifyError::MissingCollateral {
                    what: "pinned Azure Attestation JWKS and issuer",
                })?;
                maa::verify_token(&evidence.bytes, trust, options.at)
            }
            Tee::Sim => sim::verify_report(&evidence.bytes, &self.sim_platforms),
            Tee::AzureSnpVtpm | Tee::AzureTdxVtpm | Tee::SimVtpm => {
                self.verify_vtpm(evidence, options)
            }
        }
    }

    fn verify_vtpm(
        &self,
        evidence: &Evidence,
        options: &VerifyOptions,
    ) -> Result<Claims, VerifyError> {
        let nonce = options.nonce.as_deref().ok_or(VerifyError::MissingNonce)?;
        let at = options.at;
        match evidence.tee {
            Tee::AzureSnpVtpm => {
                let supplied = match &evidence.collateral {
                    Some(Collateral::Snp(c)) => Some(c.clone()),
                    _ => None,
                };
                let hardware = |hcl: &vtpm::HclReport<'_>, parsed: &vtpm::VtpmEvidence| {
                    let collateral = match (&supplied, &parsed.vcek) {
                        (Some(c), _) => c.clone(),
                        (None, Some(vcek)) => Arc::new(snp::SnpCollateral::new(vcek, None)?),
                        (None, None) => {
                            return Err(VerifyError::MissingCollateral {
                                what: "SEV-SNP VCEK or VLEK certificate (in the evidence or given)",
                            });
                        }
                    };
                    let claims = snp::verify_report(hcl.hw_report, &collateral, &self.snp, at)?;
                    // Only the paravisor, at VMPL 0, vouches for the vTPM; a guest kernel at a
                    // higher VMPL could bind runtime claims of its own making.
                    match claims.snp.as_ref().map(|s| s.vmpl) {
                        Some(0) => Ok(claims),
                        other => Err(VerifyError::PlatformMismatch {
                            reason: format!(
                                "the HCL report's SEV-SNP report comes from VMPL {}, not the paravisor's VMPL 0",
                                other.map_or_else(|| "unknown".into(), |v| v.to_string())
                            ),
                        }),
                    }
                };
                let claims = vtpm::verify(
                    Tee::AzureSnpVtpm,
                    &evidence.bytes,
                    nonce,
                    vtpm::ReportType::Snp,
                    &hardware,
                )?;
                Ok(Claims {
                    attested_tee: Some(Tee::SevSnp),
                    ..claims
                })
            }
            Tee::AzureTdxVtpm => {
                let collateral = match &evidence.collateral {
                    Some(Collateral::Dcap(c)) => c.clone(),
                    _ => {
                        return Err(VerifyError::MissingCollateral {
                            what: "DCAP collateral for the TD quote (PCK CRL, TCB info, QE identity)",
                        });
                    }
                };
                // The HCL report's TDREPORT copy is unsigned: only the DCAP-verified TD
                // quote's report data counts.
                let hardware = |_: &vtpm::HclReport<'_>, parsed: &vtpm::VtpmEvidence| {
                    let td_quote =
                        parsed
                            .td_quote
                            .as_deref()
                            .ok_or(VerifyError::MissingCollateral {
                                what: "the TD quote (td_quote) of the TDX vTPM evidence",
                            })?;
                    let found = dcap::quote_tee(td_quote)?;
                    if found != Tee::Tdx {
                        return Err(VerifyError::WrongTee {
                            expected: Tee::Tdx,
                            found,
                        });
                    }
                    dcap::verify_quote(td_quote, &collateral, at)
                };
                let claims = vtpm::verify(
                    Tee::AzureTdxVtpm,
                    &evidence.bytes,
                    nonce,
                    vtpm::ReportType::Tdx,
                    &hardware,
                )?;
                Ok(Claims {
                    attested_tee: Some(Tee::Tdx),
                    ..claims
                })
            }
            _ => {
                let hardware = |hcl: &vtpm::HclReport<'_>, _: &vtpm::VtpmEvidence| {
                    sim::verify_report(hcl.hw_report, &self.sim_platforms)
                };
                vtpm::verify(
                    Tee::SimVtpm,
                    &evidence.bytes,
                    nonce,
                    vtpm::ReportType::Sim,
                    &hardware,
                )
            }
        }
    }
}

/// Checks that verified claims bind the report data the relying party expects (for example a
/// hash of its nonce and the workload's public key). Constant-time comparison.
///
/// vTPM evidence binds the 64 bytes twice: as the TPM quote's nonce and as the HCL report's
/// user data; both must be the expected value.
pub fn verify_binding(claims: &Claims, expected_report_data: &[u8; 64]) -> Result<(), VerifyError> {
    if !bool::from(claims.report_data.ct_eq(expected_report_data)) {
        return Err(VerifyError::ReportDataMismatch);
    }
    match (&claims.vtpm, claims.tee.is_vtpm()) {
        (_, false) => Ok(()),
        (Some(vtpm), true)
            if bool::from(vtpm.nonce.ct_eq(expected_report_data))
                && bool::from(vtpm.user_data.ct_eq(expected_report_data)) =>
        {
            Ok(())
        }
        (vtpm, true) => Err(VerifyError::UserDataMismatch {
            user_data: vtpm
                .as_ref()
                .map(|v| hex::encode(&v.user_data))
                .unwrap_or_default(),
        }),
    }
}
