//! # authq-protocol: the wire contract
//!
//! Everything a caller and a worker must agree on, and nothing else: no I/O, no broker client,
//! no storage. A client in another language can be written from `PROTOCOL.md`, which documents
//! the same contract in prose; this crate is its executable form, and its unit tests pin the
//! JSON shape of every type.
//!
//! # Layout
//! - [`names`] — the namespace and the exchange, tube (queue) and header names derived from it.
//! - [`operation`] — the closed set of operations, each with its routing key and default tube.
//! - [`ops`] — each operation's request and reply body, tied together by the [`Request`] trait.
//! - [`envelope`] — the reply envelope `{"status":"ok","data":…}` / `{"status":"error","error":…}`.
//! - [`error`] — the closed enum of error codes, stable snake_case strings.
//! - [`events`] — the auth events published on the events exchange.
//! - [`secret`] — [`Secret`], the string type for passwords, codes and tokens (redacted in `Debug`).
//! - [`url`] — [`redact_url`], for logging broker URLs without their password, and
//!   [`broker_urls`], for settings that list several nodes of a cluster.
//! - `schema` (feature `json-schema`) — the JSON Schemas checked in under `protocol/schema/`.
//!
//! # Evolution
//! The contract only grows within a protocol version: new operations, new optional request
//! fields, new reply fields and new error codes may be added; nothing is renamed, removed or
//! given a new meaning. Receivers ignore object fields they do not know. See `PROTOCOL.md`.

pub mod envelope;
pub mod error;
pub mod events;
pub mod names;
pub mod notice;
pub mod operation;
pub mod ops;
#[cfg(feature = "json-schema")]
pub mod schema;
pub mod secret;
pub mod url;

pub use envelope::{Envelope, Status, decode_reply, encode_error, encode_error_with, encode_ok};
pub use error::{ErrorBody, ErrorCode};
pub use names::{Names, NamespaceError, Tube};
pub use operation::Operation;
pub use ops::Request;
pub use secret::Secret;
pub use url::{broker_urls, redact_url};

/// The protocol version this crate describes. Sent by clients in the
/// [`names::headers::PROTOCOL`] header; a worker answers every version it knows.
pub const PROTOCOL_VERSION: u32 = 1;

/// The content type of every request and reply body.
pub const CONTENT_TYPE: &str = "application/json";
