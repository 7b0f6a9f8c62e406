//! Administrative operations on a user named by id or email: `delete_user`, `suspend`,
//! `unsuspend`.

use super::{UserInfo, UserRef, request};
use serde::{Deserialize, Serialize};

/// `delete_user`: the user to delete (with every session and code).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(DeleteUserRequest => DeleteUser, DeleteUserReply);

/// The reply to `delete_user`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserReply {
    /// The id of the deleted user.
    pub user_id: String,
}

/// `suspend`: the user to suspend.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspendRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(SuspendRequest => Suspend, UserStateReply);

/// `unsuspend`: the user whose suspension to lift.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsuspendRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(UnsuspendRequest => Unsuspend, UserStateReply);

/// The reply to `suspend` and `unsuspend`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserStateReply {
    /// The user, in its new state.
    pub user: UserInfo,
    /// How many sessions ended (always 0 for `unsuspend`).
    pub sessions_ended: u64,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::super::{Profile, UserState};
    use super::*;

    #[test]
    fn admin_shapes() {
        pin(
            &DeleteUserRequest {
                user: UserRef::id("u1"),
            },
            r#"{"user_id":"u1"}"#,
        );
        pin(
            &SuspendRequest {
                user: UserRef::email("ann@example.com"),
            },
            r#"{"email":"ann@example.com"}"#,
        );
        pin(
            &UnsuspendRequest {
                user: UserRef::id("u1"),
            },
            r#"{"user_id":"u1"}"#,
        );
        pin(
            &DeleteUserReply {
                user_id: "u1".into(),
            },
            r#"{"user_id":"u1"}"#,
        );
        pin(
            &UserStateReply {
                user: UserInfo {
                    id: "u1".into(),
                    email: "ann@example.com".into(),
                    state: UserState::Suspended,
                    profile: Profile::empty(),
                },
                sessions_ended: 2,
            },
            r#"{"user":{"id":"u1","email":"ann@example.com","state":"suspended","profile":{}},"sessions_ended":2}"#,
        );
    }
}
