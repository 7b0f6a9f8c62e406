//! Secrets authq issues (session tokens, reset tokens, confirmation codes) and their digests.
//!
//! Everything comes from the operating system's CSPRNG. The store only ever sees digests, so a
//! copy of the database does not hold a usable token or code.

use authq_protocol::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 digest of a secret, as stored.
pub type Digest = [u8; 32];

/// Bytes of randomness in session and reset tokens (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// Digits in a confirmation code.
pub const CODE_DIGITS: u32 = 8;

/// The OS CSPRNG failed: nothing secure can be issued.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` bytes from the OS CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// A new random token (256 bits, base64url without padding: 43 characters) and its digest.
pub fn new_token() -> Result<(Secret, Digest), RandomError> {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<TOKEN_BYTES>()?);
    let digest = digest(&token);
    Ok((Secret::new(token), digest))
}

/// A new session id: 128 random bits as 32 lowercase hex digits, drawn independently of the
/// session's token (so nothing about the token can be learnt from it).
pub fn new_session_id() -> Result<String, RandomError> {
    use std::fmt::Write as _;
    let mut id = String::with_capacity(32);
    for b in random_bytes::<16>()? {
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
}

/// A new confirmation code of [`CODE_DIGITS`] uniformly random decimal digits, and its digest.
pub fn new_code() -> Result<(Secret, Digest), RandomError> {
    const RANGE: u32 = 10u32.pow(CODE_DIGITS);
    // Largest multiple of RANGE that fits in u32: values at or above it are rejected so every
    // code is equally likely.
    const LIMIT: u32 = u32::MAX - (u32::MAX % RANGE);
    loop {
        let n = u32::from_le_bytes(random_bytes::<4>()?);
        if n < LIMIT {
            let code = format!("{:0width$}", n % RANGE, width = CODE_DIGITS as usize);
            let digest = digest(&code);
            return Ok((Secret::new(code), digest));
        }
    }
}

/// The SHA-256 digest of a secret as presented by a caller.
pub fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

/// The label the code key is derived from the server key with.
pub const CODE_KEY_LABEL: &str = "authq one-time codes v1";

/// The key one-time codes are stored under: derived from the server key (`--key-file`), which
/// lives outside the database. Prints as `[redacted]`.
#[derive(Clone)]
pub struct CodeKey(zeroize::Zeroizing<[u8; 32]>);

impl CodeKey {
    /// The code key of a server key.
    pub fn from_server_key(server: &crate::keys::ServerKey) -> Self {
        Self(server.derive(CODE_KEY_LABEL))
    }

    /// The key material.
    pub fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey([redacted])")
    }
}

/// The keyed digest a one-time code or reset token is stored under: HMAC-SHA256 with the
/// worker's code key over the flow, the email key and the code. Without the key (which is not
/// in the database) a stolen digest cannot be brute-forced back into an 8-digit code, and a code
/// issued for one email or flow never matches another's.
pub fn code_digest(key: &[u8], purpose: &str, email_key: &str, code: &str) -> Digest {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    for part in [
        b"authq-code-v1".as_slice(),
        purpose.as_bytes(),
        email_key.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Compares two digests in constant time.
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_digested() {
        let (a, da) = new_token().unwrap();
        let (b, db) = new_token().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(digest(a.expose()), da);
        assert!(!digests_equal(&da, &db));
        assert!(digests_equal(&da, &digest(a.expose())));
    }

    #[test]
    fn code_keys_come_from_the_server_key_and_never_print() {
        let server = crate::keys::ServerKey::from_bytes([9; 32]);
        let k = CodeKey::from_server_key(&server);
        assert_eq!(k.expose(), server.derive(CODE_KEY_LABEL).as_ref());
        assert_eq!(format!("{k:?}"), "CodeKey([redacted])");
    }

    #[test]
    fn code_digests_need_the_key_and_bind_email_and_flow() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let d = code_digest(&k1, "confirm", "ann@example.com", "12345678");
        assert_eq!(
            d,
            code_digest(&k1, "confirm", "ann@example.com", "12345678")
        );
        assert_ne!(
            d,
            digest("12345678"),
            "not a plain hash a dump could be searched for"
        );
        assert_ne!(
            d,
            code_digest(&k2, "confirm", "ann@example.com", "12345678")
        );
        assert_ne!(d, code_digest(&k1, "reset", "ann@example.com", "12345678"));
        assert_ne!(
            d,
            code_digest(&k1, "confirm", "bob@example.com", "12345678")
        );
        // Field boundaries are length-prefixed: no ambiguity between (ab, c) and (a, bc).
        assert_ne!(
            code_digest(&k1, "confirm", "a", "b1"),
            code_digest(&k1, "confirm", "ab", "1")
        );
    }

    #[test]
    fn codes_are_eight_digits() {
        for _ in 0..100 {
            let (c, d) = new_code().unwrap();
            assert_eq!(c.expose().len(), 8);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(digest(c.expose()), d);
        }
    }
}
