//! The TPM commands an attester sends, marshalled by hand (TPM 2.0 Part 3), over the kernel's
//! resource manager (`/dev/tpmrm0`) or swtpm's TCP data socket. Only password sessions with
//! empty authorization are used: the indices and keys a vTPM attester touches (the HCL report
//! index, the report-data index and the attestation key) are owner-readable without a secret.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::quote::{ALG_SHA256, PCR_COUNT};
use super::wire::{Reader, Writer};

pub(super) const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const RS_PW: u32 = 0x4000_0009;
pub(super) const RH_OWNER: u32 = 0x4000_0001;
pub(super) const ALG_NULL: u16 = 0x0010;
const ALG_RSA: u16 = 0x0001;
const ALG_RSASSA: u16 = 0x0014;
const CC_NV_WRITE: u32 = 0x0000_0137;
const CC_NV_READ: u32 = 0x0000_014e;
const CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
const CC_QUOTE: u32 = 0x0000_0158;
const CC_PCR_READ: u32 = 0x0000_017e;
const CC_READ_PUBLIC: u32 = 0x0000_0173;
/// Largest response accepted from a TPM.
const MAX_RESPONSE: usize = 8192;
/// NV reads and writes go in chunks no TPM refuses (`TPM_PT_NV_BUFFER_MAX` is at least 512).
pub(super) const NV_CHUNK: usize = 512;

/// Where the TPM is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmPath {
    /// A character device: `/dev/tpmrm0` (the kernel's resource manager).
    Device(PathBuf),
    /// swtpm's TCP data socket (tests and development), `tcp:HOST:PORT`.
    Tcp(SocketAddr),
}

/// The production TPM device.
pub const DEFAULT_TPM: &str = "/dev/tpmrm0";

impl std::str::FromStr for TpmPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("tcp:") {
            Some(addr) => addr
                .parse()
                .map(TpmPath::Tcp)
                .map_err(|e| format!("{s}: not tcp:IP:PORT ({e})")),
            None => Ok(TpmPath::Device(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for TpmPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TpmPath::Device(path) => write!(f, "{}", path.display()),
            TpmPath::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// Why a TPM command failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TPM could not be reached.
    #[error("TPM {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TPM answered with an error code.
    #[error("TPM command {command} failed with response code {code:#x}")]
    Response {
        /// The command.
        command: &'static str,
        /// `TPM_RC`.
        code: u32,
    },
    /// The response could not be parsed.
    #[error("TPM command {command}: {reason}")]
    Malformed {
        /// The command.
        command: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How a command is authorized.
#[derive(Debug, Clone, Copy)]
pub(super) enum Auth {
    /// No sessions.
    None,
    /// A password session with empty authorization.
    Password,
    /// This policy session.
    Policy(u32),
}

/// A quote as the TPM returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST`.
    pub message: Vec<u8>,
    /// The raw RSASSA signature.
    pub signature: Vec<u8>,
}

/// An open connection to a TPM.
pub struct Tpm {
    path: TpmPath,
    io: Io,
}

enum Io {
    Device(std::fs::File),
    Tcp(TcpStream),
}

impl Tpm {
    /// Opens the TPM at `path`.
    pub fn open(path: &TpmPath) -> Result<Self, TpmError> {
        let io_error = |source| TpmError::Io {
            path: path.to_string(),
            source,
        };
        let io = match path {
            TpmPath::Device(dev) => Io::Device(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dev)
                    .map_err(io_error)?,
            ),
            TpmPath::Tcp(addr) => {
                let stream =
                    TcpStream::connect_timeout(addr, Duration::from_secs(5)).map_err(io_error)?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .map_err(io_error)?;
                Io::Tcp(stream)
            }
        };
        Ok(Tpm {
            path: path.clone(),
            io,
        })
    }

    /// Sends one command and returns the response parameters.
    fn execute(
        &mut self,
        name: &'static str,
        code: u32,
        handles: &[u32],
        authorized: bool,
        params: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let auth = if authorized {
            Auth::Password
        } else {
            Auth::None
        };
        Ok(self.command(name, code, handles, auth, params, 0)?.1)
    }

    /// Sends one command with `auth` and returns the `out_handles` handles the response
    /// starts with and its parameters.
    pub(super) fn command(
        &mut self,
        name: &'static str,
        code: u32,
        handles: &[u32],
        auth: Auth,
        params: &[u8],
        out_handles: usize,
    ) -> Result<(Vec<u32>, Vec<u8>), TpmError> {
        let mut body = Writer::default();
        for handle in handles {
            body.u32(*handle);
        }
        let session = match auth {
            Auth::None => None,
            // One password session with empty authorization.
            Auth::Password => Some(RS_PW),
            // A policy session whose policy needs no authorization value.
            Auth::Policy(session) => Some(session),
        };
        if let Some(session) = session {
            // continueSession for the password session (ignored there); a policy session is
            // used once and ends with the command.
            let attributes = u8::from(matches!(auth, Auth::Password));
            body.u32(9).u32(session).u16(0).u8(attributes).u16(0);
        }
        body.raw(params);
        let mut command = Writer::default();
        command
            .u16(if session.is_some() {
                ST_SESSIONS
            } else {
                ST_NO_SESSIONS
            })
            .u32((10 + body.0.len()) as u32)
            .u32(code)
            .raw(&body.0);
        // TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING ask the caller to send the command
        // again (TPM 2.0 Part 2, 6.6.3).
        let mut attempts = 0;
        let response = loop {
            let response = self.round_trip(&command.0)?;
            let rc = response
                .get(6..10)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            attempts += 1;
            match rc {
                Some(0x922 | 0x908 | 0x90a) if attempts < 10 => {
                    std::thread::sleep(Duration::from_millis(20 * attempts));
                }
                _ => break response,
            }
        };
        let malformed = |reason: String| TpmError::Malformed {
            command: name,
            reason,
        };
        let mut r = Reader::new(&response, "TPM response");
        let (tag, size, rc) = (
            r.u16().map_err(|e| malformed(e.to_string()))?,
            r.u32().map_err(|e| malformed(e.to_string()))?,
            r.u32().map_err(|e| malformed(e.to_string()))?,
        );
        if rc != 0 {
            return Err(TpmError::Response {
                command: name,
                code: rc,
            });
        }
        if size as usize != response.len() {
            return Err(malformed(format!(
                "response says {size} bytes, {} arrived",
                response.len()
            )));
        }
        let mut handles = Vec::with_capacity(out_handles);
        for _ in 0..out_handles {
            handles.push(r.u32().map_err(|e| malformed(e.to_string()))?);
        }
        let params = if tag == ST_SESSIONS {
            let len = r.u32().map_err(|e| malformed(e.to_string()))?;
            r.bytes(len as usize)
                .map_err(|e| malformed(e.to_string()))?
                .to_vec()
        } else {
            r.rest().to_vec()
        };
        Ok((handles, params))
    }

    fn round_trip(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let io_error = |source| TpmError::Io {
            path: self.path.to_string(),
            source,
        };
        match &mut self.io {
            Io::Device(file) => {
                file.write_all(command).map_err(io_error)?;
                // The kernel returns the whole response to one read.
                let mut buf = vec![0u8; MAX_RESPONSE];
                let n = file.read(&mut buf).map_err(io_error)?;
                buf.truncate(n);
                Ok(buf)
            }
            Io::Tcp(stream) => {
                stream.write_all(command).map_err(io_error)?;
                let mut header = [0u8; 10];
                stream.read_exact(&mut header).map_err(io_error)?;
                let size =
                    u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
                if !(10..=MAX_RESPONSE).contains(&size) {
                    return Err(io_error(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response of {size} bytes"),
                    )));
                }
                let mut buf = header.to_vec();
                buf.resize(size, 0);
                stream.read_exact(&mut buf[10..]).map_err(io_error)?;
                Ok(buf)
            }
        }
    }

    /// The size of NV index `index`.
    pub fn nv_size(&mut self, index: u32) -> Result<usize, TpmError> {
        Ok(self.nv_public(index)?.1)
    }

    /// The attributes (`TPMA_NV`) and size of NV index `index`.
    pub fn nv_public(&mut self, index: u32) -> Result<(u32, usize), TpmError> {
        let name = "NV_ReadPublic";
        let out = self.execute(name, CC_NV_READ_PUBLIC, &[index], false, &[])?;
        let parse = || -> Result<(u32, usize), crate::VerifyError> {
            let mut r = Reader::new(&out, "TPM2B_NV_PUBLIC");
            let public = r.sized()?;
            let mut p = Reader::new(public, "TPMS_NV_PUBLIC");
            let _index = p.u32()?;
            let _name_alg = p.u16()?;
            let attributes = p.u32()?;
            let _policy = p.sized()?;
            Ok((attributes, usize::from(p.u16()?)))
        };
        parse().map_err(|e| TpmError::Malformed {
            command: name,
            reason: e.to_string(),
        })
    }

    /// Reads all of NV index `index`, with owner authorization.
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        let size = self.nv_size(index)?;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let chunk = (size - out.len()).min(NV_CHUNK);
            let mut params = Writer::default();
            params.u16(chunk as u16).u16(out.len() as u16);
            let response =
                self.execute("NV_Read", CC_NV_READ, &[RH_OWNER, index], true, &params.0)?;
            let data = Reader::new(&response, "NV_Read data")
                .sized()
                .map_err(|e| TpmError::Malformed {
                    command: "NV_Read",
                    reason: e.to_string(),
                })?
                .to_vec();
            if data.len() != chunk {
                return Err(TpmError::Malformed {
                    command: "NV_Read",
                    reason: format!("{} bytes returned, {chunk} asked", data.len()),
                });
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// Writes `data` to NV index `index` from offset 0, with owner authorization.
    pub fn nv_write(&mut self, index: u32, data: &[u8]) -> Result<(), TpmError> {
        for (i, chunk) in data.chunks(NV_CHUNK).enumerate() {
            let mut params = Writer::default();
            params.sized(chunk).u16((i * NV_CHUNK) as u16);
            self.execute("NV_Write", CC_NV_WRITE, &[RH_OWNER, index], true, &params.0)?;
        }
        Ok(())
    }

    /// Quotes the SHA-256 bank, PCRs 0 to 23, over `nonce`, with the key at `handle` and its
    /// own signing scheme.
    pub fn quote(&mut self, handle: u32, nonce: &[u8]) -> Result<Quote, TpmError> {
        let name = "Quote";
        let mut params = Writer::default();
        params.sized(nonce).u16(ALG_NULL);
        all_pcrs(&mut params, [0xff; 3]);
        let out = self.execute(name, CC_QUOTE, &[handle], true, &params.0)?;
        let parse = || -> Result<Quote, crate::VerifyError> {
            let mut r = Reader::new(&out, "Quote response");
            let message = r.sized()?.to_vec();
            let sig_alg = r.u16()?;
            if sig_alg != ALG_RSASSA {
                return Err(r.error(format!("signature algorithm {sig_alg:#06x}, not RSASSA")));
            }
            let hash = r.u16()?;
            if hash != ALG_SHA256 {
                return Err(r.error(format!("signature hash {hash:#06x}, not SHA-256")));
            }
            let signature = r.sized()?.to_vec();
            Ok(Quote { message, signature })
        };
        parse().map_err(|e| TpmError::Malformed {
            command: name,
            reason: e.to_string(),
        })
    }

    /// Reads the SHA-256 bank, PCRs 0 to 23, in PCR order.
    pub fn pcrs(&mut self) -> Result<Vec<Vec<u8>>, TpmError> {
        let name = "PCR_Read";
        let mut values: [Option<Vec<u8>>; PCR_COUNT] = Default::default();
        let mut remaining = [0xffu8; 3];
        // A TPM returns at most eight digests per call and says which ones.
        while remaining != [0; 3] {
            let mut params = Writer::default();
            all_pcrs(&mut params, remaining);
            let out = self.execute(name, CC_PCR_READ, &[], false, &params.0)?;
            let mut parse = || -> Result<(), crate::VerifyError> {
                let mut r = Reader::new(&out, "PCR_Read response");
                let _update_counter = r.u32()?;
                let banks = r.u32()?;
                let mut returned = [0u8; 3];
                for _ in 0..banks {
                    let alg = r.u16()?;
                    let size = usize::from(r.u8()?);
                    let bitmap = r.bytes(size)?;
                    if alg == ALG_SHA256 {
                        for (i, b) in bitmap.iter().take(3).enumerate() {
                            returned[i] |= b;
                        }
                    }
                }
                let count = r.u32()? as usize;
                let slots: Vec<usize> = (0..PCR_COUNT)
                    .filter(|i| returned[i / 8] & (1 << (i % 8)) != 0)
                    .collect();
                if count != slots.len() || count == 0 {
                    return Err(
                        r.error(format!("{count} digests for {} selected PCRs", slots.len()))
                    );
                }
                for slot in slots {
                    values[slot] = Some(r.sized()?.to_vec());
                    remaining[slot / 8] &= !(1 << (slot % 8));
                }
                Ok(())
            };
            parse().map_err(|e| TpmError::Malformed {
                command: name,
                reason: e.to_string(),
            })?;
        }
        Ok(values.into_iter().flatten().collect())
    }

    /// The RSA public key of the object at `handle` (modulus, exponent; big-endian).
    pub fn rsa_public(&mut self, handle: u32) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let name = "ReadPublic";
        let out = self.execute(name, CC_READ_PUBLIC, &[handle], false, &[])?;
        let parse = || -> Result<(Vec<u8>, Vec<u8>), crate::VerifyError> {
            let mut r = Reader::new(&out, "TPM2B_PUBLIC");
            let mut p = Reader::new(r.sized()?, "TPMT_PUBLIC");
            let kind = p.u16()?;
            if kind != ALG_RSA {
                return Err(p.error(format!("key type {kind:#06x}, not RSA")));
            }
            let _name_alg = p.u16()?;
            let _attributes = p.u32()?;
            let _policy = p.sized()?;
            if p.u16()? != ALG_NULL {
                // A symmetric definition: key bits and mode.
                p.u16()?;
                p.u16()?;
            }
            if p.u16()? != ALG_NULL {
                p.u16()?; // the scheme's hash
            }
            let _bits = p.u16()?;
            let exponent = match p.u32()? {
                0 => 65537,
                e => e,
            };
            let modulus = p.sized()?.to_vec();
            let exponent = exponent.to_be_bytes();
            let start = exponent.iter().position(|b| *b != 0).unwrap_or(3);
            Ok((modulus, exponent[start..].to_vec()))
        };
        parse().map_err(|e| TpmError::Malformed {
            command: name,
            reason: e.to_string(),
        })
    }
}

/// A `TPML_PCR_SELECTION` of the SHA-256 bank with `bitmap` (PCRs 0 to 23).
pub(super) fn all_pcrs(w: &mut Writer, bitmap: [u8; 3]) {
    w.u32(1).u16(ALG_SHA256).u8(3).raw(&bitmap);
}
