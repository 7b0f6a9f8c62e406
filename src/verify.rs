//! A gateway's local check of authq access tokens (feature `verify`): the signature against
//! the published keys (a JWKS, from `jwks` or the worker's JWKS file), then `alg`, `iss`,
//! `aud` and `exp` against the time the caller gives. No call to authq.
//!
//! Only EdDSA is accepted (never `none`, never an HMAC algorithm keyed with a public key), and
//! only keys of the set: a token naming a key that left the set (retired, and every token it
//! signed expired) is refused as [`VerifyError::UnknownKey`]; a gateway that sees an unknown
//! `kid` should read the set again once, since a new key may have started signing.

use authq_protocol::ops::{ACCESS_TOKEN_ALG, AccessClaims, JwksReply};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;

/// Why a token was refused (or a key set could not be read).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The key set is not a JWKS.
    #[error("the key set is not a valid JWKS: {0}")]
    KeySet(String),
    /// The token is not a JWT, or its header is unreadable.
    #[error("malformed token")]
    Malformed,
    /// The token is signed with another algorithm than EdDSA (e.g. `none`, `HS256`).
    #[error("algorithm not accepted")]
    Algorithm,
    /// The token names no key, or a key the set does not hold.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature, issuer, audience or a required claim is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token has expired.
    #[error("expired token")]
    Expired,
}

/// The keys and expectations one gateway verifies tokens with.
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with the Ed25519 keys of `jwks` (a JWKS document as JSON), expecting tokens
    /// issued by `issuer` for `audience`. Keys of other types are ignored.
    pub fn from_jwks_json(jwks: &[u8], issuer: &str, audience: &str) -> Result<Self, VerifyError> {
        let set: JwksReply =
            serde_json::from_slice(jwks).map_err(|e| VerifyError::KeySet(e.to_string()))?;
        Self::new(&set, issuer, audience)
    }

    /// A verifier with the Ed25519 keys of `set`, expecting `issuer` and `audience`.
    pub fn new(set: &JwksReply, issuer: &str, audience: &str) -> Result<Self, VerifyError> {
        let mut keys = HashMap::new();
        for k in &set.keys {
            if k.kty != "OKP" || k.crv != "Ed25519" || k.alg != ACCESS_TOKEN_ALG {
                continue;
            }
            let key = DecodingKey::from_ed_components(&k.x)
                .map_err(|e| VerifyError::KeySet(e.to_string()))?;
            keys.insert(k.kid.clone(), key);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the caller's time (below), not the system clock.
        validation.validate_exp = false;
        validation.leeway = 0;
        Ok(Self { keys, validation })
    }

    /// How many keys the verifier holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The token's claims if it is valid at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_)
            | jsonwebtoken::errors::ErrorKind::Base64(_)
            | jsonwebtoken::errors::ErrorKind::Utf8(_)
            | jsonwebtoken::errors::ErrorKind::InvalidToken => VerifyError::Malformed,
            // An algorithm jsonwebtoken does not know (`none`).
            _ => VerifyError::Algorithm,
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Algorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(VerifyError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        if data.claims.exp <= now {
            return Err(VerifyError::Expired);
        }
        Ok(data.claims)
    }
}
