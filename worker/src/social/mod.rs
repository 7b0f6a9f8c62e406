//! Social login over OAuth2 / OpenID Connect: the providers, the HTTP client that talks to
//! them, and the sealing of what authq keeps for them.
//!
//! - [`config`]: providers (presets for Google, Facebook, VK, GitHub, or fully described),
//!   the key, timeouts, the linking rule; read from the TOML configuration file.
//! - [`oauth`]: the authorization URL (state + PKCE), the token and user-info calls, reading a
//!   profile out of the provider's JSON.
//! - [`seal`]: XChaCha20-Poly1305 for PKCE verifiers and provider tokens at rest.
//!
//! The operations themselves are in `handlers::social`; states, social accounts and social
//! sessions are in the store.
//!
//! **A provider never blocks a tube.** Each delivery already runs as its own task, so a slow
//! provider call only occupies its own delivery. Calls are bounded twice: every HTTP call has
//! the configured timeout, and at most [`SocialConfig::max_concurrent_calls`] run at once per
//! worker. A call beyond that bound is not queued: `social_login` answers
//! `provider_unavailable` at once and a re-check is skipped (the session stays valid and is
//! re-checked at a later `check`), so a provider outage holds at most that many of a
//! consumer's prefetched deliveries, and the consumer keeps taking the others.

pub mod config;
pub mod oauth;
pub mod seal;

pub use config::{ProviderConfig, SocialConfig};
pub use oauth::{Identity, OAuthClient, ProviderError, Tokens};
pub use seal::Sealer;

use crate::config::ConfigError;
use authq_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The social login service of a worker: providers, HTTP client, call bound, sealer.
#[derive(Debug)]
pub struct Social {
    config: SocialConfig,
    client: Option<OAuthClient>,
    sealer: Option<Sealer>,
    permits: Arc<Semaphore>,
}

impl Social {
    /// Builds the service from its configuration (no provider: social login is off).
    pub fn new(config: SocialConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let client = if config.providers.is_empty() {
            None
        } else {
            Some(OAuthClient::new(config.http_timeout).map_err(ConfigError::Invalid)?)
        };
        let sealer = config.key.as_ref().map(Sealer::new);
        let permits = Arc::new(Semaphore::new(config.max_concurrent_calls.max(1)));
        Ok(Self {
            config,
            client,
            sealer,
            permits,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SocialConfig {
        &self.config
    }

    /// The provider called `name`, with the HTTP client and the sealer (both exist whenever a
    /// provider does).
    pub fn provider(&self, name: &str) -> Option<(&ProviderConfig, &OAuthClient, &Sealer)> {
        let provider = self.config.providers.get(name)?;
        Some((provider, self.client.as_ref()?, self.sealer.as_ref()?))
    }

    /// Whether `check` re-checks social sessions.
    pub fn rechecks_enabled(&self) -> bool {
        !self.config.providers.is_empty() && self.config.recheck_interval.is_some()
    }

    /// A permit for one provider call, or `None` when the bound is reached (never waits).
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }
}

/// Provider tokens as sealed for re-checks.
#[derive(Serialize, Deserialize)]
pub struct KeptTokens {
    /// The access token.
    #[serde(rename = "a")]
    pub access: Secret,
    /// The refresh token.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
}

impl std::fmt::Debug for KeptTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptTokens([redacted])")
    }
}

/// Associated data binding a sealed PKCE verifier to its state row.
pub fn state_aad(state_digest: &[u8]) -> Vec<u8> {
    [b"authq-oauth-state:".as_slice(), state_digest].concat()
}

/// Associated data binding sealed provider tokens to their session row.
pub fn tokens_aad(session_digest: &[u8]) -> Vec<u8> {
    [b"authq-social-tokens:".as_slice(), session_digest].concat()
}
