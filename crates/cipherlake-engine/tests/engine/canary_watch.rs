//! Watching a directory while a query runs: no file written there may hold a canary value in
//! plaintext (spill files are deleted when the query ends, so they are read while it runs).
//! Also used by the cluster crate's tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Scans every file under `dir` until `stop`, counting non-empty files seen in `seen` and
/// panicking (the joined thread fails) if one holds `needle`.
pub fn watch(
    dir: PathBuf,
    needle: &'static [u8],
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            let done = stop.load(Ordering::Acquire);
            for path in walk(&dir) {
                if let Ok(bytes) = std::fs::read(&path) {
                    if !bytes.is_empty() {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{} holds the canary in plaintext",
                        path.display()
                    );
                }
            }
            if done {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    })
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
