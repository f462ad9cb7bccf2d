//! Intel TDX reports through the Linux `tdx-guest` driver (`/dev/tdx_guest`, UAPI
//! `include/uapi/linux/tdx-guest.h`, Linux 6.2+): `TDX_CMD_GET_REPORT0` returns the
//! 1024-byte TDREPORT (`TDG.MR.REPORT`) binding 64 bytes of report data.
//!
//! A TDREPORT alone is **not remotely verifiable**: it is MACed with a key that only the local
//! platform (the TDX module and its quoting enclave) can check. A verifier needs a quote,
//! which is the TDREPORT signed by the quoting enclave: obtain it through configfs-tsm
//! ([`super::TsmAttester`], Linux 6.7+; `detect` prefers it) or by sending the TDREPORT to a
//! quoting service (QGS) on the host. This attester is for that second path and for local
//! checks.
//!
//! Where the layout comes from: Debian bookworm's `linux-libc-dev` is 6.1 and has no
//! `linux/tdx-guest.h`, and no backports kernel headers install here, so the layout is taken
//! from the upstream header (Linux 6.2, `include/uapi/linux/tdx-guest.h`:
//! `struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; }` and
//! `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)`), pinned by compile-time
//! assertions on the size and the ioctl number, which [`iowr`] computes as the kernel's macro
//! does (checked against `<asm-generic/ioctl.h>` by the SEV-SNP module's header test).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::ioctl::iowr;
use super::{AttestError, io_error};

/// Default device of the Linux `tdx-guest` driver.
pub const DEFAULT_TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Size of a TDREPORT (`TDX_REPORT_LEN`).
pub const TDREPORT_LEN: usize = 1024;
/// `TDX_REPORTDATA_LEN`.
const TDX_REPORTDATA_LEN: usize = 64;

/// `struct tdx_report_req`.
#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; TDX_REPORTDATA_LEN],
    tdreport: [u8; TDREPORT_LEN],
}
const _: () = assert!(size_of::<TdxReportReq>() == 1088);

/// `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)`.
const TDX_CMD_GET_REPORT0: u32 = iowr(b'T', 1, size_of::<TdxReportReq>());
const _: () = assert!(TDX_CMD_GET_REPORT0 == 0xC440_5401);

/// Collects TDREPORTs through `/dev/tdx_guest`.
#[derive(Debug, Clone)]
pub struct TdxGuestAttester {
    device: PathBuf,
}

impl TdxGuestAttester {
    /// Uses the device `device` (normally [`DEFAULT_TDX_GUEST_DEVICE`]).
    pub fn new(device: impl Into<PathBuf>) -> Self {
        TdxGuestAttester {
            device: device.into(),
        }
    }

    /// The device used.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Returns the [`TDREPORT_LEN`]-byte TDREPORT binding `report_data`. Not remotely
    /// verifiable by itself: see the module documentation.
    pub fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        let device = &self.device;
        let file = File::options()
            .read(true)
            .write(true)
            .open(device)
            .map_err(io_error(device))?;
        let mut req = Box::new(TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        });
        // SAFETY: `req` is a live, exclusive `struct tdx_report_req` for the duration of the
        // call; TDX_CMD_GET_REPORT0 encodes exactly that argument type, which the driver reads
        // (`reportdata`) and writes (`tdreport`) and does not retain.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                TDX_CMD_GET_REPORT0 as libc::Ioctl,
                std::ptr::from_mut(&mut *req),
            )
        };
        if rc < 0 {
            let error = std::io::Error::last_os_error();
            return Err(AttestError::Interface(format!(
                "{}: TDX_CMD_GET_REPORT0 failed: {error}",
                device.display()
            )));
        }
        Ok(req.tdreport.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tdx_guest");
        let err = TdxGuestAttester::new(&path).report(&[0; 64]).unwrap_err();
        super::super::assert_not_found(&err, &path);
    }

    #[test]
    fn not_a_tdx_guest_device_is_an_interface_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = TdxGuestAttester::new(file.path())
            .report(&[0; 64])
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AttestError::Interface(_)), "{err:?}");
        assert!(text.contains("TDX_CMD_GET_REPORT0 failed"), "{text}");
        assert!(text.contains(&file.path().display().to_string()), "{text}");
    }
}
