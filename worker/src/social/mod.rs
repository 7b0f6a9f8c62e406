//! Social login over OAuth2 / OpenID Connect: the providers, the HTTP client that talks to
//! them, and the sealing of what authq keeps for them.
//!
//! - the configuration (providers, presets, timeouts, the linking rule, read from the TOML
//!   file) lives with the rest of the configuration, in [`crate::config::social`].
//! - [`oauth`]: the authorization URL (state + PKCE), the token and user-info calls, reading a
//!   profile out of the provider's JSON.
//! - sealing: PKCE verifiers and provider tokens at rest are sealed with [`crate::sealing`],
//!   under a key derived from the server key (the `[social]` key of earlier versions only
//!   opens what it sealed before).
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

#[cfg(feature = "social")]
pub mod oauth;

#[cfg(feature = "social")]
pub use oauth::{Identity, OAuthClient, ProviderError, Tokens};

use crate::config::{ConfigError, SocialConfig};
use crate::keys::ServerKey;
#[cfg(feature = "social")]
use {
    crate::config::ProviderConfig,
    crate::sealing::Sealer,
    authq_protocol::Secret,
    serde::{Deserialize, Serialize},
    std::sync::Arc,
    tokio::sync::{OwnedSemaphorePermit, Semaphore},
};

/// The label the social sealing key is derived from the server key with.
#[cfg(feature = "social")]
const SEALING_LABEL: &str = "authq social sealing v1";

/// The social login service of a worker: providers, HTTP client, call bound, sealer.
#[derive(Debug)]
pub struct Social {
    config: SocialConfig,
    #[cfg(feature = "social")]
    client: Option<OAuthClient>,
    #[cfg(feature = "social")]
    sealer: Sealer,
    #[cfg(feature = "social")]
    permits: Arc<Semaphore>,
}

impl Social {
    /// Builds the service from its configuration (no provider: social login is off).
    #[cfg(feature = "social")]
    pub fn new(config: SocialConfig, server: &ServerKey) -> Result<Self, ConfigError> {
        config.validate()?;
        let client = if config.providers.is_empty() {
            None
        } else {
            Some(OAuthClient::new(config.http_timeout).map_err(ConfigError::Invalid)?)
        };
        let mut sealer = Sealer::derived(server, SEALING_LABEL);
        if let Some(legacy) = &config.legacy_key {
            sealer = sealer.also_opening(Sealer::with_key(zeroize::Zeroizing::new(legacy.0)));
        }
        let permits = Arc::new(Semaphore::new(config.max_concurrent_calls.max(1)));
        Ok(Self {
            config,
            client,
            sealer,
            permits,
        })
    }

    /// Without the `social` feature: refuses any provider (there is no HTTP client to call it).
    #[cfg(not(feature = "social"))]
    pub fn new(config: SocialConfig, _server: &ServerKey) -> Result<Self, ConfigError> {
        if !config.providers.is_empty() {
            return Err(ConfigError::Invalid(
                "social login providers: this authq was built without the `social` feature".into(),
            ));
        }
        Ok(Self { config })
    }

    /// The configuration.
    #[cfg(feature = "social")]
    pub fn config(&self) -> &SocialConfig {
        &self.config
    }

    /// The provider called `name`, with the HTTP client and the sealer (both exist whenever a
    /// provider does).
    #[cfg(feature = "social")]
    pub fn provider(&self, name: &str) -> Option<(&ProviderConfig, &OAuthClient, &Sealer)> {
        let provider = self.config.providers.get(name)?;
        Some((provider, self.client.as_ref()?, &self.sealer))
    }

    /// Whether `check` re-checks social sessions.
    pub fn rechecks_enabled(&self) -> bool {
        !self.config.providers.is_empty() && self.config.recheck_interval.is_some()
    }

    /// A permit for one provider call, or `None` when the bound is reached (never waits).
    #[cfg(feature = "social")]
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }
}

/// Provider tokens as sealed for re-checks.
#[cfg(feature = "social")]
#[derive(Serialize, Deserialize)]
pub struct KeptTokens {
    /// The access token.
    #[serde(rename = "a")]
    pub access: Secret,
    /// The refresh token.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
}

#[cfg(feature = "social")]
impl std::fmt::Debug for KeptTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptTokens([redacted])")
    }
}

/// Associated data binding a sealed PKCE verifier to its state row.
#[cfg(feature = "social")]
pub fn state_aad(state_digest: &[u8]) -> Vec<u8> {
    [b"authq-oauth-state:".as_slice(), state_digest].concat()
}

/// Associated data binding sealed provider tokens to their session row.
#[cfg(feature = "social")]
pub fn tokens_aad(session_digest: &[u8]) -> Vec<u8> {
    [b"authq-social-tokens:".as_slice(), session_digest].concat()
}

#[cfg(all(test, feature = "social"))]
mod tests {
    use super::*;
    use crate::config::social::SealKey;

    #[allow(clippy::unwrap_used)]
    fn with_provider(legacy_key: Option<SealKey>) -> SocialConfig {
        let text = r#"
            [social.providers.corp]
            authorization_url = "https://sso.corp.example/authorize"
            token_url = "https://sso.corp.example/token"
            userinfo_url = "https://sso.corp.example/userinfo"
            client_id = "c"
            client_secret = "s"
            redirect_uri = "https://app.example/cb"
        "#;
        let mut config = crate::config::social::from_toml(text, &|_| None).unwrap();
        config.legacy_key = legacy_key;
        config
    }

    #[test]
    fn sealing_needs_no_key_of_its_own_and_follows_the_server_key() {
        let server = ServerKey::from_bytes([1; 32]);
        let social = Social::new(with_provider(None), &server).unwrap();
        let (_, _, sealer) = social.provider("corp").unwrap();
        let sealed = sealer.seal(b"verifier", &state_aad(b"d")).unwrap();
        let again = Social::new(with_provider(None), &server).unwrap();
        let (_, _, same_key) = again.provider("corp").unwrap();
        assert_eq!(
            same_key.open(&sealed, &state_aad(b"d")).unwrap(),
            b"verifier"
        );
        let other = Social::new(with_provider(None), &ServerKey::from_bytes([2; 32])).unwrap();
        let (_, _, other_key) = other.provider("corp").unwrap();
        assert!(other_key.open(&sealed, &state_aad(b"d")).is_err());
    }

    #[test]
    fn what_the_retired_social_key_sealed_still_opens() {
        // Sealed by authq before the key was derived: XChaCha20-Poly1305 under `[social] key`.
        let before = Sealer::with_key(zeroize::Zeroizing::new([5; 32]));
        let kept_tokens = before.seal(b"tokens", &tokens_aad(b"s")).unwrap();
        let server = ServerKey::from_bytes([1; 32]);
        let social = Social::new(with_provider(Some(SealKey([5; 32]))), &server).unwrap();
        let (_, _, sealer) = social.provider("corp").unwrap();
        assert_eq!(
            sealer.open(&kept_tokens, &tokens_aad(b"s")).unwrap(),
            b"tokens"
        );
        let without = Social::new(with_provider(None), &server).unwrap();
        let (_, _, no_legacy) = without.provider("corp").unwrap();
        assert!(no_legacy.open(&kept_tokens, &tokens_aad(b"s")).is_err());
    }
}
