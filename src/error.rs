//! [`ClientError`]: why a call did not return a reply's data.

use authq_protocol::ErrorCode;
use std::time::Duration;

/// Why a call failed.
///
/// Branch on the variant, or ask the predicates: [`ClientError::is_timeout`] (no reply in
/// time), [`ClientError::is_connect`] (no connection to the broker) and
/// [`ClientError::is_retryable`] (the same call, with the same `message_id`, may succeed
/// later). A stopped or absent worker pool is not seen as such by a caller: its requests wait
/// in the broker and the call ends in [`ClientError::Timeout`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker could not be reached: nothing listens at the address, the network or the TLS
    /// handshake failed, or no connection was set up within the client's timeout.
    #[error("cannot reach the broker at {url}: {source}")]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// What the AMQP library reported.
        source: BrokerError,
    },
    /// The broker refused the connection: a wrong user name or password (`ACCESS_REFUSED`), or
    /// a virtual host the user may not use (`NOT_ALLOWED`). Retrying will not help.
    #[error(
        "the broker at {url} refused the connection (user, password or virtual host): {source}"
    )]
    AccessRefused {
        /// The broker URL, password redacted.
        url: String,
        /// What the broker said.
        source: BrokerError,
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
    Broker(BrokerError),
    /// No reply came within the call's timeout. The request may still be processed: retrying
    /// a mutating call is safe only with the same `message_id`. This is also what a caller
    /// sees when no worker consumes the requests (the pool is stopped or overwhelmed): they
    /// wait in the broker until their expiration.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection to the broker was lost while the call was in flight, or before it; or a
    /// worker announced that the call's tube was declared anew (a transient tube lost with its
    /// broker node), which may have taken the request with it.
    #[error("the connection to the broker was lost")]
    ConnectionLost,
    /// The broker refused the request because the tube that serves it is full (a nack, or for
    /// a read sent without confirms a worker's `authq.refused` answer): the pool is overloaded.
    /// Nothing was processed; retry later, with back-off.
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
    /// The worker answered `mfa_required`: the password (or social login) was right and the
    /// user has a second factor. Pass the pending handle to [`crate::Client::mfa_verify`] with
    /// a code.
    #[error("mfa_required: a second factor is required")]
    MfaRequired(authq_protocol::ops::MfaPending),
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The reply could not be decoded (a worker speaking another protocol?).
    #[error("cannot decode the reply: {0}")]
    Decode(#[source] serde_json::Error),
}

/// An error reported by the AMQP library, wrapped so that its type is not part of this
/// crate's API. Its `Display` says what happened; [`std::error::Error::source`] gives the
/// underlying cause (e.g. the I/O error).
#[derive(Debug)]
pub struct BrokerError(lapin::Error);

impl BrokerError {
    /// Wraps a lapin error (crate-private: lapin is not part of the API).
    pub(crate) fn new(error: lapin::Error) -> Self {
        Self(error)
    }

    /// Whether the broker refused the credentials (`ACCESS_REFUSED`) or the virtual host
    /// (`NOT_ALLOWED`).
    pub fn is_access_refused(&self) -> bool {
        use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
        matches!(
            self.0.kind(),
            lapin::ErrorKind::ProtocolError(amqp)
                if matches!(
                    amqp.kind(),
                    AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                        | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                )
        )
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BrokerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl ClientError {
    /// A failed broker operation (crate-private: lapin is not part of the API).
    pub(crate) fn broker(error: lapin::Error) -> Self {
        Self::Broker(BrokerError::new(error))
    }

    /// A failed connection attempt to `url` (password redacted by the caller): access refused
    /// or cannot reach.
    pub(crate) fn connect(url: String, error: lapin::Error) -> Self {
        let source = BrokerError::new(error);
        if source.is_access_refused() {
            Self::AccessRefused { url, source }
        } else {
            Self::Connect { url, source }
        }
    }

    /// The error with its whole chain of causes, for people and logs:
    /// `cannot reach the broker at …: IO error: Connection refused (os error 111)`.
    pub fn report(&self) -> String {
        report(self)
    }

    /// The worker's error code, when the worker answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::MfaRequired(_) => Some(ErrorCode::MfaRequired),
            _ => None,
        }
    }

    /// The pending handle of an `mfa_required` answer.
    pub fn mfa_pending(&self) -> Option<&authq_protocol::ops::MfaPending> {
        match self {
            Self::MfaRequired(pending) => Some(pending),
            _ => None,
        }
    }

    /// Whether no reply arrived (timeout or lost connection), as opposed to a reply that said
    /// no. The request may or may not have been processed.
    pub fn is_no_reply(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::ConnectionLost)
    }

    /// Whether the call timed out: [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether there was no connection to the broker: it could not be reached
    /// ([`ClientError::Connect`]) or refused the credentials or virtual host
    /// ([`ClientError::AccessRefused`]).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// // Against the local test broker (`scripts/test` starts it): a wrong password is refused,
    /// // a port where nothing listens cannot be reached.
    /// let refused = authq::Client::connect("amqp://guest:wrong@127.0.0.1:5672/%2f")
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(refused, authq::ClientError::AccessRefused { .. }));
    /// assert!(refused.is_connect() && !refused.is_retryable());
    /// let unreachable = authq::Client::connect("amqp://guest:guest@127.0.0.1:1/%2f")
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(unreachable, authq::ClientError::Connect { .. }));
    /// assert!(unreachable.is_connect() && unreachable.is_retryable());
    /// # }
    /// ```
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::AccessRefused { .. })
    }

    /// Whether the same call may succeed if made again later (with back-off, and with the same
    /// `message_id` for a mutating operation): a timeout, a lost or failed connection, a broker
    /// error, a full tube, or a worker's `too_many_attempts`, `provider_unavailable`,
    /// `unavailable` or `internal`. Not: a refused login, a malformed request, a wrong namespace, refused
    /// credentials, an unroutable request.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_)
            | Self::ConnectionLost
            | Self::Connect { .. }
            | Self::Broker(_)
            | Self::Overloaded => true,
            Self::Server { code, .. } => matches!(
                code,
                ErrorCode::TooManyAttempts
                    | ErrorCode::ProviderUnavailable
                    | ErrorCode::Unavailable
                    | ErrorCode::Internal
            ),
            _ => false,
        }
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
