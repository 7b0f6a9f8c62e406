//! `authq serve`'s access token flags ([`TokenArgs`]), defaults read from the worker's
//! `TokenConfig::default()`.
use crate::serve::HumanDuration;
use authq_worker::config::TokenConfig;
use clap::Args;
use std::path::PathBuf;

fn defaults() -> TokenConfig {
    TokenConfig::default()
}

/// Signed access tokens beside sessions (PROTOCOL.md, "Access tokens").
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Also issue a signed access token (a JWT, EdDSA) at every login, which gateways verify
    /// with the published keys (`jwks`, `--jwks-file`) without a call to authq.
    #[arg(long, env = "AUTHQ_ACCESS_TOKENS")]
    pub access_tokens: bool,
    /// How long an access token is valid: the revocation lag a gateway verifying tokens accepts.
    #[arg(long, env = "AUTHQ_ACCESS_TOKEN_TTL", default_value_t = HumanDuration(defaults().access_ttl))]
    pub access_token_ttl: HumanDuration,
    /// The `iss` claim of access tokens.
    #[arg(long, env = "AUTHQ_TOKEN_ISSUER", default_value_t = defaults().issuer)]
    pub token_issuer: String,
    /// The `aud` claim of access tokens.
    #[arg(long, env = "AUTHQ_TOKEN_AUDIENCE", default_value_t = defaults().audience)]
    pub token_audience: String,
    /// How long a signing key signs before a new one takes over (a retired key stays published
    /// until the tokens it signed have expired).
    #[arg(long, env = "AUTHQ_SIGNING_KEY_ROTATION", default_value_t = HumanDuration(defaults().rotation_interval))]
    pub signing_key_rotation: HumanDuration,
    /// Write the published keys (a JWKS) to this file, atomically, whenever they change.
    #[arg(long, env = "AUTHQ_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token configuration these flags describe.
    pub fn into_config(self) -> TokenConfig {
        TokenConfig {
            enabled: self.access_tokens,
            access_ttl: self.access_token_ttl.0,
            issuer: self.token_issuer,
            audience: self.token_audience,
            rotation_interval: self.signing_key_rotation.0,
            jwks_file: self.jwks_file,
        }
    }
}
