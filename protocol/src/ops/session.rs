//! `ping`, `login`, `check`, `logout`, `logout_all`.

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
}
request!(LoginRequest => Login, LoginReply);

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
    fn unknown_request_fields_are_ignored() {
        let r: CheckRequest = serde_json::from_str(r#"{"session":"t","future":1}"#).unwrap();
        assert_eq!(r.session.expose(), "t");
    }
}
