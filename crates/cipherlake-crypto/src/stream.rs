//! Streaming AEAD for spill files: chunked AES-256-GCM in the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár), through RustCrypto's `aead::stream::EncryptorBE32`.
//!
//! Format:
//!
//! ```text
//! header  = "CLSA" ‖ version (1 byte, = 1) ‖ segment size (u32 BE) ‖ nonce prefix (7 random bytes)
//! segment = AES-256-GCM(key, nonce = prefix ‖ counter (u32 BE) ‖ last flag (1 byte), aad = header)
//! ```
//!
//! Every segment but the last holds exactly `segment size` plaintext bytes; the last holds
//! 0 to `segment size` bytes and is sealed with the last flag set. So:
//!
//! - tampering with any byte (header included, as it is every segment's AAD) fails;
//! - reordering segments fails (the counter is in the nonce);
//! - a segment from another file fails (its random nonce prefix and header differ);
//! - truncation fails, mid-segment or at a segment boundary (the segment then read as last
//!   was not sealed as last), and so does appending data;
//! - a wrong key fails.
//!
//! The key ([`StreamKey`]) is meant to be random per process and held only in memory.

use std::fmt;
use std::io::{self, Read, Write};

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

/// Plaintext bytes per segment used by [`EncryptingWriter::new`].
pub const DEFAULT_SEGMENT_SIZE: usize = 64 * 1024;
/// Largest segment size a reader accepts (bounds the memory an untrusted header can ask for).
pub const MAX_SEGMENT_SIZE: usize = 16 * 1024 * 1024;

const MAGIC: [u8; 4] = *b"CLSA";
const VERSION: u8 = 1;
const NONCE_PREFIX_LENGTH: usize = 7;
/// Length of the per-file header.
pub const HEADER_LENGTH: usize = 4 + 1 + 4 + NONCE_PREFIX_LENGTH;
/// Bytes each segment adds (the GCM tag).
pub const TAG_LENGTH: usize = 16;

/// An AES-256 key for spill streams, zeroized on drop and never printed.
pub struct StreamKey(Zeroizing<[u8; 32]>);

impl StreamKey {
    /// A fresh random key from the operating system CSPRNG.
    pub fn generate() -> Result<Self, StreamError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut_slice()).map_err(|_| StreamError::Random)?;
        Ok(Self(key))
    }

    /// A key from given bytes (tests, or a key derived elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

/// Errors of the streaming AEAD. Surfaced through `std::io::Error` (kind `InvalidData` for
/// bad input, `Other` otherwise) with this type as the inner error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
    /// The segment size asked of the writer, or found in a header, is 0 or too large.
    #[error("invalid segment size {0} (must be 1..={MAX_SEGMENT_SIZE})")]
    InvalidSegmentSize(usize),
    /// The stream ends inside the header.
    #[error("encrypted stream is truncated inside its header")]
    TruncatedHeader,
    /// The header does not start with the magic bytes.
    #[error("not an encrypted cipherlake stream (bad magic bytes)")]
    BadMagic,
    /// The header has an unknown version.
    #[error("unsupported encrypted stream version {0}")]
    UnsupportedVersion(u8),
    /// A segment failed authentication.
    #[error(
        "encrypted stream segment {segment} failed authentication (tampered, truncated, reordered, \
         from another stream, or wrong key)"
    )]
    Authentication {
        /// 0-based index of the segment.
        segment: u32,
    },
    /// The stream has more segments than the 32-bit counter allows.
    #[error("encrypted stream exceeds 2^32 - 1 segments")]
    TooManySegments,
    /// An earlier error left the writer or reader unusable.
    #[error("encrypted stream is unusable after an earlier error")]
    Failed,
}

impl From<StreamError> for io::Error {
    fn from(error: StreamError) -> Self {
        let kind = match error {
            StreamError::Random | StreamError::TooManySegments | StreamError::Failed => {
                io::ErrorKind::Other
            }
            StreamError::InvalidSegmentSize(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

fn check_segment_size(segment_size: usize) -> Result<(), StreamError> {
    if segment_size == 0 || segment_size > MAX_SEGMENT_SIZE {
        return Err(StreamError::InvalidSegmentSize(segment_size));
    }
    Ok(())
}

/// Encrypts everything written to it into `inner`. Call [`EncryptingWriter::finish`] at the
/// end: it seals the last segment. A writer dropped without `finish` leaves a stream that
/// every reader rejects as truncated. `flush` flushes `inner` but keeps up to one segment of
/// plaintext buffered (segments have a fixed size).
pub struct EncryptingWriter<W: Write> {
    inner: W,
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    header: [u8; HEADER_LENGTH],
    buffer: Zeroizing<Vec<u8>>,
    segment_size: usize,
}

impl<W: Write> fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("segment_size", &self.segment_size)
            .field("buffered", &self.buffer.len())
            .field("failed", &self.encryptor.is_none())
            .finish_non_exhaustive()
    }
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts a stream with [`DEFAULT_SEGMENT_SIZE`] segments, writing the header to `inner`.
    pub fn new(inner: W, key: &StreamKey) -> io::Result<Self> {
        Self::with_segment_size(inner, key, DEFAULT_SEGMENT_SIZE)
    }

    /// Starts a stream with `segment_size` plaintext bytes per segment (1 to
    /// [`MAX_SEGMENT_SIZE`]), writing the header to `inner`.
    pub fn with_segment_size(
        mut inner: W,
        key: &StreamKey,
        segment_size: usize,
    ) -> io::Result<Self> {
        check_segment_size(segment_size)?;
        let mut prefix = [0u8; NONCE_PREFIX_LENGTH];
        getrandom::fill(&mut prefix).map_err(|_| StreamError::Random)?;
        let mut header = [0u8; HEADER_LENGTH];
        header[..4].copy_from_slice(&MAGIC);
        header[4] = VERSION;
        // check_segment_size bounds the size far below u32::MAX.
        header[5..9].copy_from_slice(&(segment_size as u32).to_be_bytes());
        header[9..].copy_from_slice(&prefix);
        inner.write_all(&header)?;
        Ok(Self {
            inner,
            encryptor: Some(EncryptorBE32::from_aead(key.cipher(), (&prefix).into())),
            header,
            buffer: Zeroizing::new(Vec::with_capacity(segment_size + TAG_LENGTH)),
            segment_size,
        })
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Seals the last segment, flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let encryptor = self.encryptor.take().ok_or(StreamError::Failed)?;
        encryptor
            .encrypt_last_in_place(&self.header, &mut *self.buffer)
            .map_err(|_| StreamError::TooManySegments)?;
        self.inner.write_all(&self.buffer)?;
        self.buffer.clear();
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Encrypts the full buffer as a non-last segment and writes it.
    fn write_segment(&mut self) -> io::Result<()> {
        // Any failure leaves the writer unusable: a stream with a missing segment must not
        // be continued.
        let mut encryptor = self.encryptor.take().ok_or(StreamError::Failed)?;
        let sealed = encryptor.encrypt_next_in_place(&self.header, &mut *self.buffer);
        if sealed.is_err() {
            self.buffer.clear();
            return Err(StreamError::TooManySegments.into());
        }
        let written = self.inner.write_all(&self.buffer);
        self.buffer.clear();
        written?;
        self.encryptor = Some(encryptor);
        Ok(())
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.encryptor.is_none() {
            return Err(StreamError::Failed.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only once more data arrives, so that the final segment can
        // be sealed as last by `finish`.
        if self.buffer.len() == self.segment_size {
            self.write_segment()?;
        }
        let take = (self.segment_size - self.buffer.len()).min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts and authenticates a stream written by [`EncryptingWriter`]. Returns plaintext
/// only after its segment authenticated, and reports end of stream only after the segment
/// sealed as last; any failure is an `io::Error` wrapping a [`StreamError`], and the reader
/// stays failed afterwards.
pub struct DecryptingReader<R: Read> {
    inner: R,
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
    header: [u8; HEADER_LENGTH],
    segment_size: usize,
    buffer: Zeroizing<Vec<u8>>,
    position: usize,
    lookahead: Option<u8>,
    segment: u32,
    finished: bool,
}

impl<R: Read> fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("segment_size", &self.segment_size)
            .field("segment", &self.segment)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecryptingReader<R> {
    /// Reads and checks the header of the stream in `inner` (the header is authenticated with
    /// the first segment).
    pub fn new(mut inner: R, key: &StreamKey) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LENGTH];
        if read_full(&mut inner, &mut header)? < HEADER_LENGTH {
            return Err(StreamError::TruncatedHeader.into());
        }
        if header[..4] != MAGIC {
            return Err(StreamError::BadMagic.into());
        }
        if header[4] != VERSION {
            return Err(StreamError::UnsupportedVersion(header[4]).into());
        }
        let size_bytes = [header[5], header[6], header[7], header[8]];
        let segment_size = usize::try_from(u32::from_be_bytes(size_bytes)).unwrap_or(usize::MAX);
        check_segment_size(segment_size)?;
        let prefix: [u8; NONCE_PREFIX_LENGTH] = [
            header[9], header[10], header[11], header[12], header[13], header[14], header[15],
        ];
        Ok(Self {
            inner,
            decryptor: Some(DecryptorBE32::from_aead(key.cipher(), (&prefix).into())),
            header,
            segment_size,
            buffer: Zeroizing::new(Vec::with_capacity(segment_size + TAG_LENGTH)),
            position: 0,
            lookahead: None,
            segment: 0,
            finished: false,
        })
    }

    /// Reads, authenticates and decrypts the next segment into the buffer.
    fn next_segment(&mut self) -> io::Result<()> {
        if self.decryptor.is_none() {
            return Err(StreamError::Failed.into());
        }
        let sealed_size = self.segment_size + TAG_LENGTH;
        self.buffer.clear();
        self.position = 0;
        if let Some(byte) = self.lookahead.take() {
            self.buffer.push(byte);
        }
        let filled = self.buffer.len();
        self.buffer.resize(sealed_size, 0);
        let read = read_full(&mut self.inner, &mut self.buffer[filled..])?;
        self.buffer.truncate(filled + read);

        // A full-size segment is the last one only if nothing follows it.
        let last = if self.buffer.len() == sealed_size {
            let mut next = [0u8; 1];
            if read_full(&mut self.inner, &mut next)? == 0 {
                true
            } else {
                self.lookahead = Some(next[0]);
                false
            }
        } else {
            true
        };

        let segment = self.segment;
        let mut decryptor = self.decryptor.take().ok_or(StreamError::Failed)?;
        let opened = if last {
            decryptor.decrypt_last_in_place(&self.header, &mut *self.buffer)
        } else {
            let opened = decryptor.decrypt_next_in_place(&self.header, &mut *self.buffer);
            self.decryptor = Some(decryptor);
            opened
        };
        if opened.is_err() {
            self.decryptor = None;
            self.buffer.clear();
            return Err(StreamError::Authentication { segment }.into());
        }
        self.finished = last;
        self.segment = segment.wrapping_add(1);
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.position < self.buffer.len() {
                let n = (self.buffer.len() - self.position).min(out.len());
                out[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
                self.position += n;
                return Ok(n);
            }
            if self.finished || out.is_empty() {
                return Ok(0);
            }
            self.next_segment()?;
        }
    }
}

/// Reads until `buf` is full or the reader is at end of stream; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
