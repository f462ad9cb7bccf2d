//! Platform key files: the 32-byte ed25519 seed, raw, readable by the owner only.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::LasError;
use crate::sim::{PlatformKey, PlatformPublicKey};

/// Creates a new platform key file (mode 0600; an existing file is never overwritten) and
/// returns the public key to register with the CAS.
pub fn init_key(path: &Path) -> Result<PlatformPublicKey, LasError> {
    let key = PlatformKey::generate().map_err(|e| LasError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("no randomness: {e}"),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(LasError::io(format!("creating {}", path.display())))?;
    file.write_all(key.seed().as_ref())
        .and_then(|()| file.sync_all())
        .map_err(LasError::io(format!("writing {}", path.display())))?;
    Ok(key.public_key())
}

/// Loads a platform key file. Refuses files that group or others can access.
pub fn load_key(path: &Path) -> Result<PlatformKey, LasError> {
    let key_error = |reason: String| LasError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| key_error(e.to_string()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(key_error(format!(
            "mode {:o} lets group or others read it; use chmod 600",
            mode & 0o777
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| key_error(e.to_string()))?);
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| key_error(format!("expected 32 bytes, found {}", bytes.len())))?,
    );
    Ok(PlatformKey::from_seed(&seed))
}
