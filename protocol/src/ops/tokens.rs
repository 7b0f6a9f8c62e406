//! Signed access tokens: `jwks` (the public keys a gateway verifies access tokens with),
//! `refresh` (a refresh token traded for new tokens), and the claims an access token carries
//! ([`AccessClaims`]).

use super::request;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// The JWT `alg` of every access token authq signs: Ed25519 (RFC 8037).
pub const ACCESS_TOKEN_ALG: &str = "EdDSA";

/// `client_type` of an access token issued to a user (by `login`, `social_login`).
pub const CLIENT_TYPE_USER: &str = "user";

/// `jwks`: no arguments.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksRequest {}
request!(JwksRequest => Jwks, JwksReply);

/// The reply to `jwks`: a JSON Web Key Set (RFC 7517), the same document the worker writes to
/// its JWKS file. Empty when the deployment does not issue access tokens.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksReply {
    /// Every key a token still unexpired may be signed with, the active one first.
    pub keys: Vec<Jwk>,
}

/// `refresh`: a refresh token from `login`, `social_login` or an earlier `refresh`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token (single use).
    pub refresh_token: Secret,
}
request!(RefreshRequest => Refresh, RefreshReply);

/// The reply to `refresh`: a new access token and the refresh token that replaces the one
/// given (which is now used: giving it again ends the session).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReply {
    /// A new access token for the same session.
    pub access_token: Secret,
    /// When it expires (Unix ms).
    pub access_expires_at: i64,
    /// The next refresh token.
    pub refresh_token: Secret,
}

/// One public signing key, as an OKP JSON Web Key (RFC 8037).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: a token's header names its key by it.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The claims of an access token (a JWT signed with EdDSA, header `kid` naming its key).
/// `sub` is a user id when `client_type` is `user`, a service client's id when it is `service`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The id of the session the token was issued from (as `list_sessions` shows it; never
    /// the session token). Absent from a service client's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Who the token was issued to: `user`, or `service` (a service client).
    pub client_type: String,
    /// A service client's scopes, space-separated (RFC 9068); absent from a user's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// The issuer the deployment is configured with.
    pub iss: String,
    /// The audience the deployment is configured with.
    pub aud: String,
    /// The token's unique id.
    pub jti: String,
    /// The user's session epoch when the token was issued (as `check` reports it): a gateway
    /// that saw a higher epoch in an event refuses the token. Absent from a service client's
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_epoch: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::*;

    #[test]
    fn jwks_shape() {
        pin(&JwksRequest {}, "{}");
        pin(
            &JwksReply {
                keys: vec![Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: "AAAA".into(),
                    kid: "k1".into(),
                    alg: ACCESS_TOKEN_ALG.into(),
                    use_: "sig".into(),
                }],
            },
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k1","alg":"EdDSA","use":"sig"}]}"#,
        );
    }
}
