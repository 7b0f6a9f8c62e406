//! Social login configuration: providers (presets or fully described), the key that seals
//! what authq keeps, timeouts and the linking rule. Read from the `[social]` table of the TOML
//! configuration file (`authq serve --config`), with secrets taken from environment variables
//! or files (`*_env`, `*_file`) so the file itself can be world-readable.

use super::ConfigError;
use super::providers::{PRESETS, preset};
use authq_protocol::Secret;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroize;

/// The social login settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SocialConfig {
    /// The providers, by the name requests use (`google`, `corp-sso`, …).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The `[social]` key of authq before 0.2, now retired: PKCE verifiers and provider tokens
    /// are sealed under a key derived from the server key (`--key-file`). When set, it still
    /// opens what was sealed under it (pending logins, kept provider tokens), so an upgrade ends
    /// no social session; nothing new is sealed with it. Optional; drop it once no session from
    /// before the upgrade is left.
    pub legacy_key: Option<SealKey>,
    /// How long a `state` from `social_url` is accepted.
    pub state_ttl: Duration,
    /// Timeout of each HTTP call to a provider (connect, send, read the whole answer).
    pub http_timeout: Duration,
    /// Provider calls in flight at once, per worker. A call beyond it is refused at once with
    /// `provider_unavailable` instead of waiting, so a slow provider holds at most this many
    /// of a consumer's prefetched deliveries.
    pub max_concurrent_calls: usize,
    /// A social session is re-checked with its provider by `check` once this long has passed
    /// since the last verification. `None`: never; provider tokens are then not stored at all.
    pub recheck_interval: Option<Duration>,
    /// After a re-check the provider could not answer (down, slow, garbage), the next attempt
    /// waits this long; the session stays valid meanwhile.
    pub recheck_retry: Duration,
    /// The linking rule: may a login whose provider reports a **verified** email that belongs
    /// to an existing account be linked to that account without confirmation? Each provider
    /// may override it.
    pub link_verified_email: bool,
}

impl Default for SocialConfig {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            legacy_key: None,
            state_ttl: Duration::from_secs(600),
            http_timeout: Duration::from_secs(10),
            max_concurrent_calls: 16,
            recheck_interval: Some(Duration::from_secs(24 * 3600)),
            recheck_retry: Duration::from_secs(300),
            link_verified_email: true,
        }
    }
}

/// One OAuth2 / OpenID Connect provider.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// Where the browser is sent to authorize.
    pub authorization_url: String,
    /// Where codes (and refresh tokens) are exchanged for access tokens.
    pub token_url: String,
    /// Where the profile is fetched with the access token.
    pub userinfo_url: String,
    /// The scopes asked for (joined with spaces).
    pub scopes: Vec<String>,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret (redacted in `Debug`, never logged).
    pub client_secret: Secret,
    /// The default redirect URI (registered with the provider).
    pub redirect_uri: String,
    /// Other redirect URIs a `social_url` request may name.
    pub extra_redirect_uris: Vec<String>,
    /// Send a PKCE (S256) challenge and verifier.
    pub pkce: bool,
    /// How the access token goes to the user-info URL.
    pub userinfo_auth: UserinfoAuth,
    /// Where the profile's fields are.
    pub fields: ProfileFields,
    /// This provider's linking rule; `None`: the global [`SocialConfig::link_verified_email`].
    pub link_verified_email: Option<bool>,
}

impl ProviderConfig {
    /// Whether `uri` is one of this provider's redirect URIs.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uri == uri || self.extra_redirect_uris.iter().any(|u| u == uri)
    }
}

/// How the access token is presented to the user-info endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserinfoAuth {
    /// `Authorization: Bearer …` (OAuth2 / OIDC, Google, GitHub, Facebook).
    Header,
    /// `?access_token=…` (VK's API).
    Query,
}

/// Where the fields of a provider's profile are: dotted paths (`response.0.id`) looked up in
/// the user-info answer first, then in the token answer (VK puts the email there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileFields {
    /// The user's stable id at the provider (required).
    pub subject: String,
    /// The email.
    pub email: String,
    /// A boolean saying whether the provider verified the email; `None`: use
    /// [`ProfileFields::email_verified_default`].
    pub email_verified: Option<String>,
    /// Whether an email is taken as verified when the provider says nothing about it.
    pub email_verified_default: bool,
    /// The display name.
    pub name: String,
    /// The picture URL.
    pub picture: String,
}

/// A 256-bit key (XChaCha20-Poly1305). Redacted in `Debug`, zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(pub [u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SealKey {
    /// Parses 32 bytes written in base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, ConfigError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| invalid("social.key is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("social.key must be 32 bytes (44 characters of base64)"))?;
        Ok(Self(key))
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

// ---- the TOML file -------------------------------------------------------------------------

/// The configuration file as written (everything optional; secrets possibly indirect).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    social: Option<RawSocial>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSocial {
    key: Option<String>,
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    state_ttl: Option<String>,
    http_timeout: Option<String>,
    max_concurrent_calls: Option<usize>,
    recheck_interval: Option<String>,
    recheck_retry: Option<String>,
    link_verified_email: Option<bool>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    preset: Option<String>,
    authorization_url: Option<String>,
    token_url: Option<String>,
    userinfo_url: Option<String>,
    scopes: Option<Vec<String>>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    redirect_uri: Option<String>,
    #[serde(default)]
    extra_redirect_uris: Vec<String>,
    pkce: Option<bool>,
    userinfo_auth: Option<UserinfoAuth>,
    subject_field: Option<String>,
    email_field: Option<String>,
    email_verified_field: Option<String>,
    email_verified_default: Option<bool>,
    name_field: Option<String>,
    picture_field: Option<String>,
    link_verified_email: Option<bool>,
}

/// Reads the configuration file at `path` (its `[social]` table), resolving `*_env` from the
/// process environment and `*_file` from disk.
pub fn load_file(path: &Path) -> Result<SocialConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    from_toml(&text, &|name| std::env::var(name).ok())
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Parses a configuration file's text; `env` resolves `*_env` indirections.
pub fn from_toml(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<SocialConfig, String> {
    let file: FileConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let raw = file.social.unwrap_or_default();
    let mut config = SocialConfig::default();
    let key = secret_value("social.key", raw.key, raw.key_env, raw.key_file, env, false)?;
    if let Some(key) = key {
        config.legacy_key = Some(SealKey::from_base64(key.expose()).map_err(|e| e.to_string())?);
    }
    if let Some(d) = raw.state_ttl {
        config.state_ttl = duration("social.state_ttl", &d)?;
    }
    if let Some(d) = raw.http_timeout {
        config.http_timeout = duration("social.http_timeout", &d)?;
    }
    if let Some(n) = raw.max_concurrent_calls {
        config.max_concurrent_calls = n;
    }
    if let Some(d) = raw.recheck_interval {
        config.recheck_interval = match d.trim() {
            "off" | "never" => None,
            d => Some(duration("social.recheck_interval", d)?),
        };
    }
    if let Some(d) = raw.recheck_retry {
        config.recheck_retry = duration("social.recheck_retry", &d)?;
    }
    if let Some(b) = raw.link_verified_email {
        config.link_verified_email = b;
    }
    for (name, p) in raw.providers {
        let provider = provider(&name, p, env).map_err(|e| format!("provider {name}: {e}"))?;
        config.providers.insert(name, provider);
    }
    Ok(config)
}

fn duration(what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{what}: {e}"))
}

/// Exactly one of a literal, an environment variable or a file.
fn secret_value(
    what: &str,
    literal: Option<String>,
    env_name: Option<String>,
    file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    required: bool,
) -> Result<Option<Secret>, String> {
    let given = [literal.is_some(), env_name.is_some(), file.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        return Err(format!(
            "{what}: give only one of {what}, {what}_env, {what}_file"
        ));
    }
    let value = if let Some(v) = literal {
        v
    } else if let Some(name) = env_name {
        env(&name)
            .ok_or_else(|| format!("{what}_env: the environment variable {name} is not set"))?
    } else if let Some(path) = file {
        std::fs::read_to_string(&path)
            .map_err(|e| format!("{what}_file: cannot read {}: {e}", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned()
    } else if required {
        return Err(format!(
            "{what} is required ({what}, {what}_env or {what}_file)"
        ));
    } else {
        return Ok(None);
    };
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Some(Secret::new(value)))
}

fn provider(
    name: &str,
    p: RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderConfig, String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a provider name is 1 to 64 characters".into());
    }
    let base = match p.preset.as_deref() {
        Some(preset_name) => Some(preset(preset_name).ok_or_else(|| {
            format!(
                "unknown preset {preset_name:?} (known: {})",
                PRESETS.join(", ")
            )
        })?),
        None => None,
    };
    let pick = |given: Option<String>, from_preset: Option<&'static str>, field: &str| {
        given
            .or_else(|| from_preset.map(str::to_owned))
            .ok_or_else(|| format!("{field} is required (or a preset)"))
    };
    let b = base.as_ref();
    let authorization_url = pick(
        p.authorization_url,
        b.map(|b| b.authorization_url),
        "authorization_url",
    )?;
    let token_url = pick(p.token_url, b.map(|b| b.token_url), "token_url")?;
    let userinfo_url = pick(p.userinfo_url, b.map(|b| b.userinfo_url), "userinfo_url")?;
    for (field, url) in [
        ("authorization_url", &authorization_url),
        ("token_url", &token_url),
        ("userinfo_url", &userinfo_url),
    ] {
        check_url(field, url)?;
    }
    let client_id = p.client_id.ok_or("client_id is required")?;
    let client_secret = secret_value(
        "client_secret",
        p.client_secret,
        p.client_secret_env,
        p.client_secret_file,
        env,
        true,
    )?
    .ok_or("client_secret is required")?;
    let redirect_uri = p.redirect_uri.ok_or("redirect_uri is required")?;
    check_redirect(&redirect_uri)?;
    for uri in &p.extra_redirect_uris {
        check_redirect(uri)?;
    }
    let fields = ProfileFields {
        subject: pick(
            p.subject_field,
            b.map(|b| b.subject).or(Some("sub")),
            "subject_field",
        )?,
        email: pick(
            p.email_field,
            b.map(|b| b.email).or(Some("email")),
            "email_field",
        )?,
        email_verified: p
            .email_verified_field
            .or_else(|| match b {
                Some(b) => b.email_verified.map(str::to_owned),
                None => Some("email_verified".to_owned()),
            })
            .filter(|f| !f.is_empty()),
        email_verified_default: p
            .email_verified_default
            .unwrap_or_else(|| b.is_some_and(|b| b.email_verified_default)),
        name: pick(
            p.name_field,
            b.map(|b| b.name).or(Some("name")),
            "name_field",
        )?,
        picture: pick(
            p.picture_field,
            b.map(|b| b.picture).or(Some("picture")),
            "picture_field",
        )?,
    };
    Ok(ProviderConfig {
        authorization_url,
        token_url,
        userinfo_url,
        scopes: p.scopes.unwrap_or_else(|| {
            b.map_or_else(
                || vec!["openid".into(), "email".into(), "profile".into()],
                |b| b.scopes.iter().map(|s| (*s).to_owned()).collect(),
            )
        }),
        client_id,
        client_secret,
        redirect_uri,
        extra_redirect_uris: p.extra_redirect_uris,
        pkce: p.pkce.unwrap_or(true),
        userinfo_auth: p
            .userinfo_auth
            .or(b.map(|b| b.userinfo_auth))
            .unwrap_or(UserinfoAuth::Header),
        fields,
        link_verified_email: p.link_verified_email,
    })
}

/// Provider endpoints are HTTPS, except on loopback (a local test provider).
fn check_url(field: &str, text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{field}: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err(format!("{field} must be https (http only on loopback)")),
    }
}

fn check_redirect(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("redirect_uri: {e}"))?;
    if url.fragment().is_some() {
        return Err("redirect_uri must not have a fragment".into());
    }
    Ok(())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl SocialConfig {
    /// Checks settings that cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Ok(());
        }
        if self.max_concurrent_calls == 0 || self.http_timeout.is_zero() || self.state_ttl.is_zero()
        {
            return Err(invalid(
                "social: max_concurrent_calls, http_timeout and state_ttl must be positive",
            ));
        }
        if self.recheck_interval.is_some_and(|d| d.is_zero()) || self.recheck_retry.is_zero() {
            return Err(invalid(
                "social: recheck_interval (or \"off\") and recheck_retry must be positive",
            ));
        }
        Ok(())
    }

    /// The linking rule for `provider`.
    pub fn may_link_verified_email(&self, provider: &ProviderConfig) -> bool {
        provider
            .link_verified_email
            .unwrap_or(self.link_verified_email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some(KEY.into()),
            "GOOGLE_SECRET" => Some("g-secret".into()),
            _ => None,
        }
    }

    #[test]
    fn presets_and_generic_providers_parse() {
        let c = from_toml(
            r#"
            [social]
            key_env = "KEY"
            recheck_interval = "1h"
            link_verified_email = false

            [social.providers.google]
            preset = "google"
            client_id = "gid"
            client_secret_env = "GOOGLE_SECRET"
            redirect_uri = "https://app.example/cb/google"

            [social.providers.corp]
            authorization_url = "https://sso.corp.example/authorize"
            token_url = "https://sso.corp.example/token"
            userinfo_url = "http://127.0.0.1:9/userinfo"
            scopes = ["openid"]
            client_id = "cid"
            client_secret = "literal"
            redirect_uri = "https://app.example/cb/corp"
            link_verified_email = true
            "#,
            &env,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.legacy_key.as_ref().unwrap().0[31], 31);
        assert_eq!(c.recheck_interval, Some(Duration::from_secs(3600)));
        let g = &c.providers["google"];
        assert_eq!(g.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(g.client_secret.expose(), "g-secret");
        assert_eq!(g.fields.email_verified.as_deref(), Some("email_verified"));
        assert!(!c.may_link_verified_email(g));
        let corp = &c.providers["corp"];
        assert_eq!(corp.fields.subject, "sub");
        assert!(c.may_link_verified_email(corp));
        assert!(!format!("{c:?}").contains("g-secret"));
        assert!(!format!("{c:?}").contains("literal"));
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        let bad = [
            (
                r#"[social]
                nope = 1"#,
                "unknown field",
            ),
            (
                r#"[social.providers.x]
                preset = "myspace""#,
                "unknown preset",
            ),
            (
                r#"[social.providers.x]
                preset = "github"
                client_id = "c"
                redirect_uri = "https://a/cb""#,
                "client_secret is required",
            ),
            (
                r#"[social.providers.x]
                preset = "github"
                client_id = "c"
                client_secret_env = "MISSING"
                redirect_uri = "https://a/cb""#,
                "MISSING is not set",
            ),
            (
                r#"[social.providers.x]
                preset = "github"
                token_url = "http://evil.example/token"
                client_id = "c"
                client_secret = "s"
                redirect_uri = "https://a/cb""#,
                "must be https",
            ),
            (
                r#"[social]
                key = "c2hvcnQ=""#,
                "32 bytes",
            ),
        ];
        for (text, expected) in bad {
            let e = from_toml(text, &env).unwrap_err();
            assert!(e.contains(expected), "{e} should say {expected}");
        }
    }

    #[test]
    fn providers_need_no_key_of_their_own() {
        // What social login seals is sealed under a key derived from the server key; the
        // `[social] key` of earlier versions is optional (it only opens what it sealed).
        let c = from_toml(
            r#"[social.providers.gh]
               preset = "github"
               client_id = "c"
               client_secret = "s"
               redirect_uri = "https://a/cb""#,
            &env,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.legacy_key.is_none());
    }
}
