//! Measuring the peer: SHA-384 of the executable of the process at the other end of the
//! socket, found through SO_PEERCRED and `/proc/PID/exe`, cached by file identity.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha384};
use tokio::sync::Mutex;

/// Cache entries kept before the cache is cleared.
const MAX_CACHED: usize = 1024;

/// Identity of an executable file's content: device, inode, size, modification and change
/// times. Any write to the file changes at least the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Measures processes' executables, hashing each distinct file once.
#[derive(Debug, Default)]
pub struct Measurer {
    cache: Mutex<HashMap<FileKey, [u8; 48]>>,
}

impl Measurer {
    /// SHA-384 of the executable of process `pid`.
    ///
    /// Measurements are serialised, so concurrent requests from instances of one program hash
    /// it once.
    pub async fn measure(&self, pid: i32) -> std::io::Result<[u8; 48]> {
        let mut cache = self.cache.lock().await;
        let (file, key) = tokio::task::spawn_blocking(move || open_exe(pid))
            .await
            .map_err(std::io::Error::other)??;
        if let Some(hash) = cache.get(&key) {
            return Ok(*hash);
        }
        let hash = tokio::task::spawn_blocking(move || hash_file(file))
            .await
            .map_err(std::io::Error::other)??;
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, hash);
        Ok(hash)
    }
}

fn open_exe(pid: i32) -> std::io::Result<(std::fs::File, FileKey)> {
    let file = std::fs::File::open(format!("/proc/{pid}/exe"))?;
    let m = file.metadata()?;
    let key = FileKey {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    };
    Ok((file, key))
}

/// SHA-384 of a file's content.
pub fn hash_file(mut file: std::fs::File) -> std::io::Result<[u8; 48]> {
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
