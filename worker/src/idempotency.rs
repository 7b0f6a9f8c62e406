//! At-least-once delivery without double effects: a mutating request's first outcome is
//! recorded in the same store transaction as its effect, keyed by the caller and the request's
//! `message_id`, and any later delivery of the same request is answered with it.
//!
//! - **Key**: (caller, `message_id`). The caller is the AMQP `user-id` property, which RabbitMQ
//!   checks against the connection's user, or empty when the caller does not set it.
//! - **Same request?** A SHA-256 digest of the operation and body is stored with the outcome;
//!   the same `message_id` with another body gets `idempotency_conflict`. A JSON body is
//!   compared in a canonical form ([`canonical_body`]: keys sorted, no whitespace), so the same
//!   JSON re-serialised (a retry from another client library) is the same request.
//! - **No secret in clear**: a cached `login` reply holds a session token. The outcome is sealed
//!   (ChaCha20-Poly1305) under a key derived from the server key (outside the database) *and*
//!   the request itself, so opening it takes the database, the key file and the original request
//!   (which, for a login, holds the password).
//! - **Window**: outcomes older than [`Config::idempotency_window`](crate::Config) are purged;
//!   a request redelivered later than that is done again.

use crate::error::HandlerError;
use crate::keys::ServerKey;
use crate::sealing::{SealError, Sealer};
use authq_protocol::{Operation, encode_error};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where a request's outcome is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeKey {
    /// The validated AMQP `user-id` of the caller, or empty.
    pub caller: String,
    /// The request's `message_id`.
    pub message_id: String,
    /// SHA-256 of the operation name and the body.
    pub request_digest: [u8; 32],
}

impl OutcomeKey {
    /// The key's advisory-lock number: the first 8 bytes of SHA-256(caller, 0, message id).
    /// Two keys that collide merely wait for each other.
    pub fn lock_key(&self) -> i64 {
        let mut h = Sha256::new();
        h.update(self.caller.as_bytes());
        h.update([0]);
        h.update(self.message_id.as_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        i64::from_be_bytes(first)
    }
}

/// What the handlers of one mutating request need to record its outcome: made by the delivery
/// path, passed to the handler in its [`crate::handlers::Call`], used by
/// [`crate::handlers::Call::commit`].
#[derive(Clone)]
pub struct OutcomeScope {
    /// Where the outcome goes.
    pub key: OutcomeKey,
    sealing: Arc<Sealing>,
    body: Arc<[u8]>,
}

impl std::fmt::Debug for OutcomeScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeScope")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The key outcomes are sealed under ([`crate::sealing`]).
pub struct Sealing {
    sealer: Sealer,
    /// Opens outcomes sealed before the one sealing primitive (`sealing::legacy_v1`).
    legacy: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealing([redacted])")
    }
}

/// A sealed outcome could not be opened (the key file changed, or the row was tampered with).
#[derive(Debug, thiserror::Error)]
#[error("a recorded outcome cannot be opened (was the key file replaced?)")]
pub struct UnsealError;

impl Sealing {
    /// Derives the outcome-sealing key from the server key.
    pub fn new(server: &ServerKey) -> Self {
        Self {
            sealer: Sealer::derived(server, "authq outcome sealing v2"),
            legacy: server.derive("authq outcome sealing v1"),
        }
    }

    /// The scope of one request.
    pub fn scope(
        self: &Arc<Self>,
        caller: &str,
        message_id: &str,
        op: Operation,
        body: &[u8],
    ) -> OutcomeScope {
        let body = canonical_body(body);
        let body = body.as_slice();
        let mut h = Sha256::new();
        h.update(op.as_str().as_bytes());
        h.update([0]);
        h.update(body);
        OutcomeScope {
            key: OutcomeKey {
                caller: caller.to_owned(),
                message_id: message_id.to_owned(),
                request_digest: h.finalize().into(),
            },
            sealing: Arc::clone(self),
            body: Arc::from(body),
        }
    }

    /// The request's own key: bound to the caller, the `message_id` and the body.
    fn sealer(&self, scope: &OutcomeScope) -> Sealer {
        self.sealer.child(&[
            scope.key.caller.as_bytes(),
            scope.key.message_id.as_bytes(),
            &scope.body,
        ])
    }
}

impl OutcomeScope {
    /// Seals a reply body for the store, under the request's own key.
    pub fn seal(&self, reply: &[u8]) -> Result<Vec<u8>, SealError> {
        self.sealing
            .sealer(self)
            .seal(reply, &self.key.request_digest)
    }

    /// Opens a sealed reply body recorded for this same request.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        self.sealing
            .sealer(self)
            .open(sealed, &self.key.request_digest)
            .or_else(|_| {
                crate::sealing::legacy_v1::open_outcome(
                    &self.sealing.legacy,
                    [
                        self.key.caller.as_bytes(),
                        self.key.message_id.as_bytes(),
                        &self.body,
                    ],
                    sealed,
                    &self.key.request_digest,
                )
            })
            .map_err(|_| UnsealError)
    }
}

/// The identity of one request across its deliveries and its caller's retries, for the login
/// attempt claims ([`crate::store::Tx::claim_for_request`]): SHA-256 of the caller (the
/// validated `user-id`, or empty), the `message_id` (or, without one, the `correlation_id`,
/// which a redelivery keeps), the operation and the canonical body. A redelivery or a retry of
/// the same request has the same identity; another password never does.
pub fn request_identity(
    caller: &str,
    message_id: Option<&str>,
    correlation_id: &str,
    op: Operation,
    body: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"authq request identity v1\0");
    h.update(caller.as_bytes());
    h.update([0]);
    match message_id {
        Some(id) => {
            h.update(b"m");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"c");
            h.update(correlation_id.as_bytes());
        }
    }
    h.update([0]);
    h.update(op.as_str().as_bytes());
    h.update([0]);
    h.update(canonical_body(body));
    h.finalize().into()
}

/// The reply body a handler's result becomes: exactly what the delivery path publishes.
pub fn encode_outcome<R: Serialize>(result: &Result<R, HandlerError>) -> Vec<u8> {
    match result {
        Ok(reply) => authq_protocol::encode_ok(reply).unwrap_or_else(|_| {
            encode_error(
                authq_protocol::ErrorCode::Internal,
                authq_protocol::ErrorCode::Internal.default_message(),
            )
        }),
        Err(e) => e.encode_reply(),
    }
}

/// The form a body is compared (and its outcome sealed) in: a JSON body with its object keys
/// sorted and no whitespace, whatever order and spacing the caller wrote; any other body as it
/// is (it is refused by decoding anyway).
pub fn canonical_body(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut out = Vec::with_capacity(body.len());
            write_canonical(&value, &mut out);
            out
        }
        Err(_) => body.to_vec(),
    }
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => {
            // Strings (escapes normalised) and numbers as serde_json writes them.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_opens_only_for_the_same_request_and_key() {
        let sealing = Arc::new(Sealing::new(&ServerKey::from_bytes([7; 32])));
        let a = sealing.scope("", "id-1", Operation::Login, b"{\"password\":\"pw\"}");
        let sealed = a.seal(b"{\"session\":\"secret-token\"}").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("secret-token"));
        assert_eq!(a.open(&sealed).unwrap(), b"{\"session\":\"secret-token\"}");
        let other_body = sealing.scope("", "id-1", Operation::Login, b"{\"password\":\"px\"}");
        assert_ne!(other_body.key.request_digest, a.key.request_digest);
        assert!(other_body.open(&sealed).is_err());
        let other_key = Arc::new(Sealing::new(&ServerKey::from_bytes([8; 32])));
        let same_request = other_key.scope("", "id-1", Operation::Login, b"{\"password\":\"pw\"}");
        assert!(same_request.open(&sealed).is_err());
    }

    #[test]
    fn the_same_json_reserialised_is_the_same_request() {
        let sealing = Arc::new(Sealing::new(&ServerKey::from_bytes([7; 32])));
        let a = sealing.scope(
            "",
            "id-1",
            Operation::Register,
            br#"{"email":"ann@example.com","profile":{"a":1,"b":"\u00e9"}}"#,
        );
        let b = sealing.scope(
            "",
            "id-1",
            Operation::Register,
            " { \"profile\" : { \"b\":\"é\", \"a\":1 },\n \"email\":\"ann@example.com\" } "
                .as_bytes(),
        );
        assert_eq!(a.key.request_digest, b.key.request_digest);
        let sealed = a.seal(b"reply").unwrap();
        assert_eq!(
            b.open(&sealed).unwrap(),
            b"reply",
            "the outcome opens for the retry"
        );
        let other = sealing.scope(
            "",
            "id-1",
            Operation::Register,
            br#"{"email":"bob@example.com"}"#,
        );
        assert_ne!(a.key.request_digest, other.key.request_digest);
        assert_eq!(canonical_body(b"not json"), b"not json");
    }
}
