//! Auth events: what authq publishes on the `{ns}.events` topic exchange after a change
//! commits (see `PROTOCOL.md`, "Events").
//!
//! Every event has an `id` (a UUID: consumers deduplicate by it, delivery is at-least-once), a
//! `type`, a body `version`, a `time` (Unix ms) and a `data` object. The routing key is the
//! type, except for the two events that carry a secret for a mailer (`user.registered` with the
//! confirmation code, `password.reset_requested` with the reset token), whose routing key is
//! prefixed with `secret.` so that only a queue bound to `secret.#` (a mailer's) receives them.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

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
    /// A password reset was requested for an existing user: `user_id`, `email`, `token`,
    /// `expires_at`. Secret-bearing. (Nothing is published for an unknown email.)
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

/// One event.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A UUID, unique per event: deduplicate by it.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The body's version ([`EVENT_VERSION`]).
    pub version: u32,
    /// When it happened (Unix ms, the worker's clock).
    pub time: i64,
    /// The details; which fields are present depends on the type.
    pub data: EventData,
}

/// The details of an event. Fields absent for a type are omitted.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// The user concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Why (an error code for `auth.login.failed`, the operation for `session.ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the attempt came from, as the calling service said (`client_ip` of `login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the user authenticated (`auth.login.*`): `password`, or `social` with `provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The social login provider (`auth.login.*` with method `social`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The refusing policy's own words (`auth.login.failed` with reason `policy_denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The user's session epoch after the change: every cached check result of the user with a
    /// lower epoch is stale (events that end all of a user's sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_epoch: Option<u64>,
    /// How many sessions ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<u64>,
    /// The confirmation code (`user.registered` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret>,
    /// The reset token (`password.reset_requested` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// When the code or token expires (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Services: those that must acknowledge a deletion (`user.deleted`), or that did
    /// (`user.deletion_completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Services that had not acknowledged a deletion by its deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shapes_are_pinned() {
        let e = Event {
            id: "0195d3c2-0000-7000-8000-000000000000".into(),
            kind: EventKind::UserRegistered,
            version: EVENT_VERSION,
            time: 1_700_000_000_000,
            data: EventData {
                user_id: Some("u1".into()),
                email: Some("ann@example.com".into()),
                code: Some(Secret::from("12345678")),
                expires_at: Some(1_700_000_100_000),
                ..EventData::default()
            },
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
            ]
        );
    }
}
