//! The closed enum of error codes, and the error object of an error reply.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $message:literal; )*) => {
        /// Why a request failed: a stable snake_case string on the wire.
        ///
        /// Codes are only ever added, never renamed or removed. A client that receives a code it
        /// does not know sees [`ErrorCode::Unrecognized`] and should treat it as a generic
        /// failure; a worker never sends that variant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this version of the protocol crate does not know (sent by a newer worker).
            /// Never sent on the wire.
            #[serde(other)]
            Unrecognized,
        }

        impl ErrorCode {
            /// Every code a worker may send, in the order `PROTOCOL.md` documents them.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $name, )*
                    ErrorCode::Unrecognized => "unrecognized",
                }
            }

            /// The fixed, human-readable message a worker sends with this code unless it has a
            /// more precise one that reveals nothing secret (only `bad_request` and
            /// `weak_password` carry details).
            pub const fn default_message(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $message, )*
                    ErrorCode::Unrecognized => "an error this client does not know",
                }
            }

            /// Parses a wire string; unknown strings give [`ErrorCode::Unrecognized`].
            pub fn parse(s: &str) -> Self {
                match s { $( $name => ErrorCode::$variant, )* _ => ErrorCode::Unrecognized }
            }
        }
    };
}

error_codes! {
    /// The body is not valid JSON, is not UTF-8, is nested too deeply, has a field of the wrong
    /// type, misses a required field, or fails validation (e.g. a malformed email address).
    BadRequest = "bad_request", "the request is malformed";
    /// The body is larger than the worker's limit; it was refused before parsing.
    PayloadTooLarge = "payload_too_large", "the request body is too large";
    /// No worker serves the operation named by the routing key.
    UnknownOperation = "unknown_operation", "unknown operation";
    /// Email or password is wrong (the reply never tells which, nor whether the email exists).
    InvalidCredentials = "invalid_credentials", "email or password is wrong";
    /// `register` for an email that already belongs to an active or suspended user.
    UserExists = "user_exists", "a user with this email already exists";
    /// A confirmation code or reset token is wrong, expired, already used, or was issued for
    /// another email or flow.
    InvalidCode = "invalid_code", "the code is invalid or expired";
    /// The session token is unknown, ended or expired.
    SessionInvalid = "session_invalid", "the session is invalid or expired";
    /// The user is suspended: a correct password is refused until `unsuspend`.
    UserSuspended = "user_suspended", "the user is suspended";
    /// The new password does not meet the password policy.
    WeakPassword = "weak_password", "the password does not meet the password policy";
    /// The user named by an administrative request does not exist.
    NotFound = "not_found", "no such user";
    /// A request reused the `message_id` of an earlier request with a different body: a
    /// `message_id` names one request, and its retries must repeat it exactly.
    IdempotencyConflict = "idempotency_conflict", "this message_id was already used for a different request";
    /// A policy refused the login or registration (the operator's deny-list or policy hook);
    /// the message is the policy's reason.
    PolicyDenied = "policy_denied", "refused by policy";
    /// The worker failed; the cause is in its log under the request id.
    Internal = "internal", "internal error";
    /// Too many attempts for this email (or source address) in the current window: failed
    /// logins, registrations or reset requests. Said the same whether or not the email belongs
    /// to a user; retry later.
    TooManyAttempts = "too_many_attempts", "too many attempts; try again later";
    /// The caller is not allowed this operation (administrative operations are accepted only
    /// from the RabbitMQ users the operator lists).
    Forbidden = "forbidden", "the caller is not allowed this operation";
    /// The social login provider named in the request is not configured.
    UnknownProvider = "unknown_provider", "no such social login provider";
    /// The OAuth `state` is unknown, expired, already used, or was issued for another provider.
    InvalidState = "invalid_state", "the state is invalid, expired or already used";
    /// The provider refused the authorization code or the token (an OAuth error, or a 4xx).
    ProviderRefused = "provider_refused", "the provider refused the authorization";
    /// The provider did not answer in time, could not be reached, answered 5xx, or too many
    /// provider calls are already in flight. Retrying later may work.
    ProviderUnavailable = "provider_unavailable", "the provider is unavailable";
    /// The provider answered something that is not the expected JSON.
    ProviderBadResponse = "provider_bad_response", "the provider's answer is malformed";
    /// The provider's profile has no subject (user id at the provider).
    MissingSubject = "missing_subject", "the provider's profile has no subject";
    /// The provider's email belongs to an existing account and may not be linked
    /// automatically: log in to that account and call `link_social`.
    LinkRequired = "link_required", "the email belongs to an existing account: log in and link";
    /// The provider account is already linked to another user.
    AlreadyLinked = "already_linked", "the provider account is linked to another user";
    /// The store was too busy to answer in time (another worker holds its write lock, or no
    /// connection was free). Retry later with the same `message_id` and body: if a delivery of
    /// the request took effect (this one included), the retry is answered with its outcome;
    /// otherwise the retry does it.
    Unavailable = "unavailable", "the store is busy; retry with the same message_id";
    /// `end_session` named no live session of the caller's user (unknown, ended, expired, or
    /// another user's: the reply never tells which).
    SessionNotFound = "session_not_found", "no such session";
    /// The password (or the social login) was right, and the user has a second factor: the
    /// reply's `error.mfa` holds the pending handle for `mfa_verify`. No session was issued.
    MfaRequired = "mfa_required", "a second factor is required: call mfa_verify with the handle";
    /// `mfa_enroll` or `mfa_confirm` for a user whose second factor is already on.
    MfaEnabled = "mfa_enabled", "the second factor is already enabled";
    /// `mfa_confirm` without an enrolment to confirm, or `mfa_disable` for a user without a
    /// second factor.
    MfaNotEnabled = "mfa_not_enabled", "no second factor is enrolled";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of an error reply.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine-readable code: branch on this.
    pub code: ErrorCode,
    /// A human-readable explanation: show or log it, never parse it.
    pub message: String,
    /// With `mfa_required` only: the pending handle for `mfa_verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<crate::ops::MfaPending>,
}

impl ErrorBody {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.default_message().to_owned(),
            mfa: None,
        }
    }

    /// An error with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            mfa: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pinned() {
        let pinned: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            pinned,
            [
                "bad_request",
                "payload_too_large",
                "unknown_operation",
                "invalid_credentials",
                "user_exists",
                "invalid_code",
                "session_invalid",
                "user_suspended",
                "weak_password",
                "not_found",
                "idempotency_conflict",
                "policy_denied",
                "internal",
                "too_many_attempts",
                "forbidden",
                "unknown_provider",
                "invalid_state",
                "provider_refused",
                "provider_unavailable",
                "provider_bad_response",
                "missing_subject",
                "link_required",
                "already_linked",
                "unavailable",
                "session_not_found",
                "mfa_required",
                "mfa_enabled",
                "mfa_not_enabled",
            ]
        );
    }

    #[test]
    fn serde_form_matches_as_str() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn unknown_codes_from_newer_workers_are_tolerated() {
        let c: ErrorCode = serde_json::from_str(r#""some_future_code""#).unwrap();
        assert_eq!(c, ErrorCode::Unrecognized);
        assert_eq!(ErrorCode::parse("nope"), ErrorCode::Unrecognized);
    }

    #[test]
    fn error_body_shape() {
        let body = ErrorBody::new(ErrorCode::SessionInvalid);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"session_invalid","message":"the session is invalid or expired"}"#
        );
    }
}
