//! Encryption at rest: the CAS master key and AES-256-GCM sealing of stored secrets.
//!
//! Stored form: `nonce (12) ‖ ciphertext ‖ tag (16)`, with associated data that binds the
//! value to its place (for secrets: policy and secret name), so a value copied to another
//! row does not decrypt.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::CasError;

/// Holds the CAS master key. The default keeps it in a file (mode 0600); a TEE sealing key or
/// an external KMS can implement this trait instead.
pub trait MasterKeyProvider: Send + Sync {
    /// The 32-byte master key.
    fn master_key(&self) -> Result<Zeroizing<[u8; 32]>, CasError>;
}

/// A master key in a file of 32 raw bytes, created with mode 0600 at first start.
#[derive(Debug, Clone)]
pub struct FileMasterKey {
    path: PathBuf,
}

impl FileMasterKey {
    /// Uses the key file at `path`, creating it with a fresh random key if it does not exist.
    /// Refuses a file that group or others may access.
    pub fn open_or_create(path: &Path) -> Result<Self, CasError> {
        if !path.exists() {
            let key = Zeroizing::new(random::<32>()?);
            write_new(path, key.as_ref())?;
        }
        let provider = FileMasterKey {
            path: path.to_path_buf(),
        };
        provider.master_key()?;
        Ok(provider)
    }
}

impl MasterKeyProvider for FileMasterKey {
    fn master_key(&self) -> Result<Zeroizing<[u8; 32]>, CasError> {
        let meta = std::fs::metadata(&self.path)
            .map_err(CasError::io(format!("reading {}", self.path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CasError::Io {
                context: format!("master key file {}", self.path.display()),
                error: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "group or others may access it; use chmod 600",
                ),
            });
        }
        let bytes = Zeroizing::new(
            std::fs::read(&self.path)
                .map_err(CasError::io(format!("reading {}", self.path.display())))?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CasError::Io {
            context: format!("master key file {}", self.path.display()),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, "expected 32 bytes"),
        })?;
        Ok(Zeroizing::new(key))
    }
}

/// Creates `path` (mode 0600; an existing file is never overwritten) holding `bytes`, synced.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CasError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(CasError::io(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(CasError::io(format!("writing {}", path.display())))
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], CasError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| CasError::Crypto(format!("no randomness: {e}")))?;
    Ok(out)
}

/// Seals and opens values under the master key.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(redacted)")
    }
}

impl Sealer {
    /// A sealer using the provider's key.
    pub fn new(provider: &dyn MasterKeyProvider) -> Result<Self, CasError> {
        let key = provider.master_key()?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref())
            .map_err(|_| CasError::Crypto("master key length".into()))?;
        Ok(Sealer { cipher })
    }

    /// Encrypts `plaintext` with associated data `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CasError> {
        let nonce = random::<12>()?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CasError::Crypto("sealing a value at rest".into()))?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value sealed with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CasError> {
        if sealed.len() < 12 + 16 {
            return Err(CasError::Crypto("stored value too short".into()));
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CasError::Crypto("a stored value does not authenticate".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_values_bind_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let provider = FileMasterKey::open_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealer = Sealer::new(&provider).unwrap();
        let sealed = sealer.seal(b"policy-a/secret", b"value").unwrap();
        assert_eq!(
            &*sealer.open(b"policy-a/secret", &sealed).unwrap(),
            b"value"
        );
        assert!(sealer.open(b"policy-b/secret", &sealed).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(FileMasterKey::open_or_create(&path).is_err());
    }
}
