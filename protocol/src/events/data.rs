//! The `data` object of each event type, field for field in the order the wire has always had.

use crate::error::ErrorCode;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// How a user authenticated (`auth.login.*`).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// `login` with a password.
    Password,
    /// A social login provider (`provider` names it).
    Social,
}

/// `auth.login.succeeded`: every path that issues a session (`login`, `social_login`) and
/// `link_social`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginSucceeded {
    /// The user.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// How the user authenticated.
    pub method: LoginMethod,
    /// The social login provider (method `social`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// `auth.login.failed`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginFailed {
    /// The user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The email tried (or the user's, after a social login), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Why: the error code the caller was answered with.
    pub reason: ErrorCode,
    /// Where the attempt came from, as the calling service said (`client_ip` of `login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the user tried to authenticate.
    pub method: LoginMethod,
    /// The social login provider (method `social`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The refusing policy's own words (reason `policy_denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `user.registered`: a registration started, or its code was re-issued.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The (pending) user.
    pub user_id: String,
    /// The email to mail the code to.
    pub email: String,
    /// The confirmation code.
    pub code: Secret,
    /// When the code expires (Unix ms).
    pub expires_at: i64,
}

/// A user and their email: the data of `user.confirmed` and `user.unsuspended`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserEmail {
    /// The user.
    pub user_id: String,
    /// The user's email.
    pub email: String,
}

/// `password.reset_requested`: a reset for an existing user (nothing for an unknown email).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    /// The email to mail the token to.
    pub email: String,
    /// The reset token.
    pub token: Secret,
    /// When the token expires (Unix ms).
    pub expires_at: i64,
}

/// Why a password changed.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordChangeReason {
    /// `change_password`.
    ChangePassword,
    /// `complete_reset`.
    CompleteReset,
}

/// `password.changed`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// The user.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The operation that changed it.
    pub reason: PasswordChangeReason,
    /// The user's session epoch after the change (cached checks below it are stale).
    pub session_epoch: u64,
    /// How many sessions ended.
    pub sessions_ended: u64,
}

/// Why sessions ended (`session.ended`).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// `logout`: one session.
    Logout,
    /// `logout_all`: every session of the user.
    LogoutAll,
    /// `end_session`: one session, named by its id.
    EndSession,
    /// A login went past the deployment's session limit (`one`, or a cap of N): the user's
    /// oldest sessions beyond it ended.
    SessionLimit,
    /// `refresh` was given a refresh token that had been used already: the session and every
    /// refresh token of it ended (reuse detection).
    RefreshTokenReuse,
}

/// `session.ended`: sessions ended by `logout`, `logout_all`, `end_session`, a login past the
/// session limit, or a reused refresh token.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The user.
    pub user_id: String,
    /// The operation.
    pub reason: SessionEndReason,
    /// The user's session epoch after the change (`logout_all` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_epoch: Option<u64>,
    /// How many sessions ended.
    pub sessions_ended: u64,
    /// The ids (as `list_sessions` shows them) of the sessions that ended (`end_session`,
    /// `session_limit` and `refresh_token_reuse` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_ids: Vec<String>,
}

/// `user.suspended`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserSuspended {
    /// The user.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The user's session epoch after the change.
    pub session_epoch: u64,
    /// How many sessions ended.
    pub sessions_ended: u64,
}

/// `user.deleted`: the deletion request to every service.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserDeleted {
    /// The user.
    pub user_id: String,
    /// The user's session epoch after the change.
    pub session_epoch: u64,
    /// The services that must acknowledge with `deletion_done`.
    pub services: Vec<String>,
}

/// `user.deletion_completed`: a deletion cascade ended.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserDeletionCompleted {
    /// The user.
    pub user_id: String,
    /// The services that acknowledged.
    pub services: Vec<String>,
    /// The services that had not when the deadline passed (empty when all did).
    pub missing: Vec<String>,
}

/// What changed about a user's second factor (`mfa.changed`).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaChange {
    /// `mfa_enroll`: a secret was issued, not yet active.
    EnrollmentStarted,
    /// `mfa_confirm`: the second factor is on, with fresh recovery codes.
    Enabled,
    /// `mfa_disable`: the second factor is off, its recovery codes gone.
    Disabled,
    /// `mfa_verify` consumed a recovery code.
    RecoveryCodeUsed,
    /// `reset_mfa`: an administrator turned the second factor off.
    Reset,
}

/// `mfa.changed`: a user's second factor was enrolled, enabled, disabled, or a recovery code
/// was used.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MfaChanged {
    /// The user.
    pub user_id: String,
    /// What changed.
    pub change: MfaChange,
    /// Unused recovery codes left (`enabled` and `recovery_code_used` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<u64>,
}

/// `service_client.created` and `service_client.revoked`: a service client (never its secret).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClientChanged {
    /// The client id.
    pub client_id: String,
}
