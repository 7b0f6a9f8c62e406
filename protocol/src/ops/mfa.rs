//! The TOTP second factor: `mfa_enroll`, `mfa_confirm`, `mfa_verify`, `mfa_disable`, and the
//! pending handle a login answers `mfa_required` with.

use super::{Empty, LoginReply, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// How many recovery codes `mfa_confirm` issues.
pub const RECOVERY_CODES: usize = 10;

/// What an `mfa_required` error reply carries (its `error.mfa`): the pending handle that
/// `mfa_verify` turns into a session with a code. Single use, short-lived; it is not a session.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaPending {
    /// The pending handle: pass it to `mfa_verify` with a code.
    pub handle: Secret,
    /// When the handle expires (Unix ms).
    pub expires_at: i64,
}

/// `mfa_enroll`: starts (or restarts) a TOTP enrolment for the session's user.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaEnrollRequest {
    /// A live session token of the user.
    pub session: Secret,
}
request!(MfaEnrollRequest => MfaEnroll, MfaEnrollReply);

/// The reply to `mfa_enroll`: the new TOTP secret, to show the user once (as a QR code of
/// `uri`, or as text). Not active until `mfa_confirm`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaEnrollReply {
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: Secret,
    /// The `otpauth://totp/…` URI authenticator apps read (it contains the secret).
    pub uri: Secret,
    /// Digits per code (6).
    pub digits: u32,
    /// Seconds per time step (30).
    pub period: u64,
}

/// `mfa_confirm`: the first code from the authenticator, which activates the second factor.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaConfirmRequest {
    /// A live session token of the user.
    pub session: Secret,
    /// A current code from the authenticator.
    pub code: Secret,
}
request!(MfaConfirmRequest => MfaConfirm, MfaConfirmReply);

/// The reply to `mfa_confirm`: the recovery codes, shown this once (only their digests are
/// kept).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaConfirmReply {
    /// [`RECOVERY_CODES`] single-use recovery codes.
    pub recovery_codes: Vec<Secret>,
}

/// `mfa_verify`: the pending handle of an `mfa_required` login and exactly one of a TOTP code
/// and a recovery code.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaVerifyRequest {
    /// The handle from the `mfa_required` reply.
    pub handle: Secret,
    /// A current code from the authenticator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret>,
    /// One of the user's unused recovery codes (used up by this call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<Secret>,
}
request!(MfaVerifyRequest => MfaVerify, LoginReply);

/// `mfa_disable`: turns the second factor off, proven by exactly one of a current code and
/// the password.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaDisableRequest {
    /// A live session token of the user.
    pub session: Secret,
    /// A current code from the authenticator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret>,
    /// The user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}
request!(MfaDisableRequest => MfaDisable, Empty);

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::*;

    #[test]
    fn shapes_are_pinned() {
        pin(
            &MfaPending {
                handle: Secret::from("h"),
                expires_at: 5,
            },
            r#"{"handle":"h","expires_at":5}"#,
        );
        pin(
            &MfaVerifyRequest {
                handle: Secret::from("h"),
                code: Some(Secret::from("123456")),
                recovery_code: None,
            },
            r#"{"handle":"h","code":"123456"}"#,
        );
        pin(
            &MfaDisableRequest {
                session: Secret::from("s"),
                code: None,
                password: Some(Secret::from("pw")),
            },
            r#"{"session":"s","password":"pw"}"#,
        );
    }
}
