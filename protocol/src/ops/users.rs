//! Administrative operations over the user base (`authq user`): `list_users`, `get_user`,
//! `import_users`, `end_user_sessions`. Each needs the admin role.

use super::{Profile, UserInfo, UserRef, UserState, request};
use crate::Secret;
use serde::{Deserialize, Serialize};

/// The most users one `list_users` page holds.
pub const MAX_LIST_USERS: u32 = 500;

/// The page size of `list_users` when the request names none.
pub const DEFAULT_LIST_USERS: u32 = 50;

/// The most users one `import_users` request carries.
pub const MAX_IMPORT_USERS: usize = 100;

/// `list_users`: one page of users in the order of their canonical email key.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsersRequest {
    /// Only users whose canonical email key starts with this (it is canonicalised as an email
    /// key is: lowercased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_prefix: Option<String>,
    /// The `next_cursor` of the previous page; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// How many users at most (default [`DEFAULT_LIST_USERS`], at most [`MAX_LIST_USERS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
request!(ListUsersRequest => ListUsers, ListUsersReply);

/// One user as `list_users` shows it (without the profile).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The user's id.
    pub id: String,
    /// The email as registered.
    pub email: String,
    /// The lifecycle state.
    pub state: UserState,
    /// When the user was created (Unix ms).
    pub created_at: i64,
    /// When the user last changed (Unix ms).
    pub updated_at: i64,
}

/// The reply to `list_users`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsersReply {
    /// The page, in canonical email key order.
    pub users: Vec<UserSummary>,
    /// The cursor of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `get_user`: one user, named by id or email.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUserRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(GetUserRequest => GetUser, GetUserReply);

/// The reply to `get_user`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetUserReply {
    /// The user, with its profile.
    pub user: UserInfo,
    /// When the user was created (Unix ms).
    pub created_at: i64,
    /// When the user last changed (Unix ms).
    pub updated_at: i64,
    /// The scheme of the stored password hash (`argon2id`, `argon2` for another variant,
    /// `bcrypt`, `authman_sha256`); absent when the user has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_scheme: Option<String>,
    /// How many live sessions the user has.
    pub sessions: u64,
    /// The social providers linked to the user.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Whether the user's TOTP second factor is on (`mfa_confirm` done, not disabled since).
    #[serde(default)]
    pub mfa: bool,
}

/// The scheme of an imported password hash.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordScheme {
    /// An argon2 PHC string (`$argon2id$v=19$m=…`), any variant, parameters within the
    /// worker's bound.
    Argon2,
    /// A bcrypt string (`$2b$12$…`), cost at most 14.
    Bcrypt,
    /// tarantool-authman's `sha256(user_id .. password)`: the 32-byte digest as 64 hex digits;
    /// the entry's `user_id` must be the authman user id it was salted with.
    AuthmanSha256,
}

/// A password hash carried over from another system.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedHash {
    /// How it was made.
    pub scheme: PasswordScheme,
    /// The hash, in the form its scheme names.
    pub hash: String,
}

impl std::fmt::Debug for ImportedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedHash")
            .field("scheme", &self.scheme)
            .field("hash", &"[redacted]")
            .finish()
    }
}

/// One user to import (or, with `password`, to create).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportUser {
    /// The email.
    pub email: String,
    /// The user's id, kept as given (a UUID); a new one when absent. Required with an
    /// `authman_sha256` hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `active`, `suspended`, or `pending` (no password; `register` then sends the user a
    /// code). Default: `active` with a password or hash, `pending` without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<UserState>,
    /// The profile object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The user's existing password hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<ImportedHash>,
    /// A password to set (hashed with argon2id; checked against the password policy), instead
    /// of `password_hash`: what `authq user create` sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// `import_users`: up to [`MAX_IMPORT_USERS`] users.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportUsersRequest {
    /// The users, each imported on its own.
    pub users: Vec<ImportUser>,
}
request!(ImportUsersRequest => ImportUsers, ImportUsersReply);

/// What became of one entry of `import_users`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// The user was created.
    Imported,
    /// A user with this email or id already exists; nothing changed.
    Exists,
    /// The entry was refused (see `reason`).
    Invalid,
}

/// The result of one entry of `import_users`, in the request's order.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    /// The entry's email, as given.
    pub email: String,
    /// The user's id (the new user's, or the existing one's), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What happened.
    pub status: ImportStatus,
    /// Why the entry is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The reply to `import_users`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportUsersReply {
    /// One result per entry, in order.
    pub results: Vec<ImportResult>,
}

/// `end_user_sessions`: ends every session of a user, named by id or email.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUserSessionsRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(EndUserSessionsRequest => EndUserSessions, EndUserSessionsReply);

/// `reset_mfa`: the user whose second factor to turn off.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetMfaRequest {
    /// The user.
    #[serde(flatten)]
    pub user: UserRef,
}
request!(ResetMfaRequest => ResetMfa, ResetMfaReply);

/// The reply to `reset_mfa`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetMfaReply {
    /// The user's id.
    pub user_id: String,
}

/// The reply to `end_user_sessions`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUserSessionsReply {
    /// The user's id.
    pub user_id: String,
    /// How many sessions ended.
    pub ended: u64,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::*;

    #[test]
    fn user_admin_shapes() {
        pin(
            &ListUsersRequest {
                email_prefix: Some("ann".into()),
                cursor: None,
                limit: Some(10),
            },
            r#"{"email_prefix":"ann","limit":10}"#,
        );
        pin(
            &ImportUser {
                email: "ann@example.com".into(),
                user_id: Some("u1".into()),
                state: None,
                profile: None,
                password_hash: Some(ImportedHash {
                    scheme: PasswordScheme::AuthmanSha256,
                    hash: "ab".into(),
                }),
                password: None,
            },
            r#"{"email":"ann@example.com","user_id":"u1","password_hash":{"scheme":"authman_sha256","hash":"ab"}}"#,
        );
        pin(
            &ImportResult {
                email: "ann@example.com".into(),
                user_id: None,
                status: ImportStatus::Invalid,
                reason: Some("why".into()),
            },
            r#"{"email":"ann@example.com","status":"invalid","reason":"why"}"#,
        );
        pin(
            &EndUserSessionsReply {
                user_id: "u1".into(),
                ended: 2,
            },
            r#"{"user_id":"u1","ended":2}"#,
        );
        let hash = ImportedHash {
            scheme: PasswordScheme::Bcrypt,
            hash: "$2b$secret".into(),
        };
        assert!(!format!("{hash:?}").contains("secret"));
    }
}
