//! Errors of the worker: what a handler can answer, and what stops the worker.
//!
//! [`HandlerError::code`] is the one place where the auth logic meets the wire's error codes.
//! An internal error is answered with a fixed message; its cause goes to the log with the
//! request id, never to the caller.

use crate::config::ConfigError;
use crate::crypto::RandomError;
use crate::hashing::HashError;
use crate::store::StoreError;
use authq_protocol::ErrorCode;
use std::borrow::Cow;

/// Why a request was answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The request is malformed or fails validation; the message says what (never echoing a
    /// secret).
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    /// The body exceeds the size limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// No worker serves this operation.
    #[error("unknown operation")]
    UnknownOperation,
    /// Wrong email or password (indistinguishable on purpose).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The email is taken by an active or suspended user.
    #[error("user exists")]
    UserExists,
    /// A code or token is wrong, expired, used, or for another email or flow.
    #[error("invalid code")]
    InvalidCode,
    /// The session is unknown, ended or expired.
    #[error("session invalid")]
    SessionInvalid,
    /// `end_session` named no live session of the caller's user.
    #[error("session not found")]
    SessionNotFound,
    /// The user is suspended.
    #[error("user suspended")]
    UserSuspended,
    /// The new password fails the policy; the message says which rule.
    #[error("weak password: {0}")]
    WeakPassword(&'static str),
    /// The user named by an administrative request does not exist.
    #[error("not found")]
    NotFound,
    /// Too many attempts for this email or source in the current window.
    #[error("too many attempts")]
    TooManyAttempts,
    /// The caller may not use this operation.
    #[error("forbidden")]
    Forbidden,
    /// The `message_id` was used before for a different request.
    #[error("idempotency conflict")]
    IdempotencyConflict,
    /// Not a failure: the request was answered before (a concurrent delivery of it committed
    /// first), and this is that first reply body, to be sent as it is.
    #[error("answered before")]
    Replayed(Vec<u8>),
    /// The social login provider is not configured.
    #[error("unknown provider")]
    UnknownProvider,
    /// The OAuth state is unknown, expired, used, or for another provider.
    #[error("invalid state")]
    InvalidState,
    /// The provider refused the code or token (the detail goes to the log only).
    #[error("provider refused: {0}")]
    ProviderRefused(String),
    /// The provider is down, slow, or too many provider calls are in flight.
    #[error("provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The provider answered garbage.
    #[error("provider bad response: {0}")]
    ProviderBadResponse(String),
    /// The provider's profile has no subject.
    #[error("missing subject")]
    MissingSubject,
    /// The email belongs to an existing account that may not be linked automatically.
    #[error("link required")]
    LinkRequired,
    /// The provider account is linked to another user.
    #[error("already linked")]
    AlreadyLinked,
    /// The first factor was right; the user has a second one: the pending handle to verify it.
    #[error("second factor required")]
    MfaRequired(authq_protocol::ops::MfaPending),
    /// The user's second factor is already on.
    #[error("second factor already enabled")]
    MfaEnabled,
    /// The user has no second factor (or no enrolment to confirm).
    #[error("no second factor")]
    MfaNotEnabled,
    /// The store was too busy to answer in time ([`crate::store::is_unavailable`]); the caller
    /// retries with the same `message_id`.
    #[error("store unavailable: {0}")]
    Unavailable(StoreError),
    /// A policy refused; the reason is the policy's own.
    #[error("refused by policy: {0}")]
    PolicyDenied(String),
    /// Something failed inside the worker.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// A failure inside the worker (answered as `internal`).
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The CSPRNG failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A recorded outcome could not be opened.
    #[error(transparent)]
    Unseal(#[from] crate::idempotency::UnsealError),
    /// A blocking task died.
    #[error("a blocking task failed: {0}")]
    Join(String),
    /// A reply could not be encoded.
    #[error("cannot encode the reply: {0}")]
    Encode(#[from] serde_json::Error),
    /// A value could not be sealed (social login).
    #[error(transparent)]
    Seal(#[from] crate::sealing::SealError),
    /// Something social login keeps could not be used (e.g. a state sealed under another key).
    #[error("social login: {0}")]
    Social(&'static str),
    /// An access token or its signing key could not be made or opened.
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokenError),
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        if crate::store::is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<HashError> for HandlerError {
    fn from(e: HashError) -> Self {
        Self::Internal(e.into())
    }
}

#[cfg(feature = "social")]
impl From<crate::social::ProviderError> for HandlerError {
    fn from(e: crate::social::ProviderError) -> Self {
        use crate::social::ProviderError as P;
        match e {
            P::Refused(detail) => Self::ProviderRefused(detail),
            P::Unavailable(detail) => Self::ProviderUnavailable(detail),
            P::BadResponse(detail) => Self::ProviderBadResponse(detail),
            P::MissingSubject => Self::MissingSubject,
        }
    }
}

impl From<crate::sealing::SealError> for HandlerError {
    fn from(e: crate::sealing::SealError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<RandomError> for HandlerError {
    fn from(e: RandomError) -> Self {
        Self::Internal(e.into())
    }
}

impl HandlerError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::UnknownOperation => ErrorCode::UnknownOperation,
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::UserExists => ErrorCode::UserExists,
            Self::InvalidCode => ErrorCode::InvalidCode,
            Self::SessionInvalid => ErrorCode::SessionInvalid,
            Self::SessionNotFound => ErrorCode::SessionNotFound,
            Self::UserSuspended => ErrorCode::UserSuspended,
            Self::WeakPassword(_) => ErrorCode::WeakPassword,
            Self::NotFound => ErrorCode::NotFound,
            Self::TooManyAttempts => ErrorCode::TooManyAttempts,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            Self::PolicyDenied(_) => ErrorCode::PolicyDenied,
            Self::Replayed(_) | Self::Internal(_) => ErrorCode::Internal,
            Self::UnknownProvider => ErrorCode::UnknownProvider,
            Self::InvalidState => ErrorCode::InvalidState,
            Self::ProviderRefused(_) => ErrorCode::ProviderRefused,
            Self::ProviderUnavailable(_) => ErrorCode::ProviderUnavailable,
            Self::ProviderBadResponse(_) => ErrorCode::ProviderBadResponse,
            Self::MissingSubject => ErrorCode::MissingSubject,
            Self::LinkRequired => ErrorCode::LinkRequired,
            Self::AlreadyLinked => ErrorCode::AlreadyLinked,
            Self::MfaRequired(_) => ErrorCode::MfaRequired,
            Self::MfaEnabled => ErrorCode::MfaEnabled,
            Self::MfaNotEnabled => ErrorCode::MfaNotEnabled,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// The message the caller sees: the code's fixed message, or a precise one for validation
    /// errors (which never contain a secret).
    pub fn public_message(&self) -> Cow<'static, str> {
        match self {
            Self::BadRequest(detail) => detail.clone(),
            Self::WeakPassword(rule) => Cow::Borrowed(rule),
            Self::PolicyDenied(reason) => Cow::Owned(reason.clone()),
            other => Cow::Borrowed(other.code().default_message()),
        }
    }

    /// The error reply's body: code, public message, and an `mfa_required`'s pending handle.
    pub fn encode_reply(&self) -> Vec<u8> {
        let mfa = match self {
            Self::MfaRequired(pending) => Some(pending),
            _ => None,
        };
        authq_protocol::encode_error_with(self.code(), &self.public_message(), mfa)
    }

    /// A validation failure with a fixed message.
    pub fn bad_request(message: &'static str) -> Self {
        Self::BadRequest(Cow::Borrowed(message))
    }
}

/// Why the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server key file could not be read or created.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The broker could not be reached.
    #[error(
        "cannot reach the broker at {url}: {source}. Is RabbitMQ running? Start it with `rabbitmq-server -detached` (install it with `apt-get install rabbitmq-server`)"
    )]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// What lapin reported.
        source: lapin::Error,
    },
    /// A broker operation failed (declaring the topology, consuming).
    #[error("broker error while {context}: {source}")]
    Broker {
        /// What the worker was doing.
        context: &'static str,
        /// What lapin reported.
        source: lapin::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The argon2 pool could not start.
    #[error("cannot start the hashing pool: {0}")]
    Hash(#[from] HashError),
    /// A start-up task on the blocking pool died (panicked or was cancelled).
    #[error("a start-up task failed: {0}")]
    Join(String),
}

impl WorkerError {
    /// Wraps a broker error with what the worker was doing.
    pub fn broker(context: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Broker { context, source }
    }
}
