//! Big-endian marshalling of TPM 2.0 structures (TPM 2.0 Part 1, 18): fixed-size integers and
//! `TPM2B` size-prefixed buffers.

use crate::VerifyError;

/// Reads a marshalled structure front to back; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, naming `what` in errors.
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            offset: 0,
            what,
        }
    }

    /// A malformed-input error at the current offset.
    pub(crate) fn error(&self, reason: impl Into<String>) -> VerifyError {
        VerifyError::malformed(self.what, self.offset, reason)
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], VerifyError> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(format!(
                "truncated: {n} bytes needed, {} left",
                self.bytes.len() - self.offset
            )));
        };
        let out = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], VerifyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A `UINT8`.
    pub(crate) fn u8(&mut self) -> Result<u8, VerifyError> {
        Ok(self.array::<1>()?[0])
    }

    /// A `UINT16`.
    pub(crate) fn u16(&mut self) -> Result<u16, VerifyError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A `UINT32`.
    pub(crate) fn u32(&mut self) -> Result<u32, VerifyError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A `UINT64`.
    pub(crate) fn u64(&mut self) -> Result<u64, VerifyError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `TPM2B`: a `UINT16` size and that many bytes.
    pub(crate) fn sized(&mut self) -> Result<&'a [u8], VerifyError> {
        let size = self.u16()?;
        self.bytes(usize::from(size))
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.offset..];
        self.offset = self.bytes.len();
        out
    }

    /// Requires that everything was read.
    pub(crate) fn finish(&self) -> Result<(), VerifyError> {
        if self.offset == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.bytes.len() - self.offset)))
        }
    }
}

/// Builds a marshalled structure.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    /// Appends a `UINT8`.
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// Appends a `UINT16`.
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a `UINT32`.
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends a `TPM2B` (callers keep buffers under 64 KiB; TPM buffers are far smaller).
    pub(crate) fn sized(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        self.u16(len).raw(&bytes[..usize::from(len)])
    }
}
