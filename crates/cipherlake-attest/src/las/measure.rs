//! Measuring the peer: SHA-384 of the executable of the process at the other end of the
//! socket, found through SO_PEERCRED and `/proc/PID/exe`, cached by file identity.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha384};
use tokio::sync::Mutex;

/// Cache entries kept before the cache is cleared.
const MAX_CACHED: usize = 1024;

/// A file is cached only if its change time is at least this much older than the moment its
/// hashing began. File timestamps are coarse (one clock tick, up to seconds on some file
/// systems), so a file rewritten within the tick of its last change keeps its change time; such
/// a "racily clean" file is hashed again on every request until it has settled.
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// Identity of an executable file's content: device, inode, size, modification and change
/// times. Any write to the file changes at least the change time (once the clock has moved on,
/// see [`SETTLE_TIME`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A measured executable: the file (device and inode, as `stat` through `/proc/PID/exe`
/// reports them) and the SHA-384 of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executable {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// SHA-384 of the content.
    pub hash: [u8; 48],
}

/// Measures processes' executables, hashing each distinct file once.
#[derive(Debug, Default)]
pub struct Measurer {
    cache: Mutex<HashMap<FileKey, [u8; 48]>>,
}

impl Measurer {
    /// The executable of process `pid` and its SHA-384.
    ///
    /// Measurements are serialised, so concurrent requests from instances of one program hash
    /// it once.
    pub async fn measure(&self, pid: i32) -> std::io::Result<Executable> {
        self.measure_path(PathBuf::from(format!("/proc/{pid}/exe")))
            .await
    }

    /// The file at `path` (followed if it is a symlink, as `/proc/PID/exe` is) and its SHA-384.
    pub(crate) async fn measure_path(&self, path: PathBuf) -> std::io::Result<Executable> {
        let mut cache = self.cache.lock().await;
        let (file, key) = tokio::task::spawn_blocking(move || open(path))
            .await
            .map_err(std::io::Error::other)??;
        let measured = |hash| Executable {
            dev: key.dev,
            ino: key.ino,
            hash,
        };
        if let Some(hash) = cache.get(&key) {
            return Ok(measured(*hash));
        }
        let started = SystemTime::now();
        let (hash, after) = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let hash = hash_reader(&mut file)?;
            let after = file_key(&file.metadata()?);
            Ok::<_, std::io::Error>((hash, after))
        })
        .await
        .map_err(std::io::Error::other)??;
        if after != key {
            return Err(std::io::Error::other(
                "the executable was modified while it was being hashed",
            ));
        }
        if settled(key.ctime, started) {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, hash);
        }
        Ok(measured(hash))
    }
}

/// Whether a file last changed at `ctime` (seconds, nanoseconds) had settled when hashing began
/// at `started`: any later change gets a later change time, so the cache key cannot be reused.
fn settled(ctime: (i64, i64), started: SystemTime) -> bool {
    let Ok(started) = started.duration_since(SystemTime::UNIX_EPOCH) else {
        return false;
    };
    let ctime_ns = i128::from(ctime.0) * 1_000_000_000 + i128::from(ctime.1);
    ctime_ns + SETTLE_TIME.as_nanos() as i128 <= started.as_nanos() as i128
}

fn open(path: PathBuf) -> std::io::Result<(std::fs::File, FileKey)> {
    let file = std::fs::File::open(path)?;
    let key = file_key(&file.metadata()?);
    Ok((file, key))
}

fn file_key(m: &std::fs::Metadata) -> FileKey {
    FileKey {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

/// SHA-384 of a file's content.
pub fn hash_file(mut file: std::fs::File) -> std::io::Result<[u8; 48]> {
    hash_reader(&mut file)
}

fn hash_reader(file: &mut std::fs::File) -> std::io::Result<[u8; 48]> {
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settled_files_are_cacheable() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(settled((1_000_000 - 2, 0), now));
        assert!(settled((1_000_000 - 3, 999_999_999), now));
        assert!(!settled((1_000_000 - 2, 1), now));
        assert!(!settled((1_000_000, 0), now));
        assert!(!settled((1_000_001, 0), now));
    }

    /// A file rewritten with content of the same size, its modification time put back, and
    /// within one tick of the file system's clock keeps its cache key but for the change time;
    /// the cache must not hand out the old hash for it.
    #[tokio::test]
    async fn a_rewritten_file_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exe");
        std::fs::write(&path, b"version one").expect("write");
        let mtime = std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let measurer = Measurer::default();
        let first = measurer.measure_path(path.clone()).await.expect("measure");
        assert_eq!(first.hash, <[u8; 48]>::from(Sha384::digest(b"version one")));

        let file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut &file, b"version two").expect("rewrite");
        file.set_modified(mtime).expect("restore mtime");
        drop(file);

        let second = measurer.measure_path(path).await.expect("measure");
        assert_eq!((second.dev, second.ino), (first.dev, first.ino));
        assert_eq!(
            second.hash,
            <[u8; 48]>::from(Sha384::digest(b"version two"))
        );
    }
}
