//! Normalised claims: what every verifier produces, whatever the TEE.

use serde::{Deserialize, Serialize};

use crate::encoding::{hex_bytes, hex_list, hex_opt};

/// A kind of trusted execution environment (also the kind of evidence it produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// Intel SGX enclave, DCAP quote.
    Sgx,
    /// Intel TDX trust domain, DCAP quote.
    Tdx,
    /// AMD SEV-SNP guest, attestation report.
    SevSnp,
    /// Azure Attestation (MAA) token about an SGX enclave or an SEV-SNP VM.
    Azure,
    /// Simulation mode: a report signed by a LAS platform key, no memory protection.
    Sim,
    /// Azure confidential VM on SEV-SNP: an HCL report and a quote of the paravisor's vTPM.
    AzureSnpVtpm,
    /// Azure confidential VM on TDX: an HCL report, its TD quote and a vTPM quote.
    AzureTdxVtpm,
    /// A real TPM quote over an HCL report whose hardware part is a LAS sim report: the
    /// vTPM path without memory protection, for tests and development.
    SimVtpm,
}

impl Tee {
    /// The lowercase name used in policies and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
            Tee::SevSnp => "sev-snp",
            Tee::Azure => "azure",
            Tee::Sim => "sim",
            Tee::AzureSnpVtpm => "azure-snp-vtpm",
            Tee::AzureTdxVtpm => "azure-tdx-vtpm",
            Tee::SimVtpm => "sim-vtpm",
        }
    }

    /// Whether the evidence comes without memory protection (a LAS signed its hardware part).
    pub fn is_sim(self) -> bool {
        matches!(self, Tee::Sim | Tee::SimVtpm)
    }

    /// Whether the evidence is a vTPM quote over an HCL report.
    pub fn is_vtpm(self) -> bool {
        matches!(self, Tee::AzureSnpVtpm | Tee::AzureTdxVtpm | Tee::SimVtpm)
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tee {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sgx" => Ok(Tee::Sgx),
            "tdx" => Ok(Tee::Tdx),
            "sev-snp" | "snp" => Ok(Tee::SevSnp),
            "azure" | "maa" => Ok(Tee::Azure),
            "sim" => Ok(Tee::Sim),
            "azure-snp-vtpm" => Ok(Tee::AzureSnpVtpm),
            "azure-tdx-vtpm" => Ok(Tee::AzureTdxVtpm),
            "sim-vtpm" => Ok(Tee::SimVtpm),
            other => Err(format!(
                "unknown TEE {other:?} (expected sgx, tdx, sev-snp, azure, sim, azure-snp-vtpm, \
                 azure-tdx-vtpm or sim-vtpm)"
            )),
        }
    }
}

/// The platform's TCB status as judged from the evidence and its collateral.
///
/// Statuses other than [`TcbStatus::UpToDate`] are not verification errors: the policy layer
/// decides whether to tolerate them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB level.
    UpToDate,
    /// Up to date, but software hardening is needed against the listed advisories.
    SwHardeningNeeded,
    /// Up to date, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSwHardeningNeeded,
    /// The platform's TCB is out of date (see the advisory ids).
    OutOfDate,
    /// Out of date and the configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// TDX: the TD runs on an outdated module; relaunch it to pick up the update.
    TdRelaunchAdvised,
    /// TDX relaunch advised and the configuration needs changing.
    TdRelaunchAdvisedConfigurationNeeded,
    /// The evidence carries no TCB verdict: SEV-SNP (compare [`SnpClaims::reported_tcb`] with
    /// minimum values), Azure (the attestation service applied its own policy) and sim.
    NotEvaluated,
}

/// Normalised claims about an attested workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: Tee,
    /// For Azure tokens, the TEE the attestation service attested (`sgx` or `sev-snp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_tee: Option<Tee>,
    /// Version of the evidence format (quote version, report version, ...).
    pub evidence_version: u32,
    /// The code measurement: SGX MRENCLAVE (32 bytes), TDX MRTD, SEV-SNP launch measurement or
    /// the SHA-384 of the executable in simulation mode (48 bytes).
    #[serde(with = "hex_bytes")]
    pub measurement: Vec<u8>,
    /// TDX runtime measurement registers RTMR0..3 (empty for other TEEs).
    #[serde(default, with = "hex_list", skip_serializing_if = "Vec::is_empty")]
    pub rtmrs: Vec<Vec<u8>>,
    /// Who signed the code: SGX MRSIGNER. (SEV-SNP's ID and author key digests are in
    /// [`SnpClaims`].)
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub signer: Option<Vec<u8>>,
    /// SGX ISV product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u16>,
    /// Security version of the workload: SGX ISV SVN, SEV-SNP guest SVN, sim SVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svn: Option<u32>,
    /// The workload runs in debug mode (its memory is readable by the host).
    pub debug: bool,
    /// TCB status of the platform.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply to the platform's TCB level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
    /// The 64 bytes of report data the workload bound into the evidence.
    #[serde(with = "hex_bytes")]
    pub report_data: [u8; 64],
    /// Data bound by the host at launch: SEV-SNP HOST_DATA, TDX MRCONFIGID.
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub host_data: Option<Vec<u8>>,
    /// Sim: the LAS platform's public key (ed25519), which identifies the platform.
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<Vec<u8>>,
    /// When the evidence was produced (unix seconds), where the evidence says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The collateral the evidence was judged with (DCAP: the TCB info's evaluation data
    /// number and issue date), for policies that set a minimum or a maximum age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<CollateralClaims>,
    /// SGX-specific claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgx: Option<SgxClaims>,
    /// TDX-specific claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxClaims>,
    /// SEV-SNP-specific claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpClaims>,
    /// vTPM claims (Azure confidential VMs, sim-vtpm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtpm: Option<VtpmClaims>,
}

/// Claims of vTPM evidence, beside the hardware report's claims. For vTPM evidence
/// [`Claims::report_data`] is the nonce the TPM quote carries, zero-padded to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtpmClaims {
    /// The TPM quote's extraData: the nonce, exactly.
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// The SHA-256 bank, PCR 0 to 23, as the quote commits to them.
    #[serde(with = "hex_list")]
    pub tpm_pcrs: Vec<Vec<u8>>,
    /// The runtime claims' `vm-configuration`.
    pub vm_configuration: serde_json::Value,
    /// The runtime claims' `user-data`: what the guest wrote to NV index 0x01400002.
    #[serde(with = "hex_bytes")]
    pub user_data: Vec<u8>,
    /// The hardware report's own report data (SHA-256 of the runtime claims, then padding).
    #[serde(with = "hex_bytes")]
    pub hardware_report_data: Vec<u8>,
}

/// What the collateral an evidence was judged with says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollateralClaims {
    /// Intel's TCB evaluation data number of the TCB info (higher: newer TCB recovery).
    pub tcb_evaluation_data_number: u32,
    /// When the TCB info was issued (unix seconds).
    pub issued: u64,
}

/// Claims only an SGX quote carries (beyond MRENCLAVE, MRSIGNER, ISV product id and SVN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxClaims {
    /// ATTRIBUTES (flags then XFRM, little-endian; flags bit 1 is DEBUG).
    #[serde(with = "hex_bytes")]
    pub attributes: Vec<u8>,
    /// CONFIGID (KSS), 64 bytes.
    #[serde(with = "hex_bytes")]
    pub config_id: Vec<u8>,
    /// CONFIGSVN (KSS).
    pub config_svn: u16,
    /// ISVEXTPRODID (KSS), 16 bytes.
    #[serde(with = "hex_bytes")]
    pub isv_ext_prod_id: Vec<u8>,
    /// ISVFAMILYID (KSS), 16 bytes.
    #[serde(with = "hex_bytes")]
    pub isv_family_id: Vec<u8>,
}

/// Claims only a TDX quote carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxClaims {
    /// MRSEAM: measurement of the TDX module.
    #[serde(with = "hex_bytes")]
    pub mr_seam: Vec<u8>,
    /// MROWNER: software-defined owner id.
    #[serde(with = "hex_bytes")]
    pub mr_owner: Vec<u8>,
    /// MROWNERCONFIG: software-defined owner configuration.
    #[serde(with = "hex_bytes")]
    pub mr_owner_config: Vec<u8>,
    /// TD attributes (little-endian bit field; bit 0 is DEBUG).
    #[serde(with = "hex_bytes")]
    pub td_attributes: Vec<u8>,
    /// XFAM: extended features available to the TD.
    #[serde(with = "hex_bytes")]
    pub xfam: Vec<u8>,
    /// TEE_TCB_SVN of the platform.
    #[serde(with = "hex_bytes")]
    pub tee_tcb_svn: Vec<u8>,
}

/// Claims only an SEV-SNP report carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpClaims {
    /// The processor generation whose AMD root the chain ends in (`Milan`, `Genoa`, `Turin`).
    pub product: String,
    /// Which key signed the report: `vcek` (chip-unique) or `vlek` (loaded by the cloud).
    pub signing_key: String,
    /// The guest policy set at launch.
    pub policy: SnpPolicy,
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// Family id supplied at launch.
    #[serde(with = "hex_bytes")]
    pub family_id: Vec<u8>,
    /// Image id supplied at launch.
    #[serde(with = "hex_bytes")]
    pub image_id: Vec<u8>,
    /// Digest of the ID key that signed the launch ID block (zero when none).
    #[serde(with = "hex_bytes")]
    pub id_key_digest: Vec<u8>,
    /// Digest of the author key that certified the ID key (zero when none).
    #[serde(with = "hex_bytes")]
    pub author_key_digest: Vec<u8>,
    /// Chip id (zero when masked by the host).
    #[serde(with = "hex_bytes")]
    pub chip_id: Vec<u8>,
    /// TCB the VCEK was derived from (what the signature vouches for).
    pub reported_tcb: SnpTcb,
    /// TCB the platform currently runs.
    pub current_tcb: SnpTcb,
    /// TCB the platform committed to (anti-rollback floor).
    pub committed_tcb: SnpTcb,
    /// TCB at the time the guest was launched.
    pub launch_tcb: SnpTcb,
}

/// SEV-SNP guest policy bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpPolicy {
    /// The raw 64-bit policy.
    pub raw: u64,
    /// Minimum firmware ABI major version.
    pub abi_major: u8,
    /// Minimum firmware ABI minor version.
    pub abi_minor: u8,
    /// Simultaneous multithreading is allowed.
    pub smt_allowed: bool,
    /// A migration agent may be associated with the guest.
    pub migrate_ma_allowed: bool,
    /// Debugging is allowed (the host can read guest memory).
    pub debug_allowed: bool,
    /// The guest may run on a single socket only.
    pub single_socket: bool,
}

/// An SEV-SNP TCB version: security patch levels of the firmware components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpTcb {
    /// The raw 64-bit TCB_VERSION.
    pub raw: u64,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}
