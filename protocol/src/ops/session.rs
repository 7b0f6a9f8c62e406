//! `ping`, `login`, `check`, `logout`, `logout_all`, `list_sessions`, `end_session`.

use super::{Empty, UserInfo, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `ping`: no arguments.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}
request!(PingRequest => Ping, Empty);

/// `login`: email and password.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The user's email (case-insensitive).
    pub email: String,
    /// The user's password.
    pub password: Secret,
    /// The end user's IP address as the calling service saw it (optional). When present, the
    /// worker also limits failed logins per source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The end user's user agent (browser, app) as the calling service saw it (optional), kept
    /// with the session for `list_sessions`: at most [`MAX_USER_AGENT_BYTES`] bytes, no control
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}
request!(LoginRequest => Login, LoginReply);

/// The longest `user_agent` a login accepts, in bytes; a longer one is a `bad_request`.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// The most sessions one `list_sessions` reply lists (the newest ones; `total` counts all).
pub const MAX_LISTED_SESSIONS: usize = 100;

/// The reply to `login`: a fresh session.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginReply {
    /// The session token: hand it to the user (e.g. in a cookie) and pass it to `check`.
    pub session: Secret,
    /// When the session expires unless renewed (Unix ms).
    pub expires_at: i64,
    /// The user.
    pub user: UserInfo,
    /// A signed access token (a JWT, see [`super::AccessClaims`]) for the same session, when
    /// the deployment issues them; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// When `access_token` expires (Unix ms); absent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// A refresh token for `refresh` (single use), with `access_token`; absent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
}

/// `check`: a session token.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The session token from `login`.
    pub session: Secret,
}
request!(CheckRequest => Check, CheckReply);

/// The reply to `check`: the session's user and its (possibly renewed) expiry.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReply {
    /// The user.
    pub user: UserInfo,
    /// When the session expires unless renewed again (Unix ms).
    pub expires_at: i64,
    /// Whether this check renewed the session (moved `expires_at` forward).
    pub renewed: bool,
    /// The user's session epoch: it grows whenever all of the user's sessions end at once
    /// (logout_all, password change or reset, suspension, deletion), and the events that end
    /// them carry the new value. A gateway caching check results evicts every entry of the user
    /// with a lower epoch.
    #[serde(default)]
    pub session_epoch: u64,
}

/// `logout`: the session to end.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {
    /// The session token.
    pub session: Secret,
}
request!(LogoutRequest => Logout, Empty);

/// `logout_all`: a session of the user whose sessions all end.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutAllRequest {
    /// Any live session token of the user.
    pub session: Secret,
}
request!(LogoutAllRequest => LogoutAll, LogoutAllReply);

/// The reply to `logout_all`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutAllReply {
    /// How many sessions ended (including the one passed).
    pub ended: u64,
}

/// `list_sessions`: a session of the user whose live sessions are listed.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSessionsRequest {
    /// Any live session token of the user.
    pub session: Secret,
}
request!(ListSessionsRequest => ListSessions, ListSessionsReply);

/// The reply to `list_sessions`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSessionsReply {
    /// The user's live sessions, newest first (at most [`MAX_LISTED_SESSIONS`]).
    pub sessions: Vec<SessionSummary>,
    /// How many live sessions the user has (more than listed when past the bound).
    pub total: u64,
}

/// One session as `list_sessions` shows it. Never the token: `id` names the session for
/// `end_session` and cannot be turned into a token.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session's id (random, unrelated to its token): pass it to `end_session`.
    pub id: String,
    /// When the session was created by a login (Unix ms).
    pub created_at: i64,
    /// When the session was last seen: its login, or its latest renewal by `check` (so it is
    /// exact to within the renewal interval, not to the last `check`) (Unix ms).
    pub last_seen_at: i64,
    /// When the session expires unless renewed (Unix ms).
    pub expires_at: i64,
    /// The `user_agent` the calling service passed at login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The `client_ip` the calling service passed at login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Whether this is the session the request was made with.
    pub current: bool,
}

/// `end_session`: ends one of the user's own sessions, by id.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndSessionRequest {
    /// Any live session token of the user.
    pub session: Secret,
    /// The id (from `list_sessions`) of the session to end; may be the current one.
    pub session_id: String,
}
request!(EndSessionRequest => EndSession, Empty);

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
    fn ping_shapes() {
        pin(&PingRequest {}, "{}");
        pin(&Empty {}, "{}");
    }

    #[test]
    fn login_shapes() {
        pin(
            &LoginRequest {
                client_ip: None,
                user_agent: None,
                email: "ann@example.com".into(),
                password: "correct horse".into(),
            },
            r#"{"email":"ann@example.com","password":"correct horse"}"#,
        );
        pin(
            &LoginReply {
                session: "tok".into(),
                expires_at: 1_700_000_000_000,
                user: ann(),
                access_token: None,
                access_expires_at: None,
                refresh_token: None,
            },
            r#"{"session":"tok","expires_at":1700000000000,"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}}}"#,
        );
    }

    #[test]
    fn check_shapes() {
        pin(
            &CheckRequest {
                session: "tok".into(),
            },
            r#"{"session":"tok"}"#,
        );
        pin(
            &CheckReply {
                user: ann(),
                expires_at: 5,
                renewed: true,
                session_epoch: 3,
            },
            r#"{"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}},"expires_at":5,"renewed":true,"session_epoch":3}"#,
        );
    }

    #[test]
    fn logout_shapes() {
        pin(
            &LogoutRequest {
                session: "tok".into(),
            },
            r#"{"session":"tok"}"#,
        );
        pin(
            &LogoutAllRequest {
                session: "tok".into(),
            },
            r#"{"session":"tok"}"#,
        );
        pin(&LogoutAllReply { ended: 3 }, r#"{"ended":3}"#);
    }

    #[test]
    fn session_list_shapes() {
        pin(
            &ListSessionsRequest {
                session: "tok".into(),
            },
            r#"{"session":"tok"}"#,
        );
        pin(
            &ListSessionsReply {
                sessions: vec![SessionSummary {
                    id: "s1".into(),
                    created_at: 1,
                    last_seen_at: 2,
                    expires_at: 3,
                    user_agent: Some("curl/8".into()),
                    client_ip: None,
                    current: true,
                }],
                total: 1,
            },
            r#"{"sessions":[{"id":"s1","created_at":1,"last_seen_at":2,"expires_at":3,"user_agent":"curl/8","current":true}],"total":1}"#,
        );
        pin(
            &EndSessionRequest {
                session: "tok".into(),
                session_id: "s1".into(),
            },
            r#"{"session":"tok","session_id":"s1"}"#,
        );
    }

    #[test]
    fn unknown_request_fields_are_ignored() {
        let r: CheckRequest = serde_json::from_str(r#"{"session":"t","future":1}"#).unwrap();
        assert_eq!(r.session.expose(), "t");
    }
}
