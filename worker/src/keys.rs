//! The server key: 32 random bytes that live outside the database, from which the worker
//! derives the keys it seals stored data with.
//!
//! A copy of the database alone is then useless for recovering what is sealed in it. The key
//! comes from a file (`--key-file`, default: the database path with `.key` appended), created
//! with mode 0600 on the first start. Every worker that shares a database must share its key
//! file (for SQLite, they run on the same host anyway).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// Bytes in the server key.
pub const KEY_BYTES: usize = 32;

/// Why the server key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("key file {path} holds {len} bytes, not {KEY_BYTES}")]
    Length {
        /// The file.
        path: String,
        /// What it holds.
        len: usize,
    },
    /// The OS CSPRNG failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// The server key. Prints as `[redacted]`.
#[derive(Clone)]
pub struct ServerKey(Zeroizing<[u8; KEY_BYTES]>);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey([redacted])")
    }
}

impl ServerKey {
    /// Reads the key from `path`, creating the file with a fresh random key if it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let show = || path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let key: [u8; KEY_BYTES] =
                    bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                        path: show(),
                        len: bytes.len(),
                    })?;
                Ok(Self(Zeroizing::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; KEY_BYTES]);
                getrandom::fill(key.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
                write_new(path, key.as_ref()).map_err(|source| KeyError::Io {
                    path: show(),
                    source,
                })?;
                // Another worker may have created it first: whatever is on disk wins.
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Io {
                    path: show(),
                    source,
                })?);
                let key: [u8; KEY_BYTES] =
                    bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                        path: show(),
                        len: bytes.len(),
                    })?;
                Ok(Self(Zeroizing::new(key)))
            }
            Err(source) => Err(KeyError::Io {
                path: show(),
                source,
            }),
        }
    }

    /// A key for one purpose: HMAC-SHA256(server key, `label`).
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(label.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// A key made in memory (tests).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

/// Creates `path` with `bytes`, readable by its owner only; fails if it exists.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(bytes)?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = ServerKey::load_or_create(&path).unwrap();
        let b = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        assert_eq!(format!("{a:?}"), "ServerKey([redacted])");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            ServerKey::load_or_create(&path),
            Err(KeyError::Length { len: 5, .. })
        ));
    }
}
