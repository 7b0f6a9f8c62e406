//! Auth events: what authq publishes on the `{ns}.events` topic exchange after a change
//! commits (see `PROTOCOL.md`, "Events").
//!
//! Every event has an `id` (a UUID: consumers deduplicate by it, delivery is at-least-once), a
//! `type`, a body `version`, a `time` (Unix ms) and a `data` object. The routing key is the
//! type, except for the two events that carry a secret for a mailer (`user.registered` with the
//! confirmation code, `password.reset_requested` with the reset token), whose routing key is
//! prefixed with `secret.` so that only a queue bound to `secret.#` (a mailer's) receives them.

use serde::{Deserialize, Serialize};

mod data;
pub use data::ServiceClientChanged;
pub use data::{
    LoginFailed, LoginMethod, LoginSucceeded, MfaChange, MfaChanged, PasswordChangeReason,
    PasswordChanged, PasswordResetRequested, SessionEndReason, SessionEnded, UserDeleted,
    UserDeletionCompleted, UserEmail, UserRegistered, UserSuspended,
};

/// The version of every event body this crate describes.
pub const EVENT_VERSION: u32 = 1;

/// The routing-key prefix of secret-bearing events.
pub const SECRET_PREFIX: &str = "secret.";

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, secret: $secret:literal; )*) => {
        /// What happened.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$( EventKind::$variant, )*];

            /// The event's `type`.
            pub const fn as_str(self) -> &'static str {
                match self { $( EventKind::$variant => $name, )* }
            }

            /// Whether the event carries a secret (a code or a token for a mailer).
            pub const fn is_secret(self) -> bool {
                match self { $( EventKind::$variant => $secret, )* }
            }
        }
    };
}

event_kinds! {
    /// A login succeeded: `user_id`, `email`, `method` (`password` or `social`, then
    /// `provider`). Every path that issues a session (`login`, `social_login`) and
    /// `link_social` publish it.
    LoginSucceeded = "auth.login.succeeded", secret: false;
    /// A login failed: `reason` (an error code), `method` (and `provider`), and
    /// `user_id`/`email` when known.
    LoginFailed = "auth.login.failed", secret: false;
    /// A registration started (or its code was re-issued): `user_id`, `email`, `code`,
    /// `expires_at`. Secret-bearing.
    UserRegistered = "user.registered", secret: true;
    /// A registration was confirmed: `user_id`, `email`.
    UserConfirmed = "user.confirmed", secret: false;
    /// A password reset was requested for an existing user: `email`, `token`, `expires_at`.
    /// Secret-bearing. (Nothing is published for an unknown email.)
    PasswordResetRequested = "password.reset_requested", secret: true;
    /// The password changed (`change_password` or `complete_reset`): `user_id`, `email`,
    /// `sessions_ended`.
    PasswordChanged = "password.changed", secret: false;
    /// Sessions ended by `logout` or `logout_all`: `user_id`, `sessions_ended`, `reason`
    /// (`logout` or `logout_all`).
    SessionEnded = "session.ended", secret: false;
    /// A user was suspended: `user_id`, `email`, `sessions_ended`.
    UserSuspended = "user.suspended", secret: false;
    /// A suspension was lifted: `user_id`, `email`.
    UserUnsuspended = "user.unsuspended", secret: false;
    /// A user was deleted: `user_id`, and `services`: those that must acknowledge with
    /// `deletion_done` (the deletion request to every service).
    UserDeleted = "user.deleted", secret: false;
    /// A user's deletion cascade ended: `user_id`, `services` (those that acknowledged) and
    /// `missing` (those that had not when the deadline passed; empty when all did).
    UserDeletionCompleted = "user.deletion_completed", secret: false;
    /// A user's second factor changed: `user_id`, `change` (`enrollment_started`, `enabled`,
    /// `disabled`, `recovery_code_used`), and `recovery_codes_left` where it applies.
    MfaChanged = "mfa.changed", secret: false;
    /// A service client was created (`create_service_client`): `client_id`.
    ServiceClientCreated = "service_client.created", secret: false;
    /// A service client was revoked (`revoke_service_client`): `client_id`.
    ServiceClientRevoked = "service_client.revoked", secret: false;
}

impl EventKind {
    /// The routing key the event is published with.
    pub fn routing_key(self) -> String {
        if self.is_secret() {
            format!("{SECRET_PREFIX}{}", self.as_str())
        } else {
            self.as_str().to_owned()
        }
    }
}

/// One event: its envelope (`id`, `type`, `version`, `time`) and its typed body, whose variant
/// is the `type` and whose fields are the `data` object.
///
/// On the wire the fields come in this order: `id`, `type`, `version`, `time`, `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// A UUID, unique per event: deduplicate by it.
    pub id: String,
    /// The body's version ([`EVENT_VERSION`]).
    pub version: u32,
    /// When it happened (Unix ms, the worker's clock).
    pub time: i64,
    /// What happened, with its details.
    pub body: EventBody,
}

impl Event {
    /// What happened.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

macro_rules! event_bodies {
    ($( $(#[$doc:meta])* $variant:ident($data:ty), )*) => {
        /// What happened, with its details: one variant per [`EventKind`], each carrying the
        /// `data` object of that type.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventBody {
            $( $(#[$doc])* $variant($data), )*
        }

        impl EventBody {
            /// The event's type.
            pub fn kind(&self) -> EventKind {
                match self { $( Self::$variant(_) => EventKind::$variant, )* }
            }

            /// Serialises the `data` object as the field `data` of `out`.
            fn serialize_data<S: serde::ser::SerializeStruct>(&self, out: &mut S) -> Result<(), S::Error> {
                match self { $( Self::$variant(d) => out.serialize_field("data", d), )* }
            }

            /// The body of an event of type `kind` from its `data` object.
            fn from_data(kind: EventKind, data: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match kind { $( EventKind::$variant => Self::$variant(serde_json::from_value(data)?), )* })
            }
        }

        /// Each type's `data` schema, by type (for `schema::all`).
        #[cfg(feature = "json-schema")]
        pub(crate) fn data_schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(EventKind, schemars::Schema)> {
            vec![$( (EventKind::$variant, generator.subschema_for::<$data>()), )*]
        }
    };
}

event_bodies! {
    /// `auth.login.succeeded`.
    LoginSucceeded(LoginSucceeded),
    /// `auth.login.failed`.
    LoginFailed(LoginFailed),
    /// `user.registered` (secret-bearing).
    UserRegistered(UserRegistered),
    /// `user.confirmed`.
    UserConfirmed(UserEmail),
    /// `password.reset_requested` (secret-bearing).
    PasswordResetRequested(PasswordResetRequested),
    /// `password.changed`.
    PasswordChanged(PasswordChanged),
    /// `session.ended`.
    SessionEnded(SessionEnded),
    /// `user.suspended`.
    UserSuspended(UserSuspended),
    /// `user.unsuspended`.
    UserUnsuspended(UserEmail),
    /// `user.deleted`.
    UserDeleted(UserDeleted),
    /// `user.deletion_completed`.
    UserDeletionCompleted(UserDeletionCompleted),
    /// `mfa.changed`.
    MfaChanged(MfaChanged),
    /// `service_client.created`.
    ServiceClientCreated(ServiceClientChanged),
    /// `service_client.revoked`.
    ServiceClientRevoked(ServiceClientChanged),
}

impl EventBody {
    /// The user concerned, when the event names one.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::LoginSucceeded(d) => Some(&d.user_id),
            Self::LoginFailed(d) => d.user_id.as_deref(),
            Self::UserRegistered(d) => Some(&d.user_id),
            Self::UserConfirmed(d) | Self::UserUnsuspended(d) => Some(&d.user_id),
            Self::PasswordResetRequested(_) => None,
            Self::PasswordChanged(d) => Some(&d.user_id),
            Self::SessionEnded(d) => Some(&d.user_id),
            Self::UserSuspended(d) => Some(&d.user_id),
            Self::UserDeleted(d) => Some(&d.user_id),
            Self::UserDeletionCompleted(d) => Some(&d.user_id),
            Self::MfaChanged(d) => Some(&d.user_id),
            Self::ServiceClientCreated(_) | Self::ServiceClientRevoked(_) => None,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Event", 5)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("type", &self.kind())?;
        out.serialize_field("version", &self.version)?;
        out.serialize_field("time", &self.time)?;
        self.body.serialize_data(&mut out)?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The envelope as it arrives; `data` is typed once `type` is known.
        #[derive(Deserialize)]
        struct Wire {
            id: String,
            #[serde(rename = "type")]
            kind: EventKind,
            version: u32,
            time: i64,
            data: serde_json::Value,
        }
        let wire = Wire::deserialize(deserializer)?;
        let body = EventBody::from_data(wire.kind, wire.data).map_err(serde::de::Error::custom)?;
        Ok(Self {
            id: wire.id,
            version: wire.version,
            time: wire.time,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::secret::Secret;

    #[test]
    fn event_shapes_are_pinned() {
        let e = Event {
            id: "0195d3c2-0000-7000-8000-000000000000".into(),
            version: EVENT_VERSION,
            time: 1_700_000_000_000,
            body: EventBody::UserRegistered(UserRegistered {
                user_id: "u1".into(),
                email: "ann@example.com".into(),
                code: Secret::from("12345678"),
                expires_at: 1_700_000_100_000,
            }),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"id":"0195d3c2-0000-7000-8000-000000000000","type":"user.registered","version":1,"time":1700000000000,"data":{"user_id":"u1","email":"ann@example.com","code":"12345678","expires_at":1700000100000}}"#
        );
        assert_eq!(
            EventKind::UserRegistered.routing_key(),
            "secret.user.registered"
        );
        assert_eq!(EventKind::UserDeleted.routing_key(), "user.deleted");
        let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "auth.login.succeeded",
                "auth.login.failed",
                "user.registered",
                "user.confirmed",
                "password.reset_requested",
                "password.changed",
                "session.ended",
                "user.suspended",
                "user.unsuspended",
                "user.deleted",
                "user.deletion_completed",
                "mfa.changed",
                "service_client.created",
                "service_client.revoked",
            ]
        );
    }

    /// Every type's `data`, field for field in the order the wire has always had (the order of
    /// the former catch-all struct: user_id, email, reason, source, method, provider, detail,
    /// session_epoch, sessions_ended, code, token, expires_at, services, missing), and back.
    #[test]
    fn every_event_type_keeps_its_wire_shape() {
        let cases: Vec<(EventBody, &str)> = vec![
            (
                EventBody::LoginSucceeded(LoginSucceeded {
                    user_id: "u1".into(),
                    email: "a@x".into(),
                    method: LoginMethod::Social,
                    provider: Some("github".into()),
                }),
                r#"{"user_id":"u1","email":"a@x","method":"social","provider":"github"}"#,
            ),
            (
                EventBody::LoginFailed(LoginFailed {
                    user_id: None,
                    email: Some("a@x".into()),
                    reason: ErrorCode::PolicyDenied,
                    source: Some("203.0.113.9".into()),
                    method: LoginMethod::Password,
                    provider: None,
                    detail: Some("blocked".into()),
                }),
                r#"{"email":"a@x","reason":"policy_denied","source":"203.0.113.9","method":"password","detail":"blocked"}"#,
            ),
            (
                EventBody::UserConfirmed(UserEmail {
                    user_id: "u1".into(),
                    email: "a@x".into(),
                }),
                r#"{"user_id":"u1","email":"a@x"}"#,
            ),
            (
                EventBody::PasswordResetRequested(PasswordResetRequested {
                    email: "a@x".into(),
                    token: Secret::from("t"),
                    expires_at: 5,
                }),
                r#"{"email":"a@x","token":"t","expires_at":5}"#,
            ),
            (
                EventBody::PasswordChanged(PasswordChanged {
                    user_id: "u1".into(),
                    email: "a@x".into(),
                    reason: PasswordChangeReason::CompleteReset,
                    session_epoch: 3,
                    sessions_ended: 2,
                }),
                r#"{"user_id":"u1","email":"a@x","reason":"complete_reset","session_epoch":3,"sessions_ended":2}"#,
            ),
            (
                EventBody::SessionEnded(SessionEnded {
                    user_id: "u1".into(),
                    reason: SessionEndReason::LogoutAll,
                    session_epoch: Some(4),
                    sessions_ended: 2,
                    session_ids: Vec::new(),
                }),
                r#"{"user_id":"u1","reason":"logout_all","session_epoch":4,"sessions_ended":2}"#,
            ),
            (
                EventBody::SessionEnded(SessionEnded {
                    user_id: "u1".into(),
                    reason: SessionEndReason::Logout,
                    session_epoch: None,
                    sessions_ended: 1,
                    session_ids: Vec::new(),
                }),
                r#"{"user_id":"u1","reason":"logout","sessions_ended":1}"#,
            ),
            (
                EventBody::SessionEnded(SessionEnded {
                    user_id: "u1".into(),
                    reason: SessionEndReason::SessionLimit,
                    session_epoch: None,
                    sessions_ended: 1,
                    session_ids: vec!["s1".into()],
                }),
                r#"{"user_id":"u1","reason":"session_limit","sessions_ended":1,"session_ids":["s1"]}"#,
            ),
            (
                EventBody::UserSuspended(UserSuspended {
                    user_id: "u1".into(),
                    email: "a@x".into(),
                    session_epoch: 2,
                    sessions_ended: 0,
                }),
                r#"{"user_id":"u1","email":"a@x","session_epoch":2,"sessions_ended":0}"#,
            ),
            (
                EventBody::UserUnsuspended(UserEmail {
                    user_id: "u1".into(),
                    email: "a@x".into(),
                }),
                r#"{"user_id":"u1","email":"a@x"}"#,
            ),
            (
                EventBody::UserDeleted(UserDeleted {
                    user_id: "u1".into(),
                    session_epoch: 2,
                    services: vec!["shop".into()],
                }),
                r#"{"user_id":"u1","session_epoch":2,"services":["shop"]}"#,
            ),
            (
                EventBody::UserDeletionCompleted(UserDeletionCompleted {
                    user_id: "u1".into(),
                    services: vec!["shop".into()],
                    missing: vec![],
                }),
                r#"{"user_id":"u1","services":["shop"],"missing":[]}"#,
            ),
            (
                EventBody::MfaChanged(MfaChanged {
                    user_id: "u1".into(),
                    change: MfaChange::RecoveryCodeUsed,
                    recovery_codes_left: Some(9),
                }),
                r#"{"user_id":"u1","change":"recovery_code_used","recovery_codes_left":9}"#,
            ),
        ];
        for (body, data) in cases {
            let kind = body.kind();
            let event = Event {
                id: "e1".into(),
                version: EVENT_VERSION,
                time: 7,
                body,
            };
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                json,
                format!(
                    r#"{{"id":"e1","type":"{}","version":1,"time":7,"data":{data}}}"#,
                    kind.as_str()
                )
            );
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        }
    }

    #[test]
    fn an_event_whose_data_does_not_fit_its_type_is_refused() {
        let json =
            r#"{"id":"e1","type":"user.confirmed","version":1,"time":7,"data":{"email":"a@x"}}"#;
        assert!(serde_json::from_str::<Event>(json).is_err());
    }
}
