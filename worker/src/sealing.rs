//! The one sealing primitive: what authq keeps encrypted at rest (recorded outcomes, outbox
//! rows, social login's PKCE verifiers and provider tokens) is sealed here, and nowhere else.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce (`nonce ‖ ciphertext ‖ tag`), under a key
//! derived by label from the server key ([`ServerKey::derive`]), which lives outside the
//! database: a copy of the database alone opens nothing. Each value is bound to its place by
//! associated data (a row's digest, a request's digest), so a value copied elsewhere does not
//! open. [`Sealer::child`] derives a key bound to more context, e.g. a request's own key for its
//! outcome, so opening it takes that context as well.

use crate::crypto::{RandomError, random_bytes};
use crate::keys::ServerKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

const NONCE_BYTES: usize = 24;

/// Seals and opens values under one key (and may also open values sealed under an earlier
/// key, [`Sealer::also_opening`]).
#[derive(Clone)]
pub struct Sealer {
    key: Zeroizing<[u8; 32]>,
    cipher: XChaCha20Poly1305,
    earlier: Option<std::sync::Arc<Sealer>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The CSPRNG failed to draw a nonce.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The value was sealed under another key or for another place, or was altered (a
    /// replaced key file is the usual cause).
    #[error("a sealed value cannot be opened (sealed under another key or for another place)")]
    Open,
}

impl Sealer {
    /// A sealer under the key derived from `server` by `label` (one label per purpose).
    pub fn derived(server: &ServerKey, label: &str) -> Self {
        Self::with_key(server.derive(label))
    }

    /// A sealer under `key` itself.
    pub fn with_key(key: Zeroizing<[u8; 32]>) -> Self {
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        Self {
            key,
            cipher,
            earlier: None,
        }
    }

    /// This sealer, which also opens what `earlier` sealed (a key being retired: nothing new
    /// is sealed under it).
    #[cfg_attr(not(feature = "social"), allow(dead_code))]
    pub fn also_opening(mut self, earlier: Sealer) -> Self {
        self.earlier = Some(std::sync::Arc::new(earlier));
        self
    }

    /// A sealer under HMAC-SHA256(this key, the `parts`, each length-prefixed): what it seals
    /// opens only for someone who has this key *and* the same parts.
    pub fn child(&self, parts: &[&[u8]]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Self::with_key(Zeroizing::new(mac.finalize().into_bytes().into()))
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE_BYTES] = random_bytes()?;
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encrypts any length"));
        let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// The plaintext of a value sealed by [`Sealer::seal`] under this key (or the earlier one)
    /// for `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SealError::Open);
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
            .or_else(|_| match &self.earlier {
                Some(earlier) => earlier
                    .open(sealed, aad)
                    .map_err(|_| chacha20poly1305::Error),
                None => Err(chacha20poly1305::Error),
            })
            .map_err(|_| SealError::Open)
    }
}

/// Opening what authq sealed before this module existed, so that an upgrade loses nothing in
/// flight: outbox rows (published within seconds) and recorded outcomes (kept for the
/// idempotency window). Nothing is sealed this way any more; remove it one release after.
pub(crate) mod legacy_v1 {
    use super::SealError;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use zeroize::Zeroizing;

    /// An outbox row: ChaCha20-Poly1305, `nonce(12) ‖ ciphertext ‖ tag`, no associated data.
    pub(crate) fn open_outbox(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 12 {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(12);
        ChaCha20Poly1305::new(Key::from_slice(key))
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SealError::Open)
    }

    /// A recorded outcome: ChaCha20-Poly1305 with a zero nonce under
    /// HMAC-SHA256(key, caller ‖ 0 ‖ message id ‖ 0 ‖ body), bound to the request digest.
    pub(crate) fn open_outcome(
        key: &[u8; 32],
        [caller, message_id, body]: [&[u8]; 3],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(caller);
        mac.update(&[0]);
        mac.update(message_id);
        mac.update(&[0]);
        mac.update(body);
        let request_key = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        ChaCha20Poly1305::new(Key::from_slice(request_key.as_ref()))
            .decrypt(Nonce::from_slice(&[0; 12]), Payload { msg: sealed, aad })
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(byte: u8) -> ServerKey {
        ServerKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_value_opens_under_its_key_label_and_aad_only() {
        let sealer = Sealer::derived(&server(1), "test v1");
        let sealed = sealer.seal(b"secret", b"row 1").unwrap();
        assert_eq!(sealer.open(&sealed, b"row 1").unwrap(), b"secret");
        assert!(sealer.open(&sealed, b"row 2").is_err(), "another place");
        let other_label = Sealer::derived(&server(1), "test v2");
        assert!(
            other_label.open(&sealed, b"row 1").is_err(),
            "another label"
        );
        let other_key = Sealer::derived(&server(2), "test v1");
        assert!(
            other_key.open(&sealed, b"row 1").is_err(),
            "another server key"
        );
        assert!(sealer.open(&sealed[..10], b"row 1").is_err(), "truncated");
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert!(sealer.open(&altered, b"row 1").is_err(), "altered");
    }

    #[test]
    fn nonces_are_fresh_and_the_plaintext_does_not_show() {
        let sealer = Sealer::derived(&server(1), "test v1");
        let a = sealer.seal(b"same text", b"").unwrap();
        let b = sealer.seal(b"same text", b"").unwrap();
        assert_ne!(a, b);
        assert!(!a.windows(9).any(|w| w == b"same text"));
    }

    #[test]
    fn a_retired_key_still_opens_what_it_sealed_and_seals_nothing_new() {
        let retired = Sealer::with_key(Zeroizing::new([9; 32]));
        let old_value = retired.seal(b"kept", b"row").unwrap();
        let current = Sealer::derived(&server(1), "test v1").also_opening(retired.clone());
        assert_eq!(current.open(&old_value, b"row").unwrap(), b"kept");
        let new_value = current.seal(b"new", b"row").unwrap();
        assert!(
            retired.open(&new_value, b"row").is_err(),
            "sealed under the new key"
        );
        assert!(current.open(&old_value, b"other row").is_err());
    }

    #[test]
    fn a_child_key_needs_the_same_parts() {
        let parent = Sealer::derived(&server(1), "test v1");
        let child = parent.child(&[b"caller", b"id-1"]);
        let sealed = child.seal(b"reply", b"").unwrap();
        assert_eq!(
            parent
                .child(&[b"caller", b"id-1"])
                .open(&sealed, b"")
                .unwrap(),
            b"reply"
        );
        assert!(
            parent
                .child(&[b"caller", b"id-2"])
                .open(&sealed, b"")
                .is_err()
        );
        // Length prefixes: moving a byte from one part to the next is another key.
        assert!(
            parent
                .child(&[b"calle", b"rid-1"])
                .open(&sealed, b"")
                .is_err()
        );
        assert!(parent.open(&sealed, b"").is_err());
    }

    /// Seals the way authq did before this module: what the legacy openers must open.
    fn v1_seal(key: &[u8; 32], nonce: [u8; 12], msg: &[u8], aad: &[u8]) -> Vec<u8> {
        use chacha20poly1305::ChaCha20Poly1305;
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        ChaCha20Poly1305::new(Key::from_slice(key))
            .encrypt(
                chacha20poly1305::Nonce::from_slice(&nonce),
                Payload { msg, aad },
            )
            .unwrap()
    }

    #[test]
    fn outbox_rows_sealed_before_the_upgrade_still_open() {
        let key = *server(1).derive("authq outbox v1");
        let mut row = vec![9u8; 12];
        row.extend(v1_seal(&key, [9; 12], b"{\"id\":\"e1\"}", b""));
        assert_eq!(
            legacy_v1::open_outbox(&key, &row).unwrap(),
            b"{\"id\":\"e1\"}"
        );
        assert!(legacy_v1::open_outbox(&[2; 32], &row).is_err());
        assert!(legacy_v1::open_outbox(&key, &row[..5]).is_err());
    }

    #[test]
    fn outcomes_sealed_before_the_upgrade_still_open_for_their_request() {
        let key = *server(1).derive("authq outcome sealing v1");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(b"svc\0id-1\0{}");
        let request_key: [u8; 32] = mac.finalize().into_bytes().into();
        let sealed = v1_seal(&request_key, [0; 12], b"reply", b"digest");
        let parts: [&[u8]; 3] = [b"svc", b"id-1", b"{}"];
        assert_eq!(
            legacy_v1::open_outcome(&key, parts, &sealed, b"digest").unwrap(),
            b"reply"
        );
        let other: [&[u8]; 3] = [b"svc", b"id-2", b"{}"];
        assert!(legacy_v1::open_outcome(&key, other, &sealed, b"digest").is_err());
        assert!(legacy_v1::open_outcome(&key, parts, &sealed, b"other").is_err());
    }
}
