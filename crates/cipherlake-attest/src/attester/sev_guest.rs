//! AMD SEV-SNP reports through the Linux `sev-guest` driver (`/dev/sev-guest`, UAPI
//! `include/uapi/linux/sev-guest.h`).
//!
//! `SNP_GET_EXT_REPORT` returns the report together with the certificate table the host
//! attached (GHCB specification, "SNP Extended Guest Request"); the VCEK or VLEK that signed
//! the report is taken from it. When the host or kernel does not support extended requests,
//! `SNP_GET_REPORT` returns the report alone and the verifier needs the VCEK/VLEK from
//! elsewhere (AMD's KDS). configfs-tsm ([`super::TsmAttester`]) is the newer interface to the
//! same driver (Linux 6.7+); this one also serves older guest kernels.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ioctl::iowr;
use super::{AttestError, io_error};
use crate::snp::{REPORT_LEN, SnpCollateral};
use crate::{Collateral, Evidence, Tee};

/// Default device of the Linux `sev-guest` driver.
pub const DEFAULT_SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

// ---- UAPI: include/uapi/linux/sev-guest.h (checked against the header by a test) ----

/// `struct snp_report_req`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}
const _: () = assert!(size_of::<SnpReportReq>() == 96);

/// Size of `struct snp_report_resp`.
const RESP_LEN: usize = 4000;

/// `struct snp_report_resp`.
#[repr(C)]
struct SnpReportResp {
    data: [u8; RESP_LEN],
}
const _: () = assert!(size_of::<SnpReportResp>() == 4000);

/// `struct snp_guest_request_ioctl`. The kernel's `exitinfo2` is a union with
/// `struct { u32 fw_error; u32 vmm_error; }`: on x86 (little-endian) the firmware error is
/// bits 31:0 and the VMM error bits 63:32, see [`fw_error`] and [`vmm_error`].
#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}
const _: () = assert!(size_of::<SnpGuestRequestIoctl>() == 32);
// The union's halves are read by shifting, which matches the C layout only on little-endian.
const _: () = assert!(cfg!(target_endian = "little"));

/// `struct snp_ext_report_req`.
#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
}
const _: () = assert!(size_of::<SnpExtReportReq>() == 112);

/// `SNP_GUEST_REQ_IOC_TYPE`.
const SNP_GUEST_REQ_IOC_TYPE: u8 = b'S';
/// `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)`.
const SNP_GET_REPORT: u32 = iowr(
    SNP_GUEST_REQ_IOC_TYPE,
    0x0,
    size_of::<SnpGuestRequestIoctl>(),
);
const _: () = assert!(SNP_GET_REPORT == 0xC020_5300);
/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
const SNP_GET_EXT_REPORT: u32 = iowr(
    SNP_GUEST_REQ_IOC_TYPE,
    0x2,
    size_of::<SnpGuestRequestIoctl>(),
);
const _: () = assert!(SNP_GET_EXT_REPORT == 0xC020_5302);
/// `struct snp_derived_key_req`.
#[repr(C)]
struct SnpDerivedKeyReq {
    root_key_select: u32,
    rsvd: u32,
    guest_field_select: u64,
    vmpl: u32,
    guest_svn: u32,
    tcb_version: u64,
}
const _: () = assert!(size_of::<SnpDerivedKeyReq>() == 32);

/// `struct snp_derived_key_resp`: MSG_KEY_RSP (status u32, 28 reserved bytes, the key).
#[repr(C)]
struct SnpDerivedKeyResp {
    data: [u8; 64],
}
const _: () = assert!(size_of::<SnpDerivedKeyResp>() == 64);

/// `SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, struct snp_guest_request_ioctl)`.
const SNP_GET_DERIVED_KEY: u32 = iowr(
    SNP_GUEST_REQ_IOC_TYPE,
    0x1,
    size_of::<SnpGuestRequestIoctl>(),
);
const _: () = assert!(SNP_GET_DERIVED_KEY == 0xC020_5301);

/// What a derived key is bound to, beside the chip's VCEK-derived root (`GUEST_FIELD_SELECT`
/// of MSG_KEY_REQ: the guest policy, image id, family id, launch measurement, guest SVN, TCB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivedKeyBinding {
    /// Bind to the guest policy (bit 0).
    pub policy: bool,
    /// Bind to the family id (bit 2).
    pub family_id: bool,
}

impl DerivedKeyBinding {
    /// The field select: always the launch measurement (bit 3), plus the chosen fields.
    fn select(self) -> u64 {
        (1 << 3) | u64::from(self.policy) | (u64::from(self.family_id) << 2)
    }
}

/// A 32-byte key derived by the SEV-SNP firmware (SNP_GET_DERIVED_KEY, root key VCEK,
/// VMPL 0) and bound to the guest's launch measurement and `binding`: the same guest on the
/// same chip gets the same key; other code, or another chip, does not.
pub fn derive_key(
    device: &Path,
    binding: DerivedKeyBinding,
) -> Result<zeroize::Zeroizing<[u8; 32]>, AttestError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(device)
        .map_err(io_error(device))?;
    let mut req = SnpDerivedKeyReq {
        root_key_select: 0,
        rsvd: 0,
        guest_field_select: binding.select(),
        vmpl: 0,
        guest_svn: 0,
        tcb_version: 0,
    };
    let mut resp = Box::new(SnpDerivedKeyResp { data: [0; 64] });
    let mut io = SnpGuestRequestIoctl {
        msg_version: MSG_VERSION,
        req_data: std::ptr::from_mut(&mut req).expose_provenance() as u64,
        resp_data: std::ptr::from_mut(resp.as_mut()).expose_provenance() as u64,
        exitinfo2: 0,
    };
    // SAFETY: `req_data` points to `req`, a `struct snp_derived_key_req`, and `resp_data` to
    // `resp`, a `struct snp_derived_key_resp`; both live until the call returns.
    unsafe { guest_request(&file, SNP_GET_DERIVED_KEY, &mut io) }.map_err(|e| {
        AttestError::Interface(format!(
            "{}: {}",
            device.display(),
            describe("SNP_GET_DERIVED_KEY", &e, io.exitinfo2)
        ))
    })?;
    parse_key_response(&resp.data)
        .map_err(|e| AttestError::Interface(format!("{}: {e}", device.display())))
}

/// The key of a MSG_KEY_RSP.
fn parse_key_response(data: &[u8; 64]) -> Result<zeroize::Zeroizing<[u8; 32]>, String> {
    let status = u32_at(data, 0).unwrap_or(u32::MAX);
    if status != 0 {
        return Err(format!(
            "the SEV-SNP firmware refused to derive a key: status {status:#x}"
        ));
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&data[32..64]);
    Ok(key)
}

/// `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer is too small; `certs_len` now
/// holds the size needed.
const SNP_GUEST_VMM_ERR_INVALID_LEN: u32 = 1;
/// The message version the driver expects (`msg_version` must be non-zero).
const MSG_VERSION: u8 = 1;

fn fw_error(exitinfo2: u64) -> u32 {
    exitinfo2 as u32
}

fn vmm_error(exitinfo2: u64) -> u32 {
    (exitinfo2 >> 32) as u32
}

// ---- Certificate buffer sizes ----

const PAGE_SIZE: usize = 4096;
/// First certificate buffer: the kernel accepts page multiples up to `SEV_FW_BLOB_MAX_SIZE`
/// (16 KiB), which holds VCEK, ASK and ARK.
const INITIAL_CERTS_LEN: usize = 4 * PAGE_SIZE;
/// Never grow the buffer beyond this, whatever the host asks for.
const MAX_CERTS_LEN: usize = 1 << 20;

// ---- MSG_REPORT_RSP (SEV-SNP firmware ABI) ----

/// Offset of the report in MSG_REPORT_RSP: status u32, report_size u32, 24 reserved bytes.
const REPORT_OFFSET: usize = 32;
/// Offset of the report's signing-key field (bits 4:2: 0 VCEK, 1 VLEK, 7 none).
const KEY_INFO_OFFSET: usize = 0x48;

// ---- Certificate table (GHCB specification, GUID table) ----

/// One table entry: GUID (16 bytes, in the byte order of its text form), offset u32 and
/// length u32, little-endian, the offset counted from the start of the table.
const ENTRY_LEN: usize = 24;
/// Versioned Chip Endorsement Key.
const VCEK_GUID: [u8; 16] = guid("63da758d-e664-4564-adc5-f4b93be8accd");
/// Versioned Loaded Endorsement Key.
const VLEK_GUID: [u8; 16] = guid("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
/// AMD SEV Signing Key (or the ASVK that issues VLEKs).
const ASK_GUID: [u8; 16] = guid("4ab7b379-bbac-4fe4-a02f-05aef327c782");
/// AMD Root Key.
const ARK_GUID: [u8; 16] = guid("c0b406a4-a803-4952-9743-3fb6014cd0ae");
/// Certificate revocation list.
const CRL_GUID: [u8; 16] = guid("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");

/// Collects SEV-SNP reports through `/dev/sev-guest`.
#[derive(Debug, Clone)]
pub struct SevGuestAttester {
    device: PathBuf,
    vmpl: u32,
}

/// What the device returned: the report and, when the host attached it, the VEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevGuestEvidence {
    /// The 1184-byte attestation report.
    pub report: Vec<u8>,
    /// The DER VCEK or VLEK from the host's certificate table: the one the report's
    /// signing-key field names, if the host provided it.
    pub vek_der: Option<Vec<u8>>,
}

impl SevGuestAttester {
    /// Uses the device `device` (normally [`DEFAULT_SEV_GUEST_DEVICE`]) and requests reports
    /// at VMPL 0.
    pub fn new(device: impl Into<PathBuf>) -> Self {
        SevGuestAttester {
            device: device.into(),
            vmpl: 0,
        }
    }

    /// Requests reports for this VMPL (0 to 3; it must not be more privileged than the
    /// guest's own, or the firmware refuses).
    pub fn with_vmpl(mut self, vmpl: u32) -> Self {
        self.vmpl = vmpl;
        self
    }

    /// The device used.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Collects evidence binding `report_data`: the report, with the host's VCEK/VLEK as
    /// collateral when the host provided it (else the verifier must be given it).
    pub fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let raw = self.report(report_data)?;
        evidence_from(&self.device, raw)
    }

    /// Requests a report binding `report_data` and the host's certificate table.
    pub fn report(&self, report_data: &[u8; 64]) -> Result<SevGuestEvidence, AttestError> {
        let device = &self.device;
        if self.vmpl > 3 {
            return Err(AttestError::Interface(format!(
                "{}: VMPL {} requested; SEV-SNP has VMPLs 0 to 3",
                device.display(),
                self.vmpl
            )));
        }
        let file = File::options()
            .read(true)
            .write(true)
            .open(device)
            .map_err(io_error(device))?;
        let req = SnpReportReq {
            user_data: *report_data,
            vmpl: self.vmpl,
            rsvd: [0; 28],
        };
        let (resp, certs) = match ext_report(&file, req) {
            Ok((resp, certs)) => (resp, Some(certs)),
            // Older kernels and hosts without extended guest requests: the report alone.
            Err(ext) => match plain_report(&file, req) {
                Ok(resp) => (resp, None),
                Err(plain) => {
                    return Err(AttestError::Interface(format!(
                        "{}: {ext}; {plain}",
                        device.display()
                    )));
                }
            },
        };
        let interface = |e: String| AttestError::Interface(format!("{}: {e}", device.display()));
        let report = parse_report_response(&resp.data).map_err(interface)?;
        let vek_der = match certs {
            None => None,
            Some(buf) => {
                let table = parse_cert_table(&buf)
                    .map_err(|e| interface(format!("host certificate table: {e}")))?;
                select_vek(&table, &report).map_err(interface)?
            }
        };
        Ok(SevGuestEvidence { report, vek_der })
    }
}

/// Turns the device's answer into evidence, parsing the VEK into collateral.
fn evidence_from(device: &Path, raw: SevGuestEvidence) -> Result<Evidence, AttestError> {
    let evidence = Evidence::new(Tee::SevSnp, raw.report);
    let Some(der) = raw.vek_der else {
        return Ok(evidence);
    };
    let collateral = SnpCollateral::new(&der, None).map_err(|e| {
        AttestError::Interface(format!(
            "{}: the host's VCEK/VLEK certificate: {e}",
            device.display()
        ))
    })?;
    Ok(evidence.with_collateral(Collateral::Snp(Arc::new(collateral))))
}

/// Issues one guest request ioctl.
///
/// # Safety
///
/// `io.req_data` and `io.resp_data` must point to live, writable buffers of the request and
/// response types `request` expects, and any buffer those point to (the certificate buffer
/// of an extended request) must be live and writable for its stated length.
unsafe fn guest_request(
    file: &File,
    request: u32,
    io: &mut SnpGuestRequestIoctl,
) -> std::io::Result<()> {
    // SAFETY: `io` is a valid, exclusive `struct snp_guest_request_ioctl` for the duration of
    // the call (the driver reads it and writes back `exitinfo2`); the caller guarantees the
    // buffers it points to. `request` encodes that argument type and direction.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            request as libc::Ioctl,
            std::ptr::from_mut(io),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn new_response() -> Box<SnpReportResp> {
    Box::new(SnpReportResp {
        data: [0; RESP_LEN],
    })
}

fn new_request(req_data: u64, resp: &mut SnpReportResp) -> SnpGuestRequestIoctl {
    SnpGuestRequestIoctl {
        msg_version: MSG_VERSION,
        req_data,
        // Exposes the pointer: the driver writes the response through it.
        resp_data: std::ptr::from_mut(resp).expose_provenance() as u64,
        exitinfo2: 0,
    }
}

fn describe(ioctl: &str, error: &std::io::Error, exitinfo2: u64) -> String {
    format!(
        "{ioctl} failed: {error} (firmware error {:#x}, VMM error {:#x})",
        fw_error(exitinfo2),
        vmm_error(exitinfo2)
    )
}

/// `SNP_GET_REPORT`.
fn plain_report(file: &File, mut req: SnpReportReq) -> Result<Box<SnpReportResp>, String> {
    let mut resp = new_response();
    let req_data = std::ptr::from_mut(&mut req).expose_provenance() as u64;
    let mut io = new_request(req_data, &mut resp);
    // SAFETY: `req_data` points to `req`, a `struct snp_report_req`, and `resp_data` to
    // `resp`, a `struct snp_report_resp`; both live until the call returns.
    unsafe { guest_request(file, SNP_GET_REPORT, &mut io) }
        .map_err(|e| describe("SNP_GET_REPORT", &e, io.exitinfo2))?;
    Ok(resp)
}

/// `SNP_GET_EXT_REPORT`, growing the certificate buffer when the host asks for more.
fn ext_report(file: &File, req: SnpReportReq) -> Result<(Box<SnpReportResp>, Vec<u8>), String> {
    let mut certs_len = INITIAL_CERTS_LEN;
    loop {
        let mut certs = vec![0u8; certs_len];
        let mut ext = SnpExtReportReq {
            data: req,
            certs_address: certs.as_mut_ptr().expose_provenance() as u64,
            certs_len: certs_len as u32,
        };
        let mut resp = new_response();
        let req_data = std::ptr::from_mut(&mut ext).expose_provenance() as u64;
        let mut io = new_request(req_data, &mut resp);
        // SAFETY: `req_data` points to `ext`, a `struct snp_ext_report_req` whose
        // `certs_address` points to `certs`, `certs_len` writable bytes; `resp_data` points to
        // `resp`, a `struct snp_report_resp`. All live until the call returns. The driver may
        // write `ext.certs_len` back; it is read below through the exposed pointer's target.
        let result = unsafe { guest_request(file, SNP_GET_EXT_REPORT, &mut io) };
        match result {
            Ok(()) => return Ok((resp, certs)),
            Err(e) => {
                let needed = ext.certs_len as usize;
                if vmm_error(io.exitinfo2) == SNP_GUEST_VMM_ERR_INVALID_LEN
                    && needed > certs_len
                    && needed <= MAX_CERTS_LEN
                {
                    certs_len = needed.next_multiple_of(PAGE_SIZE);
                    continue;
                }
                let mut message = describe("SNP_GET_EXT_REPORT", &e, io.exitinfo2);
                if vmm_error(io.exitinfo2) == SNP_GUEST_VMM_ERR_INVALID_LEN {
                    message.push_str(&format!(
                        "; the host needs a {needed}-byte certificate buffer (tried {certs_len})"
                    ));
                }
                return Err(message);
            }
        }
    }
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Extracts the 1184-byte report from a MSG_REPORT_RSP (the response data of SNP_GET_REPORT).
pub fn parse_report_response(data: &[u8]) -> Result<Vec<u8>, String> {
    let (Some(status), Some(size)) = (u32_at(data, 0), u32_at(data, 4)) else {
        return Err(format!(
            "MSG_REPORT_RSP of {} bytes has no header",
            data.len()
        ));
    };
    if status != 0 {
        let name = match status {
            0x16 => " (INVALID_PARAMETERS)",
            0x27 => " (INVALID_KEY_SELECTION)",
            _ => "",
        };
        return Err(format!(
            "the SEV-SNP firmware refused the report request: status {status:#x}{name}"
        ));
    }
    if size as usize != REPORT_LEN {
        return Err(format!(
            "MSG_REPORT_RSP announces a {size}-byte report (expected {REPORT_LEN})"
        ));
    }
    data.get(REPORT_OFFSET..REPORT_OFFSET + REPORT_LEN)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            format!(
                "MSG_REPORT_RSP of {} bytes is too short for a {REPORT_LEN}-byte report",
                data.len()
            )
        })
}

/// One certificate of the host's table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertEntry<'a> {
    guid: [u8; 16],
    data: &'a [u8],
}

/// Parses a GUID table: entries up to an all-zero GUID, each pointing into `buf`.
fn parse_cert_table(buf: &[u8]) -> Result<Vec<CertEntry<'_>>, String> {
    let mut entries = Vec::new();
    for (index, raw) in buf.chunks_exact(ENTRY_LEN).enumerate() {
        let Some((guid, rest)) = raw.split_first_chunk::<16>() else {
            unreachable!("chunks are {ENTRY_LEN} bytes");
        };
        if *guid == [0; 16] {
            return Ok(entries);
        }
        let (Some(offset), Some(length)) = (u32_at(rest, 0), u32_at(rest, 4)) else {
            unreachable!("chunks are {ENTRY_LEN} bytes");
        };
        let data = (offset as usize)
            .checked_add(length as usize)
            .and_then(|end| buf.get(offset as usize..end))
            .ok_or_else(|| {
                format!(
                    "entry {index} ({}) at offset {offset}, length {length}, lies outside the \
                     {}-byte buffer",
                    guid_name(guid),
                    buf.len()
                )
            })?;
        entries.push(CertEntry { guid: *guid, data });
    }
    Err(format!(
        "the {}-byte buffer ends before the table's terminating all-zero entry",
        buf.len()
    ))
}

/// The VCEK or VLEK that `report` names as its signer, from a host certificate table (the GUID
/// table of SNP_GET_EXT_REPORT, also configfs-tsm's `auxblob`), if the table has it.
pub fn vek_from_cert_table(table: &[u8], report: &[u8]) -> Result<Option<Vec<u8>>, String> {
    select_vek(&parse_cert_table(table)?, report)
}

/// The VEK the report names as its signer, if the table has it.
fn select_vek(table: &[CertEntry<'_>], report: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let key_info = u32_at(report, KEY_INFO_OFFSET).ok_or("report too short")?;
    let wanted = match (key_info >> 2) & 0b111 {
        0 => VCEK_GUID,
        1 => VLEK_GUID,
        // Not signed by a VEK: nothing to attach.
        _ => return Ok(None),
    };
    let mut found = table.iter().filter(|e| e.guid == wanted);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!(
            "host certificate table has more than one {} entry",
            guid_name(&wanted)
        ));
    }
    match first {
        Some(e) if e.data.is_empty() => Err(format!(
            "host certificate table has an empty {} entry",
            guid_name(&wanted)
        )),
        Some(e) => Ok(Some(e.data.to_vec())),
        None => Ok(None),
    }
}

fn guid_name(guid: &[u8; 16]) -> String {
    let known = [
        (VCEK_GUID, "VCEK"),
        (VLEK_GUID, "VLEK"),
        (ASK_GUID, "ASK"),
        (ARK_GUID, "ARK"),
        (CRL_GUID, "CRL"),
    ];
    match known.iter().find(|(g, _)| g == guid) {
        Some((_, name)) => (*name).to_string(),
        None => guid_string(guid),
    }
}

/// The text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn guid_string(guid: &[u8; 16]) -> String {
    let hex = hex::encode(guid);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a GUID's text form at compile time, bytes in text order (as the table stores them).
const fn guid(text: &str) -> [u8; 16] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("GUID must be lowercase hex"),
        }
    }
    let text = text.as_bytes();
    assert!(text.len() == 36, "GUID must have 36 characters");
    let mut out = [0u8; 16];
    let (mut i, mut o) = (0, 0);
    while i < text.len() {
        if text[i] == b'-' {
            assert!(
                i == 8 || i == 13 || i == 18 || i == 23,
                "misplaced '-' in GUID"
            );
            i += 1;
            continue;
        }
        out[o] = (nibble(text[i]) << 4) | nibble(text[i + 1]);
        i += 2;
        o += 1;
    }
    assert!(o == 16, "GUID must have 32 hex digits");
    out
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;
    use std::process::Command;

    use super::*;

    const VCEK_DER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snp-turin/vcek_turin.der"
    ));

    fn field_size<S, F>(_: fn(&S) -> &F) -> u64 {
        size_of::<F>() as u64
    }

    /// Compiles and runs a C program printing each expression (after `include`), and
    /// returns the values. Panics, failing the test, if the compiler or a header is missing.
    fn c_values(include: &str, cflags: &[&str], exprs: &[&str]) -> Vec<u64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("layout.c");
        let bin = dir.path().join("layout");
        let mut program =
            format!("#include <stddef.h>\n#include <stdio.h>\n{include}\nint main(void) {{\n");
        for e in exprs {
            program.push_str(&format!(
                "    printf(\"%llu\\n\", (unsigned long long)({e}));\n"
            ));
        }
        program.push_str("    return 0;\n}\n");
        std::fs::write(&src, &program).expect("write C program");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&bin)
            .arg(&src)
            .args(cflags)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?} (install gcc): {e}"));
        assert!(
            out.status.success(),
            "{cc} failed to compile the UAPI layout check (is the kernel UAPI header \
             installed? Debian: linux-libc-dev):\n{}\n{program}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new(&bin).output().expect("run the layout check");
        assert!(run.status.success(), "layout check failed: {run:?}");
        let values: Vec<u64> = String::from_utf8(run.stdout)
            .expect("UTF-8 output")
            .lines()
            .map(|l| l.parse().expect("a number"))
            .collect();
        assert_eq!(values.len(), exprs.len(), "one value per expression");
        values
    }

    /// Asserts that each C expression equals its Rust value, listing every mismatch.
    fn assert_matches_c(include: &str, cflags: &[&str], checks: &[(&str, u64)]) {
        let exprs: Vec<&str> = checks.iter().map(|(e, _)| *e).collect();
        let values = c_values(include, cflags, &exprs);
        let mismatches: Vec<String> = checks
            .iter()
            .zip(&values)
            .filter(|((_, rust), c)| rust != *c)
            .map(|((e, rust), c)| format!("{e}: C {c}, Rust {rust}"))
            .collect();
        assert!(
            mismatches.is_empty(),
            "Rust UAPI layout differs from {include}:\n{}",
            mismatches.join("\n")
        );
    }

    #[test]
    fn layout_matches_kernel_uapi_header() {
        let ioctl = offset_of!(SnpGuestRequestIoctl, exitinfo2) as u64;
        let checks: &[(&str, u64)] = &[
            (
                "sizeof(struct snp_report_req)",
                size_of::<SnpReportReq>() as u64,
            ),
            (
                "offsetof(struct snp_report_req, user_data)",
                offset_of!(SnpReportReq, user_data) as u64,
            ),
            (
                "sizeof(((struct snp_report_req *)0)->user_data)",
                field_size(|r: &SnpReportReq| &r.user_data),
            ),
            (
                "offsetof(struct snp_report_req, vmpl)",
                offset_of!(SnpReportReq, vmpl) as u64,
            ),
            (
                "sizeof(((struct snp_report_req *)0)->vmpl)",
                field_size(|r: &SnpReportReq| &r.vmpl),
            ),
            (
                "offsetof(struct snp_report_req, rsvd)",
                offset_of!(SnpReportReq, rsvd) as u64,
            ),
            (
                "sizeof(((struct snp_report_req *)0)->rsvd)",
                field_size(|r: &SnpReportReq| &r.rsvd),
            ),
            (
                "sizeof(struct snp_report_resp)",
                size_of::<SnpReportResp>() as u64,
            ),
            (
                "offsetof(struct snp_report_resp, data)",
                offset_of!(SnpReportResp, data) as u64,
            ),
            (
                "sizeof(((struct snp_report_resp *)0)->data)",
                field_size(|r: &SnpReportResp| &r.data),
            ),
            (
                "sizeof(struct snp_guest_request_ioctl)",
                size_of::<SnpGuestRequestIoctl>() as u64,
            ),
            (
                "offsetof(struct snp_guest_request_ioctl, msg_version)",
                offset_of!(SnpGuestRequestIoctl, msg_version) as u64,
            ),
            (
                "sizeof(((struct snp_guest_request_ioctl *)0)->msg_version)",
                field_size(|r: &SnpGuestRequestIoctl| &r.msg_version),
            ),
            (
                "offsetof(struct snp_guest_request_ioctl, req_data)",
                offset_of!(SnpGuestRequestIoctl, req_data) as u64,
            ),
            (
                "sizeof(((struct snp_guest_request_ioctl *)0)->req_data)",
                field_size(|r: &SnpGuestRequestIoctl| &r.req_data),
            ),
            (
                "offsetof(struct snp_guest_request_ioctl, resp_data)",
                offset_of!(SnpGuestRequestIoctl, resp_data) as u64,
            ),
            (
                "sizeof(((struct snp_guest_request_ioctl *)0)->resp_data)",
                field_size(|r: &SnpGuestRequestIoctl| &r.resp_data),
            ),
            ("offsetof(struct snp_guest_request_ioctl, exitinfo2)", ioctl),
            (
                "sizeof(((struct snp_guest_request_ioctl *)0)->exitinfo2)",
                field_size(|r: &SnpGuestRequestIoctl| &r.exitinfo2),
            ),
            ("offsetof(struct snp_guest_request_ioctl, fw_error)", ioctl),
            ("sizeof(((struct snp_guest_request_ioctl *)0)->fw_error)", 4),
            (
                "offsetof(struct snp_guest_request_ioctl, vmm_error)",
                ioctl + 4,
            ),
            (
                "sizeof(((struct snp_guest_request_ioctl *)0)->vmm_error)",
                4,
            ),
            // The union's halves, as the driver fills them.
            (
                "((struct snp_guest_request_ioctl){ .exitinfo2 = 0x0000000700000005ULL }).fw_error",
                u64::from(fw_error(0x0000_0007_0000_0005)),
            ),
            (
                "((struct snp_guest_request_ioctl){ .exitinfo2 = 0x0000000700000005ULL }).vmm_error",
                u64::from(vmm_error(0x0000_0007_0000_0005)),
            ),
            (
                "sizeof(struct snp_ext_report_req)",
                size_of::<SnpExtReportReq>() as u64,
            ),
            (
                "offsetof(struct snp_ext_report_req, data)",
                offset_of!(SnpExtReportReq, data) as u64,
            ),
            (
                "sizeof(((struct snp_ext_report_req *)0)->data)",
                field_size(|r: &SnpExtReportReq| &r.data),
            ),
            (
                "offsetof(struct snp_ext_report_req, certs_address)",
                offset_of!(SnpExtReportReq, certs_address) as u64,
            ),
            (
                "sizeof(((struct snp_ext_report_req *)0)->certs_address)",
                field_size(|r: &SnpExtReportReq| &r.certs_address),
            ),
            (
                "offsetof(struct snp_ext_report_req, certs_len)",
                offset_of!(SnpExtReportReq, certs_len) as u64,
            ),
            (
                "sizeof(((struct snp_ext_report_req *)0)->certs_len)",
                field_size(|r: &SnpExtReportReq| &r.certs_len),
            ),
            ("SNP_GUEST_REQ_IOC_TYPE", u64::from(SNP_GUEST_REQ_IOC_TYPE)),
            ("SNP_GET_REPORT", u64::from(SNP_GET_REPORT)),
            ("SNP_GET_EXT_REPORT", u64::from(SNP_GET_EXT_REPORT)),
            ("SNP_GET_DERIVED_KEY", u64::from(SNP_GET_DERIVED_KEY)),
            (
                "sizeof(struct snp_derived_key_req)",
                size_of::<SnpDerivedKeyReq>() as u64,
            ),
            (
                "offsetof(struct snp_derived_key_req, guest_field_select)",
                offset_of!(SnpDerivedKeyReq, guest_field_select) as u64,
            ),
            (
                "offsetof(struct snp_derived_key_req, vmpl)",
                offset_of!(SnpDerivedKeyReq, vmpl) as u64,
            ),
            (
                "offsetof(struct snp_derived_key_req, guest_svn)",
                offset_of!(SnpDerivedKeyReq, guest_svn) as u64,
            ),
            (
                "offsetof(struct snp_derived_key_req, tcb_version)",
                offset_of!(SnpDerivedKeyReq, tcb_version) as u64,
            ),
            (
                "sizeof(struct snp_derived_key_resp)",
                size_of::<SnpDerivedKeyResp>() as u64,
            ),
            (
                "SNP_GUEST_VMM_ERR_INVALID_LEN",
                u64::from(SNP_GUEST_VMM_ERR_INVALID_LEN),
            ),
        ];
        // The 6.1 header uses `_IOWR` without including <linux/ioctl.h> itself.
        assert_matches_c(
            "#include <linux/ioctl.h>\n#include <linux/sev-guest.h>",
            &[],
            checks,
        );
    }

    #[test]
    #[should_panic(expected = "sizeof(struct snp_report_req): C 96, Rust 95")]
    fn layout_check_reports_a_mismatch() {
        assert_matches_c(
            "#include <linux/sev-guest.h>",
            &[],
            &[("sizeof(struct snp_report_req)", 95)],
        );
    }

    #[test]
    #[should_panic(expected = "failed to compile")]
    fn layout_check_fails_without_the_header() {
        assert_matches_c("#include <linux/no-such-header.h>", &[], &[("1", 1)]);
    }

    #[test]
    fn guids_are_the_ghcb_ones() {
        assert_eq!(
            guid_string(&VCEK_GUID),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(VCEK_GUID[..4], [0x63, 0xda, 0x75, 0x8d]);
        assert_eq!(
            guid_string(&VLEK_GUID),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!(
            guid_string(&ASK_GUID),
            "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        );
        assert_eq!(
            guid_string(&ARK_GUID),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        );
    }

    /// Builds a table: entries, terminator, then the blobs.
    fn table(certs: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let mut offset = (certs.len() + 1) * ENTRY_LEN;
        let mut head = Vec::new();
        let mut blobs = Vec::new();
        for (guid, data) in certs {
            head.extend_from_slice(guid);
            head.extend_from_slice(&(offset as u32).to_le_bytes());
            head.extend_from_slice(&(data.len() as u32).to_le_bytes());
            blobs.extend_from_slice(data);
            offset += data.len();
        }
        head.extend_from_slice(&[0; ENTRY_LEN]);
        head.extend_from_slice(&blobs);
        head
    }

    fn report_signed_by(key: u32) -> Vec<u8> {
        let mut report = vec![0u8; REPORT_LEN];
        report[KEY_INFO_OFFSET..KEY_INFO_OFFSET + 4].copy_from_slice(&(key << 2).to_le_bytes());
        report
    }

    #[test]
    fn cert_table_good() {
        let mut buf = table(&[
            (VCEK_GUID, b"vcek"),
            (ASK_GUID, b"ask!"),
            (ARK_GUID, b"ark"),
        ]);
        // The driver's buffer is page-sized: zeroes follow the blobs.
        buf.resize(INITIAL_CERTS_LEN, 0);
        let entries = parse_cert_table(&buf).unwrap();
        assert_eq!(
            entries,
            [
                CertEntry {
                    guid: VCEK_GUID,
                    data: b"vcek"
                },
                CertEntry {
                    guid: ASK_GUID,
                    data: b"ask!"
                },
                CertEntry {
                    guid: ARK_GUID,
                    data: b"ark"
                },
            ]
        );
        assert_eq!(
            select_vek(&entries, &report_signed_by(0)).unwrap(),
            Some(b"vcek".to_vec())
        );
        // A VLEK-signed report does not take the VCEK.
        assert_eq!(select_vek(&entries, &report_signed_by(1)).unwrap(), None);
        assert_eq!(select_vek(&entries, &report_signed_by(7)).unwrap(), None);
    }

    #[test]
    fn cert_table_vlek_and_empty() {
        let buf = table(&[(VCEK_GUID, b"vcek"), (VLEK_GUID, b"vlek")]);
        let entries = parse_cert_table(&buf).unwrap();
        assert_eq!(
            select_vek(&entries, &report_signed_by(1)).unwrap(),
            Some(b"vlek".to_vec())
        );
        // A host without certificates leaves the buffer zeroed.
        assert_eq!(parse_cert_table(&[0; INITIAL_CERTS_LEN]).unwrap(), []);
    }

    #[test]
    fn cert_table_truncated() {
        let buf = table(&[(VCEK_GUID, b"vcek")]);
        // Cut inside the terminator: the blob is gone too.
        let err = parse_cert_table(&buf[..ENTRY_LEN + 10]).unwrap_err();
        assert!(err.contains("entry 0 (VCEK)"), "{err}");
        // Cut inside the terminator, the entry pointing into what is left.
        let mut cut = buf[..ENTRY_LEN + 10].to_vec();
        cut[16..20].copy_from_slice(&0u32.to_le_bytes());
        let err = parse_cert_table(&cut).unwrap_err();
        assert!(err.contains("terminating all-zero entry"), "{err}");
        // Cut inside the first entry.
        let err = parse_cert_table(&buf[..10]).unwrap_err();
        assert!(err.contains("terminating all-zero entry"), "{err}");
        let err = parse_cert_table(&[]).unwrap_err();
        assert!(err.contains("terminating all-zero entry"), "{err}");
        // Cut inside the blob.
        let err = parse_cert_table(&buf[..buf.len() - 1]).unwrap_err();
        assert!(err.contains("entry 0 (VCEK)"), "{err}");
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn cert_table_offsets_out_of_bounds() {
        let mut buf = table(&[(VCEK_GUID, b"vcek")]);
        buf[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_cert_table(&buf).unwrap_err();
        assert!(err.contains("offset 4294967295"), "{err}");
        // offset + length overflows 32 bits but not usize: still out of bounds.
        let mut buf = table(&[(VCEK_GUID, b"vcek")]);
        buf[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_cert_table(&buf).unwrap_err();
        assert!(err.contains("length 4294967295"), "{err}");
        // An unknown GUID is named by its text form.
        let other = guid("11111111-2222-3333-4444-555555555555");
        let mut buf = table(&[(other, b"x")]);
        buf[16..20].copy_from_slice(&1000u32.to_le_bytes());
        let err = parse_cert_table(&buf).unwrap_err();
        assert!(
            err.contains("11111111-2222-3333-4444-555555555555"),
            "{err}"
        );
    }

    #[test]
    fn cert_table_missing_terminator() {
        let mut buf = table(&[(VCEK_GUID, b"vcek")]);
        // Replace the terminator's GUID: the next "entry" is the blob, then the buffer ends.
        buf[ENTRY_LEN..2 * ENTRY_LEN].copy_from_slice(&[0xAA; ENTRY_LEN]);
        assert!(parse_cert_table(&buf).is_err());
        let mut no_terminator = Vec::new();
        no_terminator.extend_from_slice(&VCEK_GUID);
        no_terminator.extend_from_slice(&0u32.to_le_bytes());
        no_terminator.extend_from_slice(&4u32.to_le_bytes());
        let err = parse_cert_table(&no_terminator).unwrap_err();
        assert!(err.contains("terminating all-zero entry"), "{err}");
    }

    #[test]
    fn cert_table_duplicate_or_empty_vek() {
        let buf = table(&[(VCEK_GUID, b"one"), (VCEK_GUID, b"two")]);
        let entries = parse_cert_table(&buf).unwrap();
        let err = select_vek(&entries, &report_signed_by(0)).unwrap_err();
        assert!(err.contains("more than one VCEK"), "{err}");
        let buf = table(&[(VCEK_GUID, b"")]);
        let entries = parse_cert_table(&buf).unwrap();
        let err = select_vek(&entries, &report_signed_by(0)).unwrap_err();
        assert!(err.contains("empty VCEK"), "{err}");
    }

    fn response(status: u32, size: u32) -> Vec<u8> {
        let mut data = vec![0u8; RESP_LEN];
        data[0..4].copy_from_slice(&status.to_le_bytes());
        data[4..8].copy_from_slice(&size.to_le_bytes());
        for (i, b) in data[REPORT_OFFSET..REPORT_OFFSET + REPORT_LEN]
            .iter_mut()
            .enumerate()
        {
            *b = i as u8;
        }
        data
    }

    #[test]
    fn report_response_good() {
        let report = parse_report_response(&response(0, 1184)).unwrap();
        assert_eq!(report.len(), 1184);
        assert_eq!(report[..4], [0, 1, 2, 3]);
        assert_eq!(report[1183], (1183 % 256) as u8);
    }

    #[test]
    fn report_response_status_nonzero() {
        let err = parse_report_response(&response(0x16, 1184)).unwrap_err();
        assert!(err.contains("status 0x16 (INVALID_PARAMETERS)"), "{err}");
        let err = parse_report_response(&response(0x99, 1184)).unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }

    #[test]
    fn report_response_wrong_size() {
        for size in [0, 1000, 1183, 1185, 4000] {
            let err = parse_report_response(&response(0, size)).unwrap_err();
            assert!(err.contains(&format!("{size}-byte report")), "{err}");
        }
        let err = parse_report_response(&response(0, 1184)[..100]).unwrap_err();
        assert!(err.contains("too short"), "{err}");
        let err = parse_report_response(&[0; 6]).unwrap_err();
        assert!(err.contains("no header"), "{err}");
    }

    #[test]
    fn derived_keys_are_bound_to_the_measurement_and_refusals_are_named() {
        let binding = DerivedKeyBinding {
            policy: true,
            family_id: false,
        };
        assert_eq!(binding.select(), 0b1001);
        let mut ok = [0u8; 64];
        ok[32..].copy_from_slice(&[7; 32]);
        assert_eq!(*parse_key_response(&ok).unwrap(), [7; 32]);
        let mut refused = ok;
        refused[0] = 0x16;
        assert!(parse_key_response(&refused).unwrap_err().contains("0x16"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sev-guest");
        let err = derive_key(&path, binding).unwrap_err();
        super::super::assert_not_found(&err, &path);
    }

    #[test]
    fn missing_device_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sev-guest");
        let err = SevGuestAttester::new(&path).attest(&[0; 64]).unwrap_err();
        super::super::assert_not_found(&err, &path);
    }

    #[test]
    fn not_a_sev_guest_device_names_both_ioctls() {
        // A regular file answers both ioctls with ENOTTY.
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = SevGuestAttester::new(file.path())
            .report(&[0; 64])
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AttestError::Interface(_)), "{err:?}");
        assert!(text.contains(&file.path().display().to_string()), "{text}");
        assert!(text.contains("SNP_GET_EXT_REPORT failed"), "{text}");
        assert!(text.contains("SNP_GET_REPORT failed"), "{text}");
    }

    #[test]
    fn vmpl_above_3_is_refused() {
        let err = SevGuestAttester::new("/nonexistent")
            .with_vmpl(4)
            .report(&[0; 64])
            .unwrap_err();
        assert!(err.to_string().contains("VMPL 4"), "{err}");
    }

    #[test]
    fn evidence_carries_the_vek_as_collateral() {
        let device = Path::new(DEFAULT_SEV_GUEST_DEVICE);
        let raw = SevGuestEvidence {
            report: report_signed_by(0),
            vek_der: Some(VCEK_DER.to_vec()),
        };
        let evidence = evidence_from(device, raw).unwrap();
        assert_eq!(evidence.tee, Tee::SevSnp);
        assert_eq!(evidence.bytes.len(), REPORT_LEN);
        assert!(matches!(evidence.collateral, Some(Collateral::Snp(_))));

        let raw = SevGuestEvidence {
            report: report_signed_by(0),
            vek_der: None,
        };
        assert!(evidence_from(device, raw).unwrap().collateral.is_none());

        let raw = SevGuestEvidence {
            report: report_signed_by(0),
            vek_der: Some(b"not a certificate".to_vec()),
        };
        let err = evidence_from(device, raw).unwrap_err();
        assert!(err.to_string().contains("VCEK/VLEK certificate"), "{err}");
    }
}
