//! The built-in social login presets: the URLs, scopes and profile fields of well-known
//! providers, so that a deployment names `preset = "google"` instead of spelling them out.

use super::social::UserinfoAuth;

/// A named preset: the URLs, scopes and field paths of a well-known provider.
pub(super) struct Preset {
    pub(super) authorization_url: &'static str,
    pub(super) token_url: &'static str,
    pub(super) userinfo_url: &'static str,
    pub(super) scopes: &'static [&'static str],
    pub(super) userinfo_auth: UserinfoAuth,
    pub(super) subject: &'static str,
    pub(super) email: &'static str,
    pub(super) email_verified: Option<&'static str>,
    pub(super) email_verified_default: bool,
    pub(super) name: &'static str,
    pub(super) picture: &'static str,
}

/// The names of the built-in presets.
pub const PRESETS: &[&str] = &["google", "facebook", "vk", "github"];

pub(super) fn preset(name: &str) -> Option<Preset> {
    Some(match name {
        // OpenID Connect; `email_verified` is a claim of the user-info answer.
        "google" => Preset {
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth",
            token_url: "https://oauth2.googleapis.com/token",
            userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo",
            scopes: &["openid", "email", "profile"],
            userinfo_auth: UserinfoAuth::Header,
            subject: "sub",
            email: "email",
            email_verified: Some("email_verified"),
            email_verified_default: false,
            name: "name",
            picture: "picture",
        },
        // Graph API; it says nothing about verification, so the email counts as unverified
        // unless the operator sets `email_verified_default = true`.
        "facebook" => Preset {
            authorization_url: "https://www.facebook.com/v19.0/dialog/oauth",
            token_url: "https://graph.facebook.com/v19.0/oauth/access_token",
            userinfo_url: "https://graph.facebook.com/me?fields=id,name,email,picture",
            scopes: &["email", "public_profile"],
            userinfo_auth: UserinfoAuth::Header,
            subject: "id",
            email: "email",
            email_verified: None,
            email_verified_default: false,
            name: "name",
            picture: "picture.data.url",
        },
        // VK's API takes the token in the query and returns the email in the token answer.
        "vk" => Preset {
            authorization_url: "https://oauth.vk.com/authorize",
            token_url: "https://oauth.vk.com/access_token",
            userinfo_url: "https://api.vk.com/method/users.get?v=5.131&fields=photo_200",
            scopes: &["email"],
            userinfo_auth: UserinfoAuth::Query,
            subject: "response.0.id",
            email: "email",
            email_verified: None,
            email_verified_default: false,
            name: "response.0.first_name",
            picture: "response.0.photo_200",
        },
        // `/user` shows the public email only; it is taken as unverified by default.
        "github" => Preset {
            authorization_url: "https://github.com/login/oauth/authorize",
            token_url: "https://github.com/login/oauth/access_token",
            userinfo_url: "https://api.github.com/user",
            scopes: &["read:user", "user:email"],
            userinfo_auth: UserinfoAuth::Header,
            subject: "id",
            email: "email",
            email_verified: None,
            email_verified_default: false,
            name: "name",
            picture: "avatar_url",
        },
        _ => return None,
    })
}
