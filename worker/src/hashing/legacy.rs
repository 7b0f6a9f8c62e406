//! Password hashes imported from other systems (`import_users`): what may be imported, the
//! self-describing form each is stored in, and how one verifies. A legacy hash verifies once,
//! at the user's next successful login, which then replaces it with argon2id (`login`'s rehash
//! branch): [`super::Verified::needs_rehash`] is always set for one.
//!
//! Stored forms, in the `password_hash` column beside argon2's PHC strings:
//! - **argon2** (any variant and version): the PHC string as given, refused at import when its
//!   parameters exceed the configured bound ([`crate::config::HashConfig::max_params`]);
//! - **bcrypt**: the modular-crypt string as given (`$2a$`, `$2b$`, `$2x$`, `$2y$`), refused at
//!   import when its cost exceeds [`MAX_BCRYPT_COST`];
//! - **tarantool-authman**: `$authman-sha256$<user id>$<hex digest>`. authman stores
//!   `digest.sha256(user_id .. password)` (authman/model/password.lua and
//!   authman/utils/utils.lua `salted_hash`: the raw 32-byte SHA-256 of the user id's text
//!   followed by the password's bytes, no other salt, no iterations); the user id is its salt,
//!   so it is kept in the stored form, and the digest is kept as lowercase hex.
//!
//! # Decisions
//! - **The salt lives in the stored string**, as in a PHC string, so verifying needs nothing
//!   but the string (login's call is unchanged), and the digest stays verifiable even if the
//!   user's id is not the one authman salted with.
//! - **An authman verification also runs argon2 against the dummy hash**: SHA-256 alone takes
//!   microseconds, so a login's timing would tell an imported, not yet rehashed user from any
//!   other. A bcrypt verification takes bcrypt's own time instead (cost 10–12: the same order as
//!   argon2 with OWASP's parameters).

use super::HashError;
use crate::config::HashParams;
use authq_protocol::ops::PasswordScheme;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of a stored tarantool-authman hash.
pub const AUTHMAN_PREFIX: &str = "$authman-sha256$";

/// The highest bcrypt cost accepted at import (2¹⁴ rounds, about a second per verification):
/// a higher one would let an imported hash tie up a hashing thread.
pub const MAX_BCRYPT_COST: u32 = 14;

/// A stored hash that is not argon2's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Legacy {
    /// A bcrypt modular-crypt string.
    Bcrypt(String),
    /// tarantool-authman's `sha256(salt .. password)`.
    Authman {
        /// The user id authman salted with.
        salt: String,
        /// The raw digest.
        digest: [u8; 32],
    },
}

/// The legacy hash a stored string holds; `None` for anything else (argon2's PHC strings).
pub(super) fn parse(stored: &str) -> Result<Option<Legacy>, HashError> {
    if is_bcrypt(stored) {
        let cost = bcrypt_cost(stored)?;
        if cost > MAX_BCRYPT_COST {
            return Err(HashError::StoredHash(format!(
                "its bcrypt cost {cost} exceeds {MAX_BCRYPT_COST}"
            )));
        }
        return Ok(Some(Legacy::Bcrypt(stored.to_owned())));
    }
    let Some(rest) = stored.strip_prefix(AUTHMAN_PREFIX) else {
        return Ok(None);
    };
    let bad = || HashError::StoredHash("not an authman hash ($authman-sha256$<id>$<hex>)".into());
    let (salt, hex) = rest.rsplit_once('$').ok_or_else(bad)?;
    if salt.is_empty() || salt.contains('$') {
        return Err(bad());
    }
    let digest = decode_hex(hex).ok_or_else(bad)?;
    Ok(Some(Legacy::Authman {
        salt: salt.to_owned(),
        digest,
    }))
}

/// Whether `password` matches a legacy hash (the digests compared in constant time).
pub(super) fn verify(legacy: &Legacy, password: &[u8]) -> Result<bool, HashError> {
    match legacy {
        Legacy::Bcrypt(hash) => {
            bcrypt::verify(password, hash).map_err(|e| HashError::StoredHash(e.to_string()))
        }
        Legacy::Authman { salt, digest } => {
            let mut h = Sha256::new();
            h.update(salt.as_bytes());
            h.update(password);
            let computed: [u8; 32] = h.finalize().into();
            Ok(bool::from(computed.ct_eq(digest)))
        }
    }
}

/// Why an imported hash is refused (said to the administrator, never containing the hash).
pub type Refusal = String;

/// The form an imported hash is stored in, after checking it: `user_id` is the id the user
/// gets (authman's salt), `max` the configured argon2 bound.
pub fn importable(
    scheme: PasswordScheme,
    hash: &str,
    user_id: &str,
    max: &HashParams,
) -> Result<String, Refusal> {
    match scheme {
        PasswordScheme::Argon2 => {
            let found = super::hasher::stored_params(hash)
                .map_err(|_| "not an argon2 PHC string".to_owned())?;
            if !hash.starts_with("$argon2") {
                return Err("not an argon2 PHC string".into());
            }
            // `stored_params` reads p as 0 for other variants; the bound is on m and t then.
            if found.memory_kib > max.memory_kib
                || found.iterations > max.iterations
                || found.parallelism > max.parallelism
            {
                return Err("its argon2 parameters exceed the configured bound".into());
            }
            Ok(hash.to_owned())
        }
        PasswordScheme::Bcrypt => {
            if !is_bcrypt(hash) {
                return Err("not a bcrypt hash ($2a$, $2b$, $2x$ or $2y$)".into());
            }
            let cost = bcrypt_cost(hash).map_err(|_| "not a bcrypt hash".to_owned())?;
            if cost > MAX_BCRYPT_COST {
                return Err(format!("its bcrypt cost exceeds {MAX_BCRYPT_COST}"));
            }
            Ok(hash.to_owned())
        }
        PasswordScheme::AuthmanSha256 => {
            if decode_hex(hash).is_none() {
                return Err("an authman hash is 64 hex digits (its 32-byte SHA-256)".into());
            }
            if user_id.contains('$') {
                return Err("the user id cannot hold `$`".into());
            }
            Ok(format!(
                "{AUTHMAN_PREFIX}{user_id}${}",
                hash.to_ascii_lowercase()
            ))
        }
    }
}

/// Whether a stored hash is an imported legacy one (bcrypt, tarantool-authman): those systems
/// hashed the password as typed, so it is verified as typed, not in authq's NFKC form.
pub fn is_legacy(stored: &str) -> bool {
    is_bcrypt(stored) || stored.starts_with(AUTHMAN_PREFIX)
}

/// The scheme a stored hash was made with, as `get_user` reports it.
pub fn scheme_of(stored: &str) -> &'static str {
    if is_bcrypt(stored) {
        "bcrypt"
    } else if stored.starts_with(AUTHMAN_PREFIX) {
        "authman_sha256"
    } else if stored.starts_with("$argon2id$") {
        "argon2id"
    } else {
        "argon2"
    }
}

fn is_bcrypt(s: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn bcrypt_cost(s: &str) -> Result<u32, HashError> {
    s.parse::<bcrypt::HashParts>()
        .map(|p| p.get_cost())
        .map_err(|e| HashError::StoredHash(e.to_string()))
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authman(user_id: &str, password: &str) -> String {
        // As authman computes it: digest.sha256(user_id .. password), here in hex.
        Sha256::digest(format!("{user_id}{password}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn max() -> HashParams {
        crate::config::HashConfig::insecure_fast_for_tests().max_params
    }

    #[test]
    fn authman_hashes_store_their_salt_and_verify() {
        let id = "5f0cbd4c-4f3a-4a8f-9a59-1b2b1c7f4e21";
        let stored = importable(
            PasswordScheme::AuthmanSha256,
            &authman(id, "pw"),
            id,
            &max(),
        )
        .unwrap();
        assert!(
            stored.starts_with(&format!("$authman-sha256${id}$")),
            "{stored}"
        );
        let legacy = parse(&stored).unwrap().unwrap();
        assert!(verify(&legacy, b"pw").unwrap());
        assert!(!verify(&legacy, b"pw ").unwrap());
        assert_eq!(scheme_of(&stored), "authman_sha256");
        for bad in ["", "abc", &"g".repeat(64)] {
            assert!(importable(PasswordScheme::AuthmanSha256, bad, id, &max()).is_err());
        }
    }

    #[test]
    fn bcrypt_hashes_verify_within_the_cost_bound() {
        let hash = bcrypt::hash_with_salt("pw", 4, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let stored = importable(PasswordScheme::Bcrypt, &hash, "u", &max()).unwrap();
        let legacy = parse(&stored).unwrap().unwrap();
        assert!(verify(&legacy, b"pw").unwrap());
        assert!(!verify(&legacy, b"px").unwrap());
        let costly = hash.replacen("$04$", "$15$", 1);
        assert!(importable(PasswordScheme::Bcrypt, &costly, "u", &max()).is_err());
        assert!(parse(&costly).is_err());
        assert!(importable(PasswordScheme::Bcrypt, "$2b$nope", "u", &max()).is_err());
    }

    #[test]
    fn argon2_hashes_are_bounded_and_not_legacy() {
        let ok = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(
            importable(PasswordScheme::Argon2, ok, "u", &max()).unwrap(),
            ok
        );
        assert_eq!(parse(ok).unwrap(), None);
        let big = ok.replace("m=64,", "m=4194304,");
        assert!(importable(PasswordScheme::Argon2, &big, "u", &max()).is_err());
        assert!(importable(PasswordScheme::Argon2, "$2b$x", "u", &max()).is_err());
    }
}
