//! Sealing what authq keeps for a provider (PKCE verifiers, provider tokens):
//! XChaCha20-Poly1305 with a random 192-bit nonce, under a key from the configuration (never
//! from the database). Each sealed value is bound to its row by associated data, so a value
//! copied into another row does not open.

use super::config::SealKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use std::fmt;

const NONCE_BYTES: usize = 24;

/// Seals and opens values under the configured key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

/// Sealing failed (the CSPRNG or the cipher).
#[derive(Debug, thiserror::Error)]
#[error("cannot seal a value: {0}")]
pub struct SealError(String);

impl Sealer {
    /// A sealer with `key`.
    pub fn new(key: &SealKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key.0)),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| SealError(e.to_string()))?;
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// The plaintext of a sealed value, or `None` if it was sealed under another key, for
    /// other associated data, or tampered with.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let s = Sealer::new(&SealKey([7; 32]));
        let sealed = s.seal(b"verifier", b"row-1").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"verifier"));
        assert_eq!(s.open(&sealed, b"row-1").unwrap(), b"verifier");
        assert!(s.open(&sealed, b"row-2").is_none());
        assert!(
            Sealer::new(&SealKey([8; 32]))
                .open(&sealed, b"row-1")
                .is_none()
        );
        assert!(s.open(&sealed[..10], b"row-1").is_none());
        assert_ne!(
            sealed,
            s.seal(b"verifier", b"row-1").unwrap(),
            "fresh nonce"
        );
    }
}
