//! `social_url`, `social_login`, `link_social`: logging in through an OAuth2 / OpenID Connect
//! provider (Google, Facebook, VK, GitHub, or any configured one).

use super::{UserInfo, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `social_url`: where to send the browser to log in with a provider.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialUrlRequest {
    /// The provider's name in the worker's configuration (e.g. `google`).
    pub provider: String,
    /// Where the provider sends the browser back. Must be one of the provider's configured
    /// redirect URIs; when absent, the provider's default `redirect_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}
request!(SocialUrlRequest => SocialUrl, SocialUrlReply);

/// The reply to `social_url`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocialUrlReply {
    /// The provider's authorization URL, with `state` and the PKCE challenge: redirect the
    /// browser to it.
    pub url: String,
    /// The `state` in the URL (also a good value for a cookie that binds the flow to the
    /// browser). Single use; pass it back to `social_login` with the `code`.
    pub state: Secret,
    /// When `state` stops being accepted (Unix ms).
    pub expires_at: i64,
}

/// `social_login`: the `code` and `state` the provider sent the browser back with.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialLoginRequest {
    /// The provider's name (the same as in `social_url`).
    pub provider: String,
    /// The authorization code from the redirect's query string.
    pub code: Secret,
    /// The `state` from the redirect's query string.
    pub state: Secret,
}
request!(SocialLoginRequest => SocialLogin, SocialLoginReply);

/// The reply to `social_login`: a fresh session, as `login` gives.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocialLoginReply {
    /// The session token.
    pub session: Secret,
    /// When the session expires unless renewed (Unix ms).
    pub expires_at: i64,
    /// The user.
    pub user: UserInfo,
    /// Whether this login created the user.
    pub created: bool,
    /// A signed access token for the same session, as `login` gives; absent when the
    /// deployment does not issue them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// When `access_token` expires (Unix ms); absent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// A refresh token for `refresh` (single use), with `access_token`; absent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
}

/// `link_social`: links a provider account to the user of a live session, completing a
/// `social_login` that answered `link_required`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSocialRequest {
    /// A live session of the account to link to.
    pub session: Secret,
    /// The provider's name.
    pub provider: String,
    /// The authorization code of a fresh `social_url` round trip.
    pub code: Secret,
    /// The `state` of that round trip.
    pub state: Secret,
}
request!(LinkSocialRequest => LinkSocial, LinkSocialReply);

/// The reply to `link_social`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkSocialReply {
    /// The session's user, now linked.
    pub user: UserInfo,
    /// The provider's name.
    pub provider: String,
    /// The user's id at the provider (its `subject`).
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::super::{Profile, UserState};
    use super::*;

    fn ann() -> UserInfo {
        UserInfo {
            id: "u1".into(),
            email: "ann@example.com".into(),
            state: UserState::Active,
            profile: Profile::empty(),
        }
    }

    #[test]
    fn social_url_shapes() {
        pin(
            &SocialUrlRequest {
                provider: "google".into(),
                redirect_uri: None,
            },
            r#"{"provider":"google"}"#,
        );
        pin(
            &SocialUrlRequest {
                provider: "google".into(),
                redirect_uri: Some("https://app.example/cb".into()),
            },
            r#"{"provider":"google","redirect_uri":"https://app.example/cb"}"#,
        );
        pin(
            &SocialUrlReply {
                url: "https://p.example/auth?state=s".into(),
                state: "s".into(),
                expires_at: 7,
            },
            r#"{"url":"https://p.example/auth?state=s","state":"s","expires_at":7}"#,
        );
    }

    #[test]
    fn social_login_shapes() {
        pin(
            &SocialLoginRequest {
                provider: "github".into(),
                code: "c".into(),
                state: "s".into(),
            },
            r#"{"provider":"github","code":"c","state":"s"}"#,
        );
        pin(
            &SocialLoginReply {
                session: "tok".into(),
                expires_at: 5,
                user: ann(),
                created: true,
                access_token: None,
                access_expires_at: None,
                refresh_token: None,
            },
            r#"{"session":"tok","expires_at":5,"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}},"created":true}"#,
        );
    }

    #[test]
    fn link_social_shapes() {
        pin(
            &LinkSocialRequest {
                session: "tok".into(),
                provider: "vk".into(),
                code: "c".into(),
                state: "s".into(),
            },
            r#"{"session":"tok","provider":"vk","code":"c","state":"s"}"#,
        );
        pin(
            &LinkSocialReply {
                user: ann(),
                provider: "vk".into(),
                subject: "42".into(),
            },
            r#"{"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}},"provider":"vk","subject":"42"}"#,
        );
    }
}
