//! JSON Schemas (draft 2020-12) of the wire contract, derived from this crate's types with
//! schemars (feature `json-schema`).
//!
//! [`all`] gives every schema under the path it is checked in at, below `protocol/schema/`:
//!
//! - `requests/{operation}.json` — each operation's request body;
//! - `replies/{operation}.json` — the `data` of each operation's `ok` reply;
//! - `error.json` — the whole error reply envelope (`{"status":"error","error":{…}}`);
//! - `event.json` — an event published on the events exchange.
//!
//! Objects do not forbid unknown properties: workers ignore request fields they do not know and
//! clients must ignore reply fields they do not know (see `PROTOCOL.md`, "Conventions"). Error
//! codes and event types are open strings (new ones may be added); the known ones are listed as
//! `examples`.

use crate::error::ErrorCode;
use crate::events::EventKind;
use crate::ops::{self, Profile, Request};
use crate::secret::Secret;
use crate::{ErrorBody, Operation};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema, schema_for};
use std::borrow::Cow;
use std::collections::BTreeMap;

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A secret (password, code or token): a plain string, never logged."
        })
    }
}

impl JsonSchema for Profile {
    fn schema_name() -> Cow<'static, str> {
        "Profile".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "The user's profile: a JSON object owned by the calling services."
        })
    }
}

impl JsonSchema for ErrorCode {
    fn schema_name() -> Cow<'static, str> {
        "ErrorCode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let known: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        json_schema!({
            "type": "string",
            "description": "A stable snake_case error code. New codes may be added: treat an unknown one as a generic failure.",
            "examples": known
        })
    }
}

impl JsonSchema for EventKind {
    fn schema_name() -> Cow<'static, str> {
        "EventKind".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        json_schema!({
            "type": "string",
            "description": "What happened. New types may be added: ignore the ones you do not know.",
            "examples": known
        })
    }
}

/// The request and reply schemas of one operation.
fn operation<R: Request + JsonSchema>(out: &mut BTreeMap<String, serde_json::Value>)
where
    R::Reply: JsonSchema,
{
    let name = R::OPERATION.as_str();
    let mut request = schema_for!(R);
    request.insert("title".into(), format!("{name} request").into());
    let mut reply = schema_for!(R::Reply);
    reply.insert("title".into(), format!("{name} reply data").into());
    out.insert(format!("requests/{name}.json"), request.to_value());
    out.insert(format!("replies/{name}.json"), reply.to_value());
}

/// The error reply envelope, whole.
fn error_envelope() -> serde_json::Value {
    let body = schema_for!(ErrorBody).to_value();
    let mut defs = serde_json::Map::new();
    if let Some(serde_json::Value::Object(d)) = body.get("$defs") {
        defs.extend(d.clone());
    }
    let mut error = body.clone();
    if let Some(o) = error.as_object_mut() {
        o.remove("$schema");
        o.remove("$defs");
        o.remove("title");
    }
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "error reply",
        "description": "An error reply: branch on error.code; error.message is for humans.",
        "type": "object",
        "properties": {
            "status": {"const": "error"},
            "error": error,
        },
        "required": ["status", "error"],
        "$defs": defs,
    })
}

/// Every schema, keyed by its path below `protocol/schema/`.
pub fn all() -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for op in Operation::ALL {
        // The match makes a new operation a compile error here until its schemas exist.
        match op {
            Operation::Ping => operation::<ops::PingRequest>(&mut out),
            Operation::Register => operation::<ops::RegisterRequest>(&mut out),
            Operation::ConfirmRegistration => {
                operation::<ops::ConfirmRegistrationRequest>(&mut out);
            }
            Operation::Login => operation::<ops::LoginRequest>(&mut out),
            Operation::Check => operation::<ops::CheckRequest>(&mut out),
            Operation::Logout => operation::<ops::LogoutRequest>(&mut out),
            Operation::LogoutAll => operation::<ops::LogoutAllRequest>(&mut out),
            Operation::ListSessions => operation::<ops::ListSessionsRequest>(&mut out),
            Operation::EndSession => operation::<ops::EndSessionRequest>(&mut out),
            Operation::StartReset => operation::<ops::StartResetRequest>(&mut out),
            Operation::CompleteReset => operation::<ops::CompleteResetRequest>(&mut out),
            Operation::ChangePassword => operation::<ops::ChangePasswordRequest>(&mut out),
            Operation::GetProfile => operation::<ops::GetProfileRequest>(&mut out),
            Operation::SetProfile => operation::<ops::SetProfileRequest>(&mut out),
            Operation::DeleteUser => operation::<ops::DeleteUserRequest>(&mut out),
            Operation::Suspend => operation::<ops::SuspendRequest>(&mut out),
            Operation::Unsuspend => operation::<ops::UnsuspendRequest>(&mut out),
            Operation::SocialUrl => operation::<ops::SocialUrlRequest>(&mut out),
            Operation::SocialLogin => operation::<ops::SocialLoginRequest>(&mut out),
            Operation::LinkSocial => operation::<ops::LinkSocialRequest>(&mut out),
            Operation::DeletionDone => operation::<ops::DeletionDoneRequest>(&mut out),
            Operation::DeletionStatus => operation::<ops::DeletionStatusRequest>(&mut out),
            Operation::ListUsers => operation::<ops::ListUsersRequest>(&mut out),
            Operation::GetUser => operation::<ops::GetUserRequest>(&mut out),
            Operation::ImportUsers => operation::<ops::ImportUsersRequest>(&mut out),
            Operation::EndUserSessions => operation::<ops::EndUserSessionsRequest>(&mut out),
            Operation::MfaEnroll => operation::<ops::MfaEnrollRequest>(&mut out),
            Operation::MfaConfirm => operation::<ops::MfaConfirmRequest>(&mut out),
            Operation::MfaVerify => operation::<ops::MfaVerifyRequest>(&mut out),
            Operation::MfaDisable => operation::<ops::MfaDisableRequest>(&mut out),
            Operation::ResetMfa => operation::<ops::ResetMfaRequest>(&mut out),
            Operation::Jwks => operation::<ops::JwksRequest>(&mut out),
            Operation::Refresh => operation::<ops::RefreshRequest>(&mut out),
            Operation::CreateServiceClient => {
                operation::<ops::CreateServiceClientRequest>(&mut out);
            }
            Operation::RevokeServiceClient => {
                operation::<ops::RevokeServiceClientRequest>(&mut out);
            }
            Operation::ServiceToken => operation::<ops::ServiceTokenRequest>(&mut out),
            Operation::ListServiceClients => {
                operation::<ops::ListServiceClientsRequest>(&mut out);
            }
            Operation::RotateServiceClientSecret => {
                operation::<ops::RotateServiceClientSecretRequest>(&mut out);
            }
        }
    }
    out.insert("error.json".into(), error_envelope());
    out.insert("event.json".into(), event());
    out
}

/// An event: the envelope, and each known type's `data` bound to its type by `if`/`then`, so
/// that types added later still validate as events (with `data` any object).
fn event() -> serde_json::Value {
    let mut generator = SchemaGenerator::default();
    let kind = generator.subschema_for::<EventKind>();
    let typed: Vec<serde_json::Value> = crate::events::data_schemas(&mut generator)
        .into_iter()
        .map(|(kind, data)| {
            serde_json::json!({
                "if": {"properties": {"type": {"const": kind.as_str()}}},
                "then": {"properties": {"data": data}},
            })
        })
        .collect();
    let defs = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "event",
        "description": "One event: branch on type; data's fields depend on it.",
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "A UUID, unique per event: deduplicate by it."},
            "type": kind,
            "version": {"type": "integer", "format": "uint32", "minimum": 0,
                        "description": "The body's version (1)."},
            "time": {"type": "integer", "format": "int64",
                     "description": "When it happened (Unix ms, the worker's clock)."},
            "data": {"type": "object", "description": "The details; see the type's own schema."},
        },
        "required": ["id", "type", "version", "time", "data"],
        "allOf": typed,
        "$defs": defs,
    })
}

/// The file text of a schema as checked in: pretty-printed, with a final newline.
pub fn to_file_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_request_and_a_reply_schema() {
        let all = all();
        for op in Operation::ALL {
            assert!(all.contains_key(&format!("requests/{op}.json")), "{op}");
            assert!(all.contains_key(&format!("replies/{op}.json")), "{op}");
        }
        assert_eq!(all.len(), 2 * Operation::ALL.len() + 2);
    }

    #[test]
    fn unknown_fields_are_allowed_and_required_fields_are_listed() {
        let all = all();
        let login = &all["requests/login.json"];
        assert!(login.get("additionalProperties").is_none(), "{login}");
        assert_eq!(login["required"], serde_json::json!(["email", "password"]));
        assert_eq!(
            all["requests/set_profile.json"]["required"],
            serde_json::json!(["session", "profile"])
        );
    }
}
