//! Gramine's `/dev/attestation` pseudo-files (SGX DCAP): write `user_report_data`, read
//! `quote`.

use std::path::{Path, PathBuf};

use super::{AttestError, io_error};
use crate::{Evidence, Tee};

/// Collects SGX quotes through Gramine.
#[derive(Debug, Clone)]
pub struct GramineAttester {
    root: PathBuf,
}

impl GramineAttester {
    /// Uses the attestation directory `root` (normally `/dev/attestation`) if it offers DCAP
    /// quotes; the error says why not.
    pub fn probe(root: &Path) -> Result<Self, String> {
        let kind = std::fs::read_to_string(root.join("attestation_type"))
            .map_err(|e| format!("attestation_type: {e}"))?;
        match kind.trim() {
            "dcap" => Ok(GramineAttester {
                root: root.to_path_buf(),
            }),
            other => Err(format!("attestation type {other:?}, need \"dcap\"")),
        }
    }

    /// Collects a quote binding `report_data`.
    pub fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let user = self.root.join("user_report_data");
        std::fs::write(&user, report_data).map_err(io_error(&user))?;
        let quote_path = self.root.join("quote");
        let quote = std::fs::read(&quote_path).map_err(io_error(&quote_path))?;
        if quote.is_empty() {
            return Err(AttestError::Interface(format!(
                "{} is empty",
                quote_path.display()
            )));
        }
        Ok(Evidence::new(Tee::Sgx, quote))
    }
}
