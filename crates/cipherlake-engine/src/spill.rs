//! Encrypted spill files: a DataFusion [`TempFileFactory`] whose files hold only AES-256-GCM
//! ciphertext under a random key made for each session (on its first spill) that lives in
//! memory only.
//!
//! DataFusion 55 writes every spill (sort, aggregation, join, repartition) through
//! `DiskManager::create_tmp_file`, which hands the request to a custom [`TempFileFactory`] when
//! one is configured (`DiskManagerMode::Custom`); spill files are written through
//! [`SpillFile::open_writer`] and read back through [`SpillFile::read_stream`].
//!
//! The repartition spill pool reads a file while it is still being written, after each
//! `flush`. So the format is a sequence of independently sealed frames rather than one stream
//! sealed at the end: the writer buffers plaintext and seals a frame at [`FRAME_SIZE`] bytes,
//! on `flush` and on `finish`. Each frame is `u32` big-endian ciphertext length ‖ AES-256-GCM
//! ciphertext ‖ tag, with nonce = 64-bit file number (unique in the process) ‖ 32-bit frame
//! number, so frames cannot be moved between positions or files. The number of frames
//! sealed is kept in memory and a reader reads exactly that many: a truncated, reordered,
//! substituted or modified file fails with an error naming the file.
//!
//! DataFusion enforces `datafusion.runtime.max_temp_directory_size` only on its own temporary
//! files, so the factory enforces it itself: every file's frames count against one
//! [`SpillLimit`] per session, and a frame that would exceed it fails the spill.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use datafusion::common::human_readable_size;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::disk_manager::DEFAULT_MAX_TEMP_DIRECTORY_SIZE;
use datafusion::execution::{SpillFile, SpillWriter, TempFileFactory};
use futures::Stream;
use tempfile::{NamedTempFile, TempDir};
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

/// Plaintext bytes per frame (a frame is also sealed at every flush).
pub const FRAME_SIZE: usize = 256 * 1024;

/// How many bytes a session's spill files may hold on disk at once, and how many they hold:
/// the session's `datafusion.runtime.max_temp_directory_size` (100 GiB by default, as
/// DataFusion's). The maximum can change while files exist; it applies to the next frame.
#[derive(Debug)]
pub struct SpillLimit {
    max: AtomicU64,
    used: AtomicU64,
}

impl Default for SpillLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TEMP_DIRECTORY_SIZE)
    }
}

impl SpillLimit {
    /// A limit of `max` bytes, none used.
    pub fn new(max: u64) -> Self {
        Self {
            max: AtomicU64::new(max),
            used: AtomicU64::new(0),
        }
    }

    /// Changes the maximum.
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The maximum in bytes.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Bytes the session's spill files hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more, unless that would exceed the maximum.
    fn reserve(&self, bytes: u64) -> std::io::Result<()> {
        let max = self.max();
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > max {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(std::io::Error::other(format!(
                "the encrypted spill files would exceed the session's limit of {} \
                 (datafusion.runtime.max_temp_directory_size, or the worker's --spill-limit)",
                human_readable_size(usize::try_from(max).unwrap_or(usize::MAX))
            )));
        }
        Ok(())
    }

    /// Counts `bytes` fewer (a file was deleted).
    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Creates encrypted spill files in a private temporary directory. The key and the directory
/// are made on the first spill, so sessions that never spill touch neither.
pub struct EncryptedTempFileFactory {
    parent: Option<PathBuf>,
    limit: Arc<SpillLimit>,
    ready: Mutex<Option<Arc<Ready>>>,
    next_file: AtomicU64,
}

/// The key and directory of a factory that has spilled.
struct Ready {
    cipher: Arc<Aes256Gcm>,
    dir: TempDir,
}

impl fmt::Debug for EncryptedTempFileFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedTempFileFactory")
            .field("parent", &self.parent)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl EncryptedTempFileFactory {
    /// A factory creating files in a new directory inside `parent` (the operating system's
    /// temporary directory when `None`), under a random key generated on first use, holding
    /// at most what `limit` allows.
    pub fn new(parent: Option<PathBuf>, limit: Arc<SpillLimit>) -> Self {
        Self {
            parent,
            limit,
            ready: Mutex::new(None),
            next_file: AtomicU64::new(0),
        }
    }

    fn ready(&self) -> std::io::Result<Arc<Ready>> {
        let mut guard = self
            .ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ready) = guard.as_ref() {
            return Ok(Arc::clone(ready));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom_fill(key.as_mut_slice())?;
        let cipher = Aes256Gcm::new(key.as_slice().into());
        let mut builder = tempfile::Builder::new();
        builder.prefix("cipherlake-spill-");
        let dir = match &self.parent {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                builder.tempdir_in(parent)?
            }
            None => builder.tempdir()?,
        };
        let ready = Arc::new(Ready {
            cipher: Arc::new(cipher),
            dir,
        });
        *guard = Some(Arc::clone(&ready));
        Ok(ready)
    }
}

/// Fills `buf` from the operating system CSPRNG.
fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| std::io::Error::other("the operating system random number generator failed"))
}

impl TempFileFactory for EncryptedTempFileFactory {
    fn create_temp_file(&self, description: &str) -> Result<Arc<dyn SpillFile>> {
        let failed = |e: std::io::Error| {
            DataFusionError::Execution(format!(
                "cannot create an encrypted spill file for {description}: {e}"
            ))
        };
        let ready = self.ready().map_err(failed)?;
        let file = tempfile::Builder::new()
            .prefix("spill-")
            .tempfile_in(ready.dir.path())
            .map_err(failed)?;
        Ok(Arc::new(EncryptedSpillFile {
            state: Arc::new(FileState {
                file,
                cipher: Arc::clone(&ready.cipher),
                _dir: Arc::clone(&ready),
                limit: Arc::clone(&self.limit),
                number: self.next_file.fetch_add(1, Ordering::Relaxed),
                frames: AtomicU32::new(0),
                size: AtomicU64::new(0),
                writer_opened: AtomicBool::new(false),
            }),
        }))
    }
}

/// Shared state of one spill file.
struct FileState {
    file: NamedTempFile,
    cipher: Arc<Aes256Gcm>,
    /// Keeps the directory alive while the file exists.
    _dir: Arc<Ready>,
    /// What the file's frames count against.
    limit: Arc<SpillLimit>,
    number: u64,
    frames: AtomicU32,
    size: AtomicU64,
    writer_opened: AtomicBool,
}

impl FileState {
    fn nonce(&self, frame: u32) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.number.to_be_bytes());
        nonce[8..].copy_from_slice(&frame.to_be_bytes());
        nonce
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_owned()
    }
}

impl Drop for FileState {
    fn drop(&mut self) {
        self.limit.release(self.size.load(Ordering::Acquire));
    }
}

/// One encrypted spill file; deleted when the last reference is dropped.
struct EncryptedSpillFile {
    state: Arc<FileState>,
}

impl SpillFile for EncryptedSpillFile {
    fn path(&self) -> Option<&Path> {
        Some(self.state.file.path())
    }

    fn size(&self) -> Option<u64> {
        Some(self.state.size.load(Ordering::Acquire))
    }

    fn read_stream(&self) -> Result<Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>> {
        let state = Arc::clone(&self.state);
        let reader = FrameReader {
            file: None,
            state,
            frame: 0,
        };
        Ok(Box::pin(futures::stream::try_unfold(
            reader,
            |mut reader| async move {
                let frame = reader.next_frame().await?;
                Ok(frame.map(|bytes| (bytes, reader)))
            },
        )))
    }

    fn open_writer(&self) -> Result<Box<dyn SpillWriter>> {
        if self.state.writer_opened.swap(true, Ordering::AcqRel) {
            return Err(DataFusionError::Internal(format!(
                "encrypted spill file {} is already being written",
                self.state.file.path().display()
            )));
        }
        let file = self.state.file.as_file().try_clone().map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot open spill file {}: {e}",
                self.state.file.path().display()
            ))
        })?;
        Ok(Box::new(FrameWriter {
            file,
            state: Arc::clone(&self.state),
            buffer: Zeroizing::new(Vec::with_capacity(FRAME_SIZE)),
        }))
    }
}

/// Encrypts frames into a spill file.
struct FrameWriter {
    file: std::fs::File,
    state: Arc<FileState>,
    buffer: Zeroizing<Vec<u8>>,
}

impl FrameWriter {
    fn seal(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let frame = self.state.frames.load(Ordering::Acquire);
        let next = frame
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("spill file has too many frames"))?;
        let nonce = self.state.nonce(frame);
        let ciphertext = self
            .state
            .cipher
            .encrypt(Nonce::from_slice(&nonce), self.buffer.as_slice())
            .map_err(|_| std::io::Error::other("encrypting a spill frame failed"))?;
        self.buffer.clear();
        let len = u32::try_from(ciphertext.len())
            .map_err(|_| std::io::Error::other("spill frame too large"))?;
        let mut out = Vec::with_capacity(4 + ciphertext.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&ciphertext);
        self.state.limit.reserve(out.len() as u64)?;
        if let Err(e) = self.file.write_all(&out) {
            self.state.limit.release(out.len() as u64);
            return Err(e);
        }
        self.state
            .size
            .fetch_add(out.len() as u64, Ordering::AcqRel);
        self.state.frames.store(next, Ordering::Release);
        Ok(())
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = FRAME_SIZE - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() >= FRAME_SIZE {
            self.seal()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.seal()?;
        self.file.flush()
    }
}

impl SpillWriter for FrameWriter {
    fn finish(&mut self) -> Result<()> {
        self.flush().map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot write spill file {}: {e}",
                self.state.file.path().display()
            ))
        })
    }
}

/// Reads and authenticates the frames sealed so far.
struct FrameReader {
    file: Option<tokio::fs::File>,
    state: Arc<FileState>,
    frame: u32,
}

impl FrameReader {
    async fn next_frame(&mut self) -> Result<Option<Bytes>> {
        if self.frame >= self.state.frames.load(Ordering::Acquire) {
            return Ok(None);
        }
        let path = self.state.path();
        let broken = |what: String| {
            DataFusionError::Execution(format!("encrypted spill file {} {what}", path.display()))
        };
        if self.file.is_none() {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| broken(format!("cannot be opened: {e}")))?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(broken("is not open".to_owned()));
        };
        let truncated = |e: std::io::Error| broken(format!("is truncated or unreadable: {e}"));
        let mut len = [0u8; 4];
        file.read_exact(&mut len).await.map_err(truncated)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_SIZE + 16 {
            return Err(broken(format!("has a corrupt frame {}", self.frame)));
        }
        let mut ciphertext = vec![0u8; len];
        file.read_exact(&mut ciphertext).await.map_err(truncated)?;
        let nonce = self.state.nonce(self.frame);
        let plaintext = self
            .state
            .cipher
            .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| {
                broken(format!(
                    "frame {} failed authentication (tampered)",
                    self.frame
                ))
            })?;
        self.frame += 1;
        Ok(Some(Bytes::from(plaintext)))
    }
}
