//! `get_profile`, `set_profile`.

use super::{UserInfo, request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `get_profile`: the session whose user to read.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetProfileRequest {
    /// A live session token.
    pub session: Secret,
}
request!(GetProfileRequest => GetProfile, ProfileReply);

/// How `set_profile` applies the given object.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileMode {
    /// JSON Merge Patch (RFC 7396): keys in the patch overwrite, `null` deletes a key, nested
    /// objects merge recursively, keys absent from the patch stay. The default.
    #[default]
    Merge,
    /// The given object becomes the whole profile.
    Replace,
}

/// `set_profile`: a session, the profile object and how to apply it.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetProfileRequest {
    /// A live session token.
    pub session: Secret,
    /// A JSON object: a merge patch, or the whole new profile.
    pub profile: serde_json::Map<String, serde_json::Value>,
    /// `merge` (default) or `replace`.
    #[serde(default)]
    pub mode: ProfileMode,
}
request!(SetProfileRequest => SetProfile, ProfileReply);

/// The reply to `get_profile` and `set_profile`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileReply {
    /// The user, with the (new) profile.
    pub user: UserInfo,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::*;

    #[test]
    fn profile_shapes() {
        pin(
            &GetProfileRequest {
                session: "s".into(),
            },
            r#"{"session":"s"}"#,
        );
        let mut profile = serde_json::Map::new();
        profile.insert("name".into(), serde_json::Value::Null);
        pin(
            &SetProfileRequest {
                session: "s".into(),
                profile,
                mode: ProfileMode::Replace,
            },
            r#"{"session":"s","profile":{"name":null},"mode":"replace"}"#,
        );
    }

    #[test]
    fn mode_defaults_to_merge() {
        let r: SetProfileRequest = serde_json::from_str(r#"{"session":"s","profile":{}}"#).unwrap();
        assert_eq!(r.mode, ProfileMode::Merge);
    }
}
