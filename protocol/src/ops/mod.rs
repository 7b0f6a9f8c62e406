//! Each operation's request and reply body.
//!
//! Requests ignore unknown fields (so newer clients can talk to older workers for every field
//! that is optional), and every reply type tolerates fields it does not know. Timestamps are
//! integer Unix milliseconds (UTC). Passwords, codes and tokens are [`Secret`](crate::Secret)s.

mod admin;
mod deletion;
mod mfa;
mod password;
mod profile;
mod registration;
mod service_clients;
mod session;
mod social;
mod tokens;
mod users;

pub use admin::*;
pub use deletion::*;
pub use mfa::*;
pub use password::*;
pub use profile::*;
pub use registration::*;
pub use service_clients::*;
pub use session::*;
pub use social::*;
pub use tokens::*;
pub use users::*;

use crate::operation::Operation;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use std::fmt;

/// Ties a request body to its operation and its reply body.
pub trait Request: Serialize + DeserializeOwned + fmt::Debug + Send + Sync {
    /// The operation (routing key) this request is published under.
    const OPERATION: Operation;
    /// The `data` of a successful reply.
    type Reply: Serialize + DeserializeOwned + fmt::Debug + Send;
}

macro_rules! request {
    ($req:ty => $op:ident, $reply:ty) => {
        impl $crate::ops::Request for $req {
            const OPERATION: $crate::Operation = $crate::Operation::$op;
            type Reply = $reply;
        }
    };
}
pub(crate) use request;

/// The lifecycle state of a user.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Registered, waiting for `confirm_registration`; cannot log in.
    Pending,
    /// Confirmed; can log in.
    Active,
    /// Suspended by an administrator; cannot log in, has no sessions.
    Suspended,
}

impl UserState {
    /// The state as stored and sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses [`UserState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A user's profile: a JSON object owned by the calling services, opaque to authq.
///
/// Held as raw JSON text, so a worker passes the stored profile through without parsing it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profile(Box<RawValue>);

impl Profile {
    /// The empty profile, `{}`.
    pub fn empty() -> Self {
        Self::from_map(&serde_json::Map::new())
    }

    /// A profile from a JSON object.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Self {
        // A map of JSON values always serialises.
        let text = serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned());
        Self::from_json_unchecked(text)
    }

    /// Wraps JSON text known to be an object (e.g. read back from the store), without parsing.
    /// Text that is not valid JSON becomes `{}`.
    pub fn from_json_unchecked(text: String) -> Self {
        match RawValue::from_string(text) {
            Ok(raw) => Self(raw),
            Err(_) => Self::empty(),
        }
    }

    /// The profile as JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Parses the profile into a JSON object (empty if it is not one).
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Profiles may hold personal data: keep it out of logs by default.
        write!(f, "Profile({} bytes)", self.0.get().len())
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// A user as replies show it.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's id (a UUID), stable for the user's life.
    pub id: String,
    /// The email as the user registered it (matching is case-insensitive).
    pub email: String,
    /// The lifecycle state.
    pub state: UserState,
    /// The profile object.
    pub profile: Profile,
}

/// Names the user an administrative request acts on: exactly one of `user_id` and `email`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// The user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's email (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl UserRef {
    /// Refers to a user by id.
    pub fn id(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            email: None,
        }
    }

    /// Refers to a user by email.
    pub fn email(email: impl Into<String>) -> Self {
        Self {
            user_id: None,
            email: Some(email.into()),
        }
    }
}

/// An empty reply body, `{}`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[cfg(test)]
pub(crate) mod test_util {
    use serde::{Serialize, de::DeserializeOwned};
    use std::fmt::Debug;

    /// Pins a type's JSON: it serialises to exactly `json` and reads back equal.
    pub(crate) fn pin<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T, json: &str) {
        assert_eq!(serde_json::to_string(value).unwrap(), json);
        let back: T = serde_json::from_str(json).unwrap();
        assert_eq!(&back, value);
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::pin;
    use super::*;

    #[test]
    fn user_info_shape() {
        let user = UserInfo {
            id: "0190d3a4-0000-7000-8000-000000000000".into(),
            email: "Ann@Example.com".into(),
            state: UserState::Active,
            profile: Profile::from_json_unchecked(r#"{"name":"Ann"}"#.into()),
        };
        pin(
            &user,
            r#"{"id":"0190d3a4-0000-7000-8000-000000000000","email":"Ann@Example.com","state":"active","profile":{"name":"Ann"}}"#,
        );
    }

    #[test]
    fn user_ref_shape() {
        pin(&UserRef::id("u1"), r#"{"user_id":"u1"}"#);
        pin(&UserRef::email("a@b.c"), r#"{"email":"a@b.c"}"#);
    }

    #[test]
    fn states_round_trip() {
        for s in [UserState::Pending, UserState::Active, UserState::Suspended] {
            assert_eq!(UserState::parse(s.as_str()), Some(s));
            pin(&s, &format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn profile_debug_hides_content() {
        let p = Profile::from_json_unchecked(r#"{"ssn":"123"}"#.into());
        assert_eq!(format!("{p:?}"), "Profile(13 bytes)");
        assert_eq!(Profile::empty().as_json(), "{}");
    }
}
