//! Names on the broker: the namespace and everything derived from it.
//!
//! Every exchange and queue authq declares carries the namespace as a prefix, so several
//! deployments (and parallel test runs) share one broker without touching each other. Callers
//! only ever need the request exchange (the namespace itself) and the operation names; the
//! tubes are the worker's business and may be re-bound by an operator.

use std::fmt;

/// The namespace used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "authq";

/// The longest namespace accepted: leaves room for the suffixes within AMQP's 255-byte names.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// The pseudo-queue for RabbitMQ's direct reply-to, a valid `reply_to` for callers that do not
/// own a reply queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Header names used by the protocol (AMQP message headers, not body fields).
pub mod headers {
    /// Absolute deadline of a request, in Unix milliseconds (a signed 64-bit integer). A worker
    /// that takes a request after its deadline drops it without any side effect.
    pub const DEADLINE: &str = "x-deadline";
    /// Protocol version the caller speaks (an integer, `1` when absent).
    pub const PROTOCOL: &str = "x-authq-protocol";
    /// On a reply (a boolean, `true` when present): the operation is a read and its tube
    /// answers what it refuses: a full tube dead-letters the request, and a worker answers it
    /// with a [`crate::notice::REFUSED`] reply. A caller may then publish the operation's next
    /// requests without publisher confirms and still learn of a full tube at once
    /// (PROTOCOL.md §2, "Reads without confirms").
    pub const REFUSALS_RETURNED: &str = "x-authq-refusals-returned";
    /// On a dead-lettered message: why authq dead-lettered it (a [`super::DeadLetterReason`]).
    pub const DEAD_LETTER_REASON: &str = "x-authq-dead-letter-reason";
    /// On a dead-lettered message: the routing key (operation) it was published with.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-authq-original-routing-key";
    /// On a dead-lettered message: the `user_id` property it was published with (the
    /// property itself is not copied: the broker would refuse the worker's publish of a
    /// `user_id` that is not the worker's own user).
    pub const ORIGINAL_USER_ID: &str = "x-authq-original-user-id";
}

/// Why the worker dead-lettered a message instead of answering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The request had no `reply_to`, so nobody could be told what went wrong.
    MissingReplyTo,
    /// The request could not be decoded (bad JSON, wrong types, too large, bad UTF-8) and had
    /// no `reply_to`.
    Malformed,
    /// The request named an operation nobody serves and had no `reply_to`.
    UnknownOperation,
    /// The handler panicked while processing this request.
    HandlerPanicked,
    /// The `reply_to` was not a destination the caller may receive replies on (a tube,
    /// another service's queue…); the request was not processed.
    ForbiddenReplyTo,
    /// The broker dead-lettered it: its `expiration` passed while it waited in a tube.
    Expired,
    /// The broker dead-lettered it: it was delivered more times than the tube's delivery
    /// limit (workers crashed or lost their connection while holding it).
    DeliveryLimit,
    /// The broker dead-lettered it for another reason (a rejection, a queue length limit).
    Rejected,
}

impl DeadLetterReason {
    /// The stable string written to the [`headers::DEAD_LETTER_REASON`] header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingReplyTo => "missing_reply_to",
            Self::Malformed => "malformed",
            Self::UnknownOperation => "unknown_operation",
            Self::HandlerPanicked => "handler_panicked",
            Self::ForbiddenReplyTo => "forbidden_reply_to",
            Self::Expired => "expired",
            Self::DeliveryLimit => "delivery_limit",
            Self::Rejected => "rejected",
        }
    }

    /// The reason for a message the broker dead-lettered, from its `x-first-death-reason`
    /// header (`expired`, `delivery_limit`, `rejected`, `maxlen`).
    pub fn from_broker(reason: Option<&str>) -> Self {
        match reason {
            Some("expired") => Self::Expired,
            Some("delivery_limit") => Self::DeliveryLimit,
            _ => Self::Rejected,
        }
    }
}

/// A cost class of operations, served by one queue ("tube") with its own consumers.
///
/// Splitting by cost keeps a login flood (argon2, tens of milliseconds each) from sitting in
/// front of session checks (microseconds each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tube {
    /// Cheap, hot operations: `ping`, `check`, `logout`, `logout_all`, `get_profile`.
    Session,
    /// Operations that run argon2: `login`, `confirm_registration`, `change_password`,
    /// `complete_reset`.
    Password,
    /// Account administration: `register`, `start_reset`, `set_profile`, `delete_user`,
    /// `suspend`, `unsuspend`, and social login (`social_url`, `social_login`, `link_social`).
    Account,
}

impl Tube {
    /// Every tube, in declaration order.
    pub const ALL: [Tube; 3] = [Tube::Session, Tube::Password, Tube::Account];

    /// The tube's suffix after the namespace (`session`, `password`, `account`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Password => "password",
            Self::Account => "account",
        }
    }

    /// Parses a tube suffix as written by [`Tube::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespace was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceError(String);

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NamespaceError {}

/// All broker names of one namespace, computed once.
///
/// | name | kind | what |
/// |---|---|---|
/// | `{ns}` | direct exchange | requests; routing key = operation |
/// | `{ns}.session`, `{ns}.password`, `{ns}.account` | queues | the tubes |
/// | `{ns}.unrouted` | fanout exchange + queue | alternate exchange of `{ns}`: unknown operations |
/// | `{ns}.dead-letter` | fanout exchange + queue | messages nobody can be answered about |
/// | `{ns}.quarantine` | fanout exchange + queue | the broker's own dead letters of the tubes, for the worker to redact into `{ns}.dead-letter` |
/// | `{ns}.events` | topic exchange | auth events (reserved) |
/// | `{ns}.notices` | fanout exchange | workers' notices to callers (`crate::notice`) |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    namespace: String,
    tubes: [String; 3],
    unrouted: String,
    dead_letter: String,
    quarantine: String,
    events: String,
    notices: String,
}

impl Names {
    /// Derives every name from `namespace`, which must be 1 to [`MAX_NAMESPACE_LEN`] bytes of
    /// ASCII letters, digits, `.`, `_` or `-`, and must not start with `amq.` (reserved by AMQP).
    pub fn new(namespace: &str) -> Result<Self, NamespaceError> {
        if namespace.is_empty() || namespace.len() > MAX_NAMESPACE_LEN {
            return Err(NamespaceError(format!(
                "namespace must be 1 to {MAX_NAMESPACE_LEN} characters long"
            )));
        }
        if !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NamespaceError(
                "namespace may only contain ASCII letters, digits, '.', '_' and '-'".into(),
            ));
        }
        if namespace.starts_with("amq.") {
            return Err(NamespaceError(
                "namespace must not start with 'amq.' (reserved by AMQP)".into(),
            ));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            tubes: Tube::ALL.map(|t| format!("{namespace}.{}", t.as_str())),
            unrouted: format!("{namespace}.unrouted"),
            dead_letter: format!("{namespace}.dead-letter"),
            quarantine: format!("{namespace}.quarantine"),
            events: format!("{namespace}.events"),
            notices: format!("{namespace}.notices"),
        })
    }

    /// The namespace itself.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The direct exchange requests are published to: the namespace itself.
    pub fn request_exchange(&self) -> &str {
        &self.namespace
    }

    /// The queue of a tube: `{ns}.{tube}`.
    pub fn tube(&self, tube: Tube) -> &str {
        match tube {
            Tube::Session => &self.tubes[0],
            Tube::Password => &self.tubes[1],
            Tube::Account => &self.tubes[2],
        }
    }

    /// The alternate exchange of the request exchange, and the queue bound to it: requests
    /// whose operation nobody binds end here and get an `unknown_operation` reply.
    pub fn unrouted(&self) -> &str {
        &self.unrouted
    }

    /// The dead-letter exchange, and the queue bound to it.
    pub fn dead_letter(&self) -> &str {
        &self.dead_letter
    }

    /// The exchange (fanout) and queue the tubes dead-letter to: what the broker itself
    /// dead-letters (an `expiration` passed in the tube, the delivery limit, a rejection) still
    /// holds the request's secrets, so only the worker reads it and relays a redacted copy to
    /// [`Names::dead_letter`].
    pub fn quarantine(&self) -> &str {
        &self.quarantine
    }

    /// The topic exchange for auth events (reserved for the events feature).
    pub fn events_exchange(&self) -> &str {
        &self.events
    }

    /// The fanout exchange workers publish notices to (`crate::notice`); each caller binds its
    /// reply queue to it.
    pub fn notices(&self) -> &str {
        &self.notices
    }
}

impl Default for Names {
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        Self::new(DEFAULT_NAMESPACE).expect("the default namespace is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_pinned() {
        let n = Names::default();
        assert_eq!(n.request_exchange(), "authq");
        assert_eq!(n.tube(Tube::Session), "authq.session");
        assert_eq!(n.tube(Tube::Password), "authq.password");
        assert_eq!(n.tube(Tube::Account), "authq.account");
        assert_eq!(n.unrouted(), "authq.unrouted");
        assert_eq!(n.dead_letter(), "authq.dead-letter");
        assert_eq!(n.events_exchange(), "authq.events");
        assert_eq!(n.notices(), "authq.notices");
        assert_eq!(headers::DEADLINE, "x-deadline");
        assert_eq!(headers::DEAD_LETTER_REASON, "x-authq-dead-letter-reason");
    }

    #[test]
    fn namespaces_are_validated() {
        assert!(Names::new("authq-test-1.a_b").is_ok());
        assert!(Names::new("").is_err());
        assert!(Names::new("with space").is_err());
        assert!(Names::new("amq.mine").is_err());
        assert!(Names::new(&"x".repeat(65)).is_err());
        assert!(Names::new(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn tubes_round_trip() {
        for t in Tube::ALL {
            assert_eq!(Tube::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tube::parse("nope"), None);
    }

    #[test]
    fn dead_letter_reasons_are_pinned() {
        assert_eq!(
            DeadLetterReason::MissingReplyTo.as_str(),
            "missing_reply_to"
        );
        assert_eq!(DeadLetterReason::Malformed.as_str(), "malformed");
        assert_eq!(
            DeadLetterReason::UnknownOperation.as_str(),
            "unknown_operation"
        );
        assert_eq!(
            DeadLetterReason::HandlerPanicked.as_str(),
            "handler_panicked"
        );
        for (broker, ours) in [
            (Some("expired"), "expired"),
            (Some("delivery_limit"), "delivery_limit"),
            (Some("rejected"), "rejected"),
            (Some("maxlen"), "rejected"),
            (None, "rejected"),
        ] {
            assert_eq!(DeadLetterReason::from_broker(broker).as_str(), ours);
        }
    }
}
