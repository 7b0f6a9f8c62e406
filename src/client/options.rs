//! [`ClientOptions`]: how a [`Client`](super::Client) connects and calls, and its builder.

use authq_protocol::names::DEFAULT_NAMESPACE;
use std::time::Duration;

/// How a [`Client`](super::Client) connects and calls.
///
/// Built from [`ClientOptions::default`] with the setters (the struct is `#[non_exhaustive]`,
/// so options can be added without breaking callers):
///
/// ```
/// use std::time::Duration;
/// let options = authq::ClientOptions::default()
///     .namespace("staging")
///     .timeout(Duration::from_secs(3))
///     .attempts(3)
///     .connection_name("billing-service");
/// assert_eq!(options.namespace, "staging");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The namespace of the authq deployment to call (default `authq`).
    pub namespace: String,
    /// How long a call waits for its reply, all attempts included (default 10 s). Also sent as
    /// the request's `expiration` and absolute deadline, so a worker never starts a request its
    /// caller has given up on. Connecting (and each reconnection) is bounded by it too.
    pub timeout: Duration,
    /// How many times a call is published before it gives up (default 1: no retry). With more,
    /// the timeout is shared among the attempts, and a call whose reply did not come (or whose
    /// connection dropped, or which a full tube refused) is published again with the same
    /// `message_id`, which the worker answers from the first outcome instead of doing the work
    /// twice. Retries add load exactly when the pool is slowest, hence off by default.
    pub attempts: u32,
    /// The connection name shown in RabbitMQ's management tools.
    pub connection_name: String,
    /// The RabbitMQ user sent in every request's `user-id` property, which the broker checks
    /// against the connection's user (it closes the channel of a publisher that lies). Workers
    /// accept administrative operations only from the users their operator lists. Default
    /// (`None`): the user name of the URL (RabbitMQ's `guest` when the URL names none); no
    /// `user-id` at all with `auth_mechanism=external`.
    pub user_id: Option<String>,
}

impl ClientOptions {
    /// Sets [`ClientOptions::namespace`].
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`ClientOptions::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::attempts`] (at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets [`ClientOptions::connection_name`].
    #[must_use]
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Sets [`ClientOptions::user_id`].
    #[must_use]
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            timeout: Duration::from_secs(10),
            attempts: 1,
            connection_name: "authq-client".to_owned(),
            user_id: None,
        }
    }
}
