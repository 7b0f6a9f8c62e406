//! [`ClientError`]: why a call did not return a reply's data.

use authq_protocol::ErrorCode;
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker could not be reached at all.
    #[error(
        "cannot reach the broker at {url}: {source}. Is RabbitMQ running? Start it with `rabbitmq-server -detached` (install it with `apt-get install rabbitmq-server`)"
    )]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// What lapin reported.
        source: lapin::Error,
    },
    /// No authq deployment uses this namespace on this broker: its request exchange does not
    /// exist (no worker has ever started with this namespace).
    #[error(
        "no authq deployment with namespace {namespace:?} on this broker (its exchange does not exist): start `authq serve --namespace {namespace}`, or check the namespace"
    )]
    NoDeployment {
        /// The namespace asked for.
        namespace: String,
    },
    /// The namespace is not a valid name prefix.
    #[error("invalid namespace: {0}")]
    Namespace(#[from] authq_protocol::NamespaceError),
    /// A broker operation failed (publishing, declaring the reply queue).
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// No reply came within the call's timeout. The request may still be processed: retrying
    /// a mutating call is safe only with the same `message_id`.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection to the broker was lost while the call was in flight, or before it.
    #[error("the connection to the broker was lost")]
    ConnectionLost,
    /// The broker refused the request because the tube that serves it is full (a nack under
    /// `x-overflow = reject-publish`): the pool is overloaded. Nothing was processed; retry
    /// later, with back-off.
    #[error("authq is overloaded: the broker refused the request (its tube is full)")]
    Overloaded,
    /// The broker could route the request to no queue (the deployment's queues are gone) and
    /// returned it. Nothing was processed.
    #[error("the broker could not route the {operation:?} request to any queue")]
    Unroutable {
        /// The operation asked for.
        operation: String,
    },
    /// The worker answered with an error.
    #[error("{code}: {message}")]
    Server {
        /// The machine-readable code.
        code: ErrorCode,
        /// The worker's explanation.
        message: String,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The reply could not be decoded (a worker speaking another protocol?).
    #[error("cannot decode the reply: {0}")]
    Decode(#[source] serde_json::Error),
}

impl ClientError {
    /// The error with its whole chain of causes, for people and logs:
    /// `cannot reach the broker at …: IO error: Connection refused (os error 111)`.
    pub fn report(&self) -> String {
        report(self)
    }

    /// The worker's error code, when the worker answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether no reply arrived (timeout or lost connection), as opposed to a reply that said
    /// no. The request may or may not have been processed.
    pub fn is_no_reply(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::ConnectionLost)
    }
}

/// Formats an error and its causes on one line, skipping each cause whose text is already in
/// the line (authq's and lapin's errors include their cause in their own message).
pub fn report(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn report_prints_each_cause_once() {
        let e = Outer(Inner(std::io::Error::other("disk on fire")));
        assert_eq!(report(&e), "outer: inner: disk on fire");
    }
}
