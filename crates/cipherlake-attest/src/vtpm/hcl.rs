//! The HCL report: what Azure's paravisor (the host compatibility layer) writes to vTPM NV
//! index 0x01400001. 2600 bytes, integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0    | 32   | header: `HCLA`, version, report size, request type, status, reserved |
//! | 32   | 1184 | hardware report: SEV-SNP attestation report, or TDX TDREPORT (1024 bytes, padded) |
//! | 1216 | 4    | data size (20 + variable data size) |
//! | 1220 | 4    | version |
//! | 1224 | 4    | report type: 2 = SEV-SNP, 4 = TDX |
//! | 1228 | 4    | report data hash type: 1 = SHA-256 |
//! | 1232 | 4    | variable data size |
//! | 1236 | …    | variable data: the runtime claims JSON |
//!
//! The header and the type fields are not signed by anything. They may confirm what the
//! verifier expects; they never choose how the report is verified.

use crate::VerifyError;

/// Size of an HCL report.
pub const HCL_REPORT_LEN: usize = 2600;
/// `HCLA`, little-endian.
pub const SIGNATURE: [u8; 4] = *b"HCLA";
/// Offset of the hardware report.
pub const HW_REPORT_OFFSET: usize = 32;
/// Size of the hardware report area.
pub const HW_REPORT_LEN: usize = 1184;
/// Size of a TDX TDREPORT inside the hardware report area.
pub const TD_REPORT_LEN: usize = 1024;
const DATA_OFFSET: usize = HW_REPORT_OFFSET + HW_REPORT_LEN;
const VARIABLE_OFFSET: usize = DATA_OFFSET + 20;
const WHAT: &str = "HCL report";

/// What kind of hardware report an HCL report carries, as its unsigned header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    /// An SEV-SNP attestation report (type 2).
    Snp,
    /// A TDX TDREPORT (type 4).
    Tdx,
    /// cipherlake's sim-vtpm: a LAS sim report standing in for the hardware (type
    /// [`SIM_REPORT_TYPE`]).
    Sim,
}

/// The report type cipherlake's LAS writes for sim-vtpm reports (`CLS\0`); no Azure paravisor
/// writes it.
pub const SIM_REPORT_TYPE: u32 = 0x0053_4c43;

impl ReportType {
    /// The header value.
    pub fn code(self) -> u32 {
        match self {
            ReportType::Snp => 2,
            ReportType::Tdx => 4,
            ReportType::Sim => SIM_REPORT_TYPE,
        }
    }

    /// The bytes of the hardware report area that are the report.
    fn hw_len(self) -> usize {
        match self {
            ReportType::Snp => crate::snp::REPORT_LEN,
            ReportType::Tdx => TD_REPORT_LEN,
            ReportType::Sim => crate::sim::REPORT_LEN,
        }
    }
}

/// A parsed HCL report, borrowed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    /// The hardware report (unverified until its verifier says so).
    pub hw_report: &'a [u8],
    /// The runtime claims JSON, whose SHA-256 the hardware report's report data must carry.
    pub runtime_claims: &'a [u8],
}

impl<'a> HclReport<'a> {
    /// Parses `raw` as an HCL report carrying a `expected` hardware report. A header that
    /// names another type, or another report data hash than SHA-256, is refused.
    pub fn parse(raw: &'a [u8], expected: ReportType) -> Result<Self, VerifyError> {
        if raw.len() != HCL_REPORT_LEN {
            return Err(VerifyError::malformed(
                WHAT,
                raw.len().min(HCL_REPORT_LEN),
                format!("length {} (expected {HCL_REPORT_LEN})", raw.len()),
            ));
        }
        if raw[..4] != SIGNATURE {
            return Err(VerifyError::malformed(
                WHAT,
                0,
                format!("signature {} is not HCLA", hex::encode(&raw[..4])),
            ));
        }
        let u32_at = |offset: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&raw[offset..offset + 4]);
            u32::from_le_bytes(b)
        };
        let report_type = u32_at(DATA_OFFSET + 8);
        if report_type != expected.code() {
            return Err(VerifyError::HclReportType {
                expected: expected.code(),
                found: report_type,
            });
        }
        let hash_type = u32_at(DATA_OFFSET + 12);
        if hash_type != 1 {
            return Err(VerifyError::malformed(
                WHAT,
                DATA_OFFSET + 12,
                format!("report data hash type {hash_type} (only 1, SHA-256, is used)"),
            ));
        }
        let variable_len = u32_at(DATA_OFFSET + 16) as usize;
        let runtime_claims = raw
            .get(VARIABLE_OFFSET..VARIABLE_OFFSET.saturating_add(variable_len))
            .ok_or_else(|| {
                VerifyError::malformed(
                    WHAT,
                    DATA_OFFSET + 16,
                    format!(
                        "variable data of {variable_len} bytes exceeds the report's {} bytes",
                        HCL_REPORT_LEN - VARIABLE_OFFSET
                    ),
                )
            })?;
        let data_size = u32_at(DATA_OFFSET) as usize;
        if data_size != 20 + variable_len {
            return Err(VerifyError::malformed(
                WHAT,
                DATA_OFFSET,
                format!("data size {data_size} is not 20 + variable data size {variable_len}"),
            ));
        }
        Ok(HclReport {
            hw_report: &raw[HW_REPORT_OFFSET..HW_REPORT_OFFSET + expected.hw_len()],
            runtime_claims,
        })
    }

    /// Builds an HCL report around `hw_report` and `runtime_claims` (the LAS's sim-vtpm
    /// reports; tests). Fails when either does not fit.
    pub fn build(
        report_type: ReportType,
        hw_report: &[u8],
        runtime_claims: &[u8],
    ) -> Result<Vec<u8>, String> {
        if hw_report.len() != report_type.hw_len() {
            return Err(format!(
                "hardware report of {} bytes, expected {}",
                hw_report.len(),
                report_type.hw_len()
            ));
        }
        if runtime_claims.len() > HCL_REPORT_LEN - VARIABLE_OFFSET {
            return Err(format!(
                "runtime claims of {} bytes exceed the {} bytes an HCL report holds",
                runtime_claims.len(),
                HCL_REPORT_LEN - VARIABLE_OFFSET
            ));
        }
        let mut out = vec![0u8; HCL_REPORT_LEN];
        out[..4].copy_from_slice(&SIGNATURE);
        out[4..8].copy_from_slice(&2u32.to_le_bytes());
        out[8..12].copy_from_slice(&(HCL_REPORT_LEN as u32).to_le_bytes());
        out[12..16].copy_from_slice(&2u32.to_le_bytes());
        out[HW_REPORT_OFFSET..HW_REPORT_OFFSET + hw_report.len()].copy_from_slice(hw_report);
        let len = runtime_claims.len() as u32;
        for (i, v) in [20 + len, 1, report_type.code(), 1, len]
            .into_iter()
            .enumerate()
        {
            out[DATA_OFFSET + 4 * i..DATA_OFFSET + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        out[VARIABLE_OFFSET..VARIABLE_OFFSET + runtime_claims.len()]
            .copy_from_slice(runtime_claims);
        Ok(out)
    }
}
