//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`): create a report entry,
//! write the report data to `inblob`, read `outblob` (the SNP report or TDX quote) and
//! `provider`, and check through `generation` that no other writer raced us.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AttestError, io_error};
use crate::{Evidence, Tee};

/// Collects evidence through configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    entry: Option<String>,
}

impl TsmAttester {
    /// Uses the report directory `root` (normally `/sys/kernel/config/tsm/report`), creating
    /// and removing a private entry per request.
    pub fn new(root: &Path) -> Self {
        TsmAttester {
            root: root.to_path_buf(),
            entry: None,
        }
    }

    /// Reuses an existing entry `name` under the root (for example one created by an init
    /// container) instead of creating one per request. The generation check detects
    /// concurrent writers.
    pub fn with_entry(mut self, name: impl Into<String>) -> Self {
        self.entry = Some(name.into());
        self
    }

    /// Collects evidence binding `report_data`.
    pub fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        match &self.entry {
            Some(name) => read_report(&self.root.join(name), report_data),
            None => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let name = format!(
                    "cipherlake-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let entry = self.root.join(name);
                std::fs::create_dir(&entry).map_err(io_error(&entry))?;
                let result = read_report(&entry, report_data);
                // configfs removes the entry's attributes with the directory.
                let removed = std::fs::remove_dir(&entry).map_err(io_error(&entry));
                let evidence = result?;
                removed?;
                Ok(evidence)
            }
        }
    }
}

fn read_report(entry: &Path, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
    let file = |name: &str| entry.join(name);
    let inblob = file("inblob");
    std::fs::write(&inblob, report_data).map_err(io_error(&inblob))?;
    let generation = read_generation(&file("generation"))?;
    let outblob_path = file("outblob");
    let outblob = std::fs::read(&outblob_path).map_err(io_error(&outblob_path))?;
    let provider_path = file("provider");
    let provider = std::fs::read_to_string(&provider_path).map_err(io_error(&provider_path))?;
    if read_generation(&file("generation"))? != generation {
        return Err(AttestError::Interface(format!(
            "{}: another writer changed the request while the report was generated; retry",
            entry.display()
        )));
    }
    let tee = match provider.trim() {
        "sev_guest" => Tee::SevSnp,
        "tdx_guest" => Tee::Tdx,
        other => {
            return Err(AttestError::Interface(format!(
                "configfs-tsm provider {other:?} is not supported (expected sev_guest or tdx_guest)"
            )));
        }
    };
    if outblob.is_empty() {
        return Err(AttestError::Interface(format!(
            "{} is empty",
            outblob_path.display()
        )));
    }
    Ok(Evidence::new(tee, outblob))
}

fn read_generation(path: &Path) -> Result<u64, AttestError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    text.trim().parse().map_err(|_| {
        AttestError::Interface(format!(
            "{}: not a number: {:?}",
            path.display(),
            text.trim()
        ))
    })
}
