//! Access token signing: Ed25519 key pairs generated here, kept in the store with the private
//! key sealed under a key derived from the server key, and JWTs (EdDSA) signed with the active
//! one. Which key is active is the store's answer (`crate::store::signing_keys`), so every
//! worker on every host signs with the same key; each worker caches it until it retires.

use crate::clock::duration_ms;
use crate::config::TokenConfig;
use crate::crypto::RandomError;
use crate::keys::ServerKey;
use crate::sealing::{SealError, Sealer};
use crate::store::signing_keys::SigningKeyRecord;
use authq_protocol::ops::{
    ACCESS_TOKEN_ALG, AccessClaims, CLIENT_TYPE_SERVICE, CLIENT_TYPE_USER, Jwk, JwksReply,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::path::Path;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// The label the signing keys' sealing key is derived by from the server key.
const SEALING_LABEL: &str = "authq signing keys v1";

/// The label of the key service client secrets are digested under.
const CLIENT_SECRET_LABEL: &str = "authq service client secrets v1";

/// Why a token or key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The CSPRNG failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A private key could not be sealed or opened (a replaced server key).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The key pair could not be generated.
    #[error("cannot generate an Ed25519 key pair")]
    Generate,
    /// A stored key is not a valid Ed25519 key.
    #[error("signing key {0} is not a valid Ed25519 key")]
    BadKey(String),
    /// The JWT could not be encoded.
    #[error("cannot sign an access token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A key that signs: its id, when it retires, and the private key.
pub struct SigningKey {
    /// The key id.
    pub kid: String,
    /// When it stops signing (Unix ms).
    pub retire_at: i64,
    /// When it leaves the published set (Unix ms): no token it signs outlives this.
    pub expires_at: i64,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// An access token just signed.
#[derive(Debug)]
pub struct SignedAccess {
    /// The JWT.
    pub token: authq_protocol::Secret,
    /// When it expires (Unix ms; `exp` is the same instant in seconds).
    pub expires_at: i64,
}

/// The worker's token signer: the configuration, the sealing key, the cached active key.
pub struct Tokens {
    config: TokenConfig,
    sealer: Sealer,
    client_key: Zeroizing<[u8; 32]>,
    active: Mutex<Option<Arc<SigningKey>>>,
    /// The kids last written to the JWKS file (to rewrite it only when they change).
    written: Mutex<Option<Vec<String>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// A signer for `config`, sealing private keys under a key derived from `server_key`.
    pub fn new(config: TokenConfig, server_key: &ServerKey) -> Self {
        Self {
            config,
            sealer: Sealer::derived(server_key, SEALING_LABEL),
            client_key: server_key.derive(CLIENT_SECRET_LABEL),
            active: Mutex::new(None),
            written: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// The keyed digest a service client's secret is stored under: HMAC-SHA256 under a key
    /// derived from the server key. A fast hash suffices for a 256-bit random secret (no
    /// guessing attack is feasible, unlike a password), and keeps `service_token` cheap.
    pub fn client_secret_digest(&self, client_id: &str, secret: &str) -> crate::crypto::Digest {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(self.client_key.as_ref()) else {
            unreachable!("HMAC takes keys of any length")
        };
        for part in [client_id.as_bytes(), secret.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The cached key, if it still signs at `now`.
    pub fn cached(&self, now: i64) -> Option<Arc<SigningKey>> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.as_ref().filter(|k| k.retire_at > now).cloned()
    }

    /// A fresh key pair that would sign from `now` for one rotation interval, its private key
    /// sealed for its `kid`.
    pub fn generate(&self, now: i64) -> Result<SigningKeyRecord, TokenError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| TokenError::Generate)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| TokenError::BadKey("new".into()))?;
        let kid = crate::crypto::new_session_id()?;
        let retire_at = now.saturating_add(duration_ms(self.config.rotation_interval));
        Ok(SigningKeyRecord {
            sealed_private: self.sealer.seal(pkcs8.as_ref(), kid.as_bytes())?,
            public_key: pair.public_key().as_ref().to_vec(),
            not_before: now,
            retire_at,
            expires_at: retire_at.saturating_add(duration_ms(self.config.access_ttl)),
            kid,
        })
    }

    /// Opens a stored key's private half and caches it as the active key.
    pub fn activate(&self, record: &SigningKeyRecord) -> Result<Arc<SigningKey>, TokenError> {
        let pkcs8 = Zeroizing::new(
            self.sealer
                .open(&record.sealed_private, record.kid.as_bytes())?,
        );
        Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| TokenError::BadKey(record.kid.clone()))?;
        let key = Arc::new(SigningKey {
            kid: record.kid.clone(),
            retire_at: record.retire_at,
            expires_at: record.expires_at,
            encoding: EncodingKey::from_ed_der(&pkcs8),
        });
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&key));
        Ok(key)
    }

    /// Signs a user's access token for session `sid` at `now`. It expires after the configured
    /// lifetime, and never after its key leaves the published set.
    pub fn sign_user(
        &self,
        key: &SigningKey,
        sub: &str,
        sid: &str,
        session_epoch: u64,
        now: i64,
    ) -> Result<SignedAccess, TokenError> {
        let expires_at = now
            .saturating_add(duration_ms(self.config.access_ttl))
            .min(key.expires_at);
        let claims = AccessClaims {
            sub: sub.to_owned(),
            sid: Some(sid.to_owned()),
            client_type: CLIENT_TYPE_USER.to_owned(),
            scope: None,
            iat: now.div_euclid(1000),
            exp: expires_at.div_euclid(1000),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            jti: crate::crypto::new_session_id()?,
            session_epoch: Some(session_epoch),
        };
        self.sign(key, &claims)
    }

    /// Signs a service client's access token (`client_type: service`, `scope`) at `now`.
    pub fn sign_service(
        &self,
        key: &SigningKey,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<SignedAccess, TokenError> {
        let expires_at = now
            .saturating_add(duration_ms(self.config.access_ttl))
            .min(key.expires_at);
        let claims = AccessClaims {
            sub: client_id.to_owned(),
            sid: None,
            client_type: CLIENT_TYPE_SERVICE.to_owned(),
            scope: Some(scope.to_owned()),
            iat: now.div_euclid(1000),
            exp: expires_at.div_euclid(1000),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            jti: crate::crypto::new_session_id()?,
            session_epoch: None,
        };
        self.sign(key, &claims)
    }

    /// Encodes and signs `claims` with `key`.
    fn sign(&self, key: &SigningKey, claims: &AccessClaims) -> Result<SignedAccess, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &key.encoding)?;
        Ok(SignedAccess {
            token: authq_protocol::Secret::new(token),
            expires_at: claims.exp.saturating_mul(1000),
        })
    }

    /// The JWKS of `keys` (as [`crate::store::Tx::published_signing_keys`] lists them).
    pub fn jwks(keys: &[SigningKeyRecord]) -> JwksReply {
        JwksReply {
            keys: keys
                .iter()
                .map(|k| Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(&k.public_key),
                    kid: k.kid.clone(),
                    alg: ACCESS_TOKEN_ALG.into(),
                    use_: "sig".into(),
                })
                .collect(),
        }
    }

    /// Whether the JWKS file needs writing for `jwks` (its key set changed since the last
    /// write), noting it as written.
    pub fn file_outdated(&self, jwks: &JwksReply) -> bool {
        let kids: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.as_ref() == Some(&kids) {
            return false;
        }
        *written = Some(kids);
        true
    }

    /// Forgets what was written, so the next publication rewrites the file (after a failed
    /// write).
    pub fn forget_written(&self) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Writes `jwks` to `path` atomically: a temporary file beside it, renamed over it, so a
/// gateway reading the file sees the old set or the new one, never half of one.
pub fn write_jwks_file(path: &Path, jwks: &JwksReply) -> std::io::Result<()> {
    use std::io::Write as _;
    let text = serde_json::to_vec_pretty(jwks).map_err(std::io::Error::other)?;
    let suffix = crate::crypto::new_session_id().map_err(std::io::Error::other)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}.tmp"));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
