//! Signed access tokens: whether the deployment issues them, for whom, for how long, and how
//! often their signing key rotates.

use std::path::PathBuf;
use std::time::Duration;

/// Access tokens (JWTs signed with Ed25519) issued beside sessions. Off by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// Whether `login` and `social_login` also return an access token.
    pub enabled: bool,
    /// How long an access token is valid: also the revocation lag a gateway verifying tokens
    /// locally accepts. Default 5 minutes.
    pub access_ttl: Duration,
    /// The `iss` claim. Default `authq`.
    pub issuer: String,
    /// The `aud` claim. Default `authq`.
    pub audience: String,
    /// How long a signing key signs before a new one takes over. Default 24 hours. A retired key
    /// stays published for `access_ttl` more, until every token it signed has expired.
    pub rotation_interval: Duration,
    /// Where the worker writes the JWKS (the published keys) for gateways that read a file;
    /// `None`: nowhere. Written atomically (a new file renamed over the old one).
    pub jwks_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            access_ttl: Duration::from_secs(5 * 60),
            issuer: "authq".into(),
            audience: "authq".into(),
            rotation_interval: Duration::from_secs(24 * 60 * 60),
            jwks_file: None,
        }
    }
}

impl TokenConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.access_ttl < Duration::from_secs(1) {
            return Some("the access token lifetime must be at least 1 s");
        }
        if self.rotation_interval < Duration::from_secs(1) {
            return Some("the signing key rotation interval must be at least 1 s");
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Some("the access token issuer and audience must not be empty");
        }
        None
    }
}
