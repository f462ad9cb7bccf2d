//! The LAS wire protocol: one request and one reply per connection, each a frame of a 4-byte
//! big-endian length followed by that many bytes of JSON.
//!
//! * request: `{"report_data": "<128 hex digits>"}` for a sim report, or
//!   `{"kind": "sim-vtpm"}` for a sim-vtpm HCL report (the LAS reads the user data and the
//!   attestation key from its TPM). Other fields are ignored; in particular a client cannot
//!   supply its measurement.
//! * reply: `{"report": "<hex report>"}` or `{"error": "<reason>"}`

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts (a hex HCL report is 5200 bytes).
pub const MAX_FRAME: usize = 16384;

/// A request for a report.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Request {
    /// What to report.
    #[serde(default)]
    pub kind: ReportKind,
    /// Sim: the 64 bytes to bind, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
}

/// The kinds of report a LAS makes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// A sim report over the request's report data.
    #[default]
    Sim,
    /// An HCL report whose hardware part is a sim report over runtime claims carrying the
    /// TPM's attestation key and the user data written to NV index 0x01400002.
    SimVtpm,
}

/// The reply: a report or an error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The signed sim report, hex.
    Report(String),
    /// Why no report was issued.
    Error(String),
}

/// Reads one frame of at most [`MAX_FRAME`] bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let len = reader.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    writer.write_u32(len).await?;
    writer.write_all(body).await?;
    writer.flush().await
}
