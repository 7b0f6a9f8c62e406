//! `start_reset`, `complete_reset`, `change_password`.

use super::{UserInfo, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `start_reset`: the email whose password is to be reset.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartResetRequest {
    /// The email.
    pub email: String,
}
request!(StartResetRequest => StartReset, StartResetReply);

/// The reply to `start_reset`, identical in shape whether or not the email belongs to a user:
/// for an unknown email the token is random and works nowhere.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartResetReply {
    /// The single-use reset token for the calling service to mail (e.g. in a link).
    pub token: Secret,
    /// When the token expires (Unix ms).
    pub expires_at: i64,
}

/// `complete_reset`: the token from `start_reset` and the new password.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResetRequest {
    /// The email the token was issued for.
    pub email: String,
    /// The reset token.
    pub token: Secret,
    /// The new password.
    pub password: Secret,
}
request!(CompleteResetRequest => CompleteReset, CompleteResetReply);

/// The reply to `complete_reset`. Every session of the user has ended.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompleteResetReply {
    /// The user.
    pub user: UserInfo,
    /// How many sessions ended.
    pub sessions_ended: u64,
}

/// `change_password`: a session, the current password and the new one.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePasswordRequest {
    /// A live session of the user.
    pub session: Secret,
    /// The current password.
    pub old_password: Secret,
    /// The new password.
    pub new_password: Secret,
}
request!(ChangePasswordRequest => ChangePassword, ChangePasswordReply);

/// The reply to `change_password`. The user's other sessions have ended; this one lives on.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePasswordReply {
    /// How many other sessions ended.
    pub sessions_ended: u64,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::super::{Profile, UserState};
    use super::*;

    #[test]
    fn reset_shapes() {
        pin(
            &StartResetRequest {
                email: "ann@example.com".into(),
            },
            r#"{"email":"ann@example.com"}"#,
        );
        pin(
            &StartResetReply {
                token: "t".into(),
                expires_at: 2,
            },
            r#"{"token":"t","expires_at":2}"#,
        );
        pin(
            &CompleteResetRequest {
                email: "ann@example.com".into(),
                token: "t".into(),
                password: "new password".into(),
            },
            r#"{"email":"ann@example.com","token":"t","password":"new password"}"#,
        );
        pin(
            &CompleteResetReply {
                user: UserInfo {
                    id: "u1".into(),
                    email: "ann@example.com".into(),
                    state: UserState::Active,
                    profile: Profile::empty(),
                },
                sessions_ended: 2,
            },
            r#"{"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}},"sessions_ended":2}"#,
        );
    }

    #[test]
    fn change_password_shapes() {
        pin(
            &ChangePasswordRequest {
                session: "s".into(),
                old_password: "old password".into(),
                new_password: "new password".into(),
            },
            r#"{"session":"s","old_password":"old password","new_password":"new password"}"#,
        );
        pin(
            &ChangePasswordReply { sessions_ended: 1 },
            r#"{"sessions_ended":1}"#,
        );
    }
}
