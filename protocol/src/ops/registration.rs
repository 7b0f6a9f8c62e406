//! `register`, `confirm_registration`.

use super::{UserInfo, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `register`: the email to register, and optionally an initial profile.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The email to register.
    pub email: String,
    /// An initial profile (a JSON object); `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Map<String, serde_json::Value>>,
}
request!(RegisterRequest => Register, RegisterReply);

/// The reply to `register`: the confirmation code for the calling service to mail.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// The pending user's id.
    pub user_id: String,
    /// The single-use confirmation code (8 decimal digits). Any earlier code of this user stops
    /// working.
    pub code: Secret,
    /// When the code expires (Unix ms).
    pub expires_at: i64,
}

/// `confirm_registration`: the code from `register` and the user's chosen password.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmRegistrationRequest {
    /// The email the code was issued for.
    pub email: String,
    /// The confirmation code.
    pub code: Secret,
    /// The password the user chose.
    pub password: Secret,
}
request!(ConfirmRegistrationRequest => ConfirmRegistration, ConfirmRegistrationReply);

/// The reply to `confirm_registration`: the now active user.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfirmRegistrationReply {
    /// The user.
    pub user: UserInfo,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::super::{Profile, UserState};
    use super::*;

    #[test]
    fn register_shapes() {
        pin(
            &RegisterRequest {
                email: "ann@example.com".into(),
                profile: None,
            },
            r#"{"email":"ann@example.com"}"#,
        );
        let mut profile = serde_json::Map::new();
        profile.insert("name".into(), "Ann".into());
        pin(
            &RegisterRequest {
                email: "ann@example.com".into(),
                profile: Some(profile),
            },
            r#"{"email":"ann@example.com","profile":{"name":"Ann"}}"#,
        );
        pin(
            &RegisterReply {
                user_id: "u1".into(),
                code: "12345678".into(),
                expires_at: 9,
            },
            r#"{"user_id":"u1","code":"12345678","expires_at":9}"#,
        );
    }

    #[test]
    fn confirm_shapes() {
        pin(
            &ConfirmRegistrationRequest {
                email: "ann@example.com".into(),
                code: "12345678".into(),
                password: "correct horse".into(),
            },
            r#"{"email":"ann@example.com","code":"12345678","password":"correct horse"}"#,
        );
        pin(
            &ConfirmRegistrationReply {
                user: UserInfo {
                    id: "u1".into(),
                    email: "ann@example.com".into(),
                    state: UserState::Active,
                    profile: Profile::empty(),
                },
            },
            r#"{"user":{"id":"u1","email":"ann@example.com","state":"active","profile":{}}}"#,
        );
    }
}
