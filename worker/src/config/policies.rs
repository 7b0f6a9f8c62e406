//! The policies and limits a deployment tunes: tubes and queues, sessions, codes, passwords,
//! lockouts and spam limits, callers' policies, deletion cascades.

use super::ConfigError;
use authq_protocol::Tube;
use std::time::Duration;

/// The policy chain run before a session is issued (see `crate::policy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Emails (`ann@example.com`) and domains (`@example.com`, subdomains included) refused.
    pub deny: Vec<String>,
    /// The queue of an external policy hook, asked before every login; none: no hook.
    pub hook_queue: Option<String>,
    /// How long the hook may take to answer.
    pub hook_timeout: Duration,
    /// A hook that does not answer in time allows (`true`) or denies (`false`, the default).
    pub fail_open: bool,
    /// Whether registrations go through the chain too.
    pub on_register: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            deny: Vec::new(),
            hook_queue: None,
            hook_timeout: Duration::from_secs(2),
            fail_open: false,
            on_register: false,
        }
    }
}

/// The deletion cascade (`user.deleted` → `deletion_done` from each service →
/// `user.deletion_completed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionPolicy {
    /// The services that must acknowledge every deletion; none: no cascade is tracked.
    pub services: Vec<String>,
    /// How long the cascade waits for them before completing without the missing ones.
    pub deadline: Duration,
}

impl Default for DeletionPolicy {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

/// The RabbitMQ queue type of a tube: what a request published to it survives, and what it
/// costs (`worker/src/topology.rs` explains the choice of each default; BENCHMARKS.md, "The
/// session tube's type", has the figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueType {
    /// A replicated, durable quorum queue with a delivery limit: a confirmed request survives
    /// a broker restart and, in a cluster, the loss of a minority of nodes. Every message is
    /// written and fsynced (on a majority of nodes) before it is delivered or confirmed. The
    /// default of the password and account tubes.
    Quorum,
    /// A classic durable queue on one node: the queue survives a broker restart, and so do
    /// persistent messages; while its node is down it is unusable, and cannot be re-declared
    /// elsewhere. No delivery limit: a request that kills the worker process is redelivered
    /// (a handler's panic is caught and answered `internal`).
    Classic,
    /// A classic queue that is not durable: held in memory on one node, gone (with the
    /// requests in it) when that node restarts or leaves the cluster; the workers re-declare it
    /// when they reconnect, and requests published meanwhile reach the unrouted queue, which
    /// the workers serve too (`crate::delivery`). Callers waiting on a lost request see their
    /// connection drop (`ConnectionLost`) or retry. The default of the session tube, whose
    /// operations a caller can repeat safely.
    Transient,
}

impl QueueType {
    /// Every type, in the order the CLI lists them.
    pub const ALL: [QueueType; 3] = [Self::Quorum, Self::Classic, Self::Transient];

    /// The `x-queue-type` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic | Self::Transient => "classic",
        }
    }

    /// The name a setting uses (`--tube-type session=transient`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
            Self::Transient => "transient",
        }
    }

    /// Parses [`QueueType::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the queue is declared durable (survives a broker restart).
    pub const fn durable(self) -> bool {
        !matches!(self, Self::Transient)
    }

    /// Whether a full tube of this type answers the request it refuses without a confirm:
    /// a classic queue dead-letters it (`x-overflow` `reject-publish-dlx`) to the quarantine,
    /// and a worker answers it `authq.refused`, so a caller need not wait for a confirm to
    /// learn of a full tube. Quorum queues in RabbitMQ 3.10 cannot dead-letter a refused
    /// publish (`reject-publish` only): their callers learn it from the confirm's nack.
    pub const fn returns_refusals(self) -> bool {
        !matches!(self, Self::Quorum)
    }
}

/// How the tubes are declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// The queue type of each tube ([`QueuePolicy::default`]: the session tube transient, the
    /// others quorum). A tube missing from the map is a quorum queue.
    pub tube_types: std::collections::BTreeMap<Tube, QueueType>,
    /// `x-max-length` of every tube: past it, the broker refuses publishes (`x-overflow =
    /// reject-publish`, or `reject-publish-dlx` where [`QueueType::returns_refusals`]), which a
    /// publisher with confirms sees at once as a nack, and any caller as an `authq.refused`
    /// reply where the tube dead-letters what it refuses.
    pub max_length: u32,
    /// `x-delivery-limit` of quorum tubes: a request delivered this many times without being
    /// acknowledged (a worker crashing on it each time) is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            tube_types: Tube::ALL
                .into_iter()
                .map(|t| (t, Self::default_type(t)))
                .collect(),
            max_length: 200_000,
            delivery_limit: 5,
        }
    }
}

impl QueuePolicy {
    /// A tube's type unless the operator chooses: transient for the session tube (its
    /// operations are reads and idempotent session ends; a lost one costs the caller a retry),
    /// quorum for the password and account tubes (their effects must not be lost).
    pub const fn default_type(tube: Tube) -> QueueType {
        match tube {
            Tube::Session => QueueType::Transient,
            Tube::Password | Tube::Account => QueueType::Quorum,
        }
    }

    /// The queue type of `tube`.
    pub fn queue_type(&self, tube: Tube) -> QueueType {
        self.tube_types
            .get(&tube)
            .copied()
            .unwrap_or(QueueType::Quorum)
    }
}

/// Consumers and prefetch of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TubeConfig {
    /// How many consumers (each on its own channel) take from the queue.
    pub consumers: u16,
    /// How many unacknowledged requests each consumer holds at most (`basic.qos`).
    pub prefetch: u16,
}

/// How long sessions live and when `check` renews them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionPolicy {
    /// A session unused for this long expires. Each renewal moves the expiry to now + this.
    pub idle_timeout: Duration,
    /// No session lives longer than this after login, however often it is renewed.
    pub max_lifetime: Duration,
    /// `check` renews a session once this fraction of its idle window has passed (0.5: a
    /// session is renewed at most about once per half idle timeout, so most checks are pure
    /// reads).
    pub renew_after: f64,
    /// How many sessions one user may have at once.
    pub per_user: SessionLimit,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(24 * 3600),
            max_lifetime: Duration::from_secs(30 * 24 * 3600),
            renew_after: 0.5,
            per_user: SessionLimit::Unlimited,
        }
    }
}

/// How many sessions one user may have at once. A login past the limit ends the user's
/// oldest sessions (`session.ended` with reason `session_limit`); the login itself always
/// succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionLimit {
    /// Any number (the default).
    Unlimited,
    /// At most this many: a new login ends the oldest beyond it. `At(1)` is "one session per
    /// user": a new login ends every other session of the user.
    At(u32),
}

impl SessionLimit {
    /// The most sessions a user keeps, if limited.
    pub const fn keep(self) -> Option<u32> {
        match self {
            Self::Unlimited => None,
            Self::At(n) => Some(n),
        }
    }
}

impl std::fmt::Display for SessionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unlimited => f.write_str("unlimited"),
            Self::At(1) => f.write_str("one"),
            Self::At(n) => write!(f, "{n}"),
        }
    }
}

/// A session limit that is not `unlimited`, `one` or a positive number.
#[derive(Debug, thiserror::Error)]
#[error("a session limit is `unlimited`, `one`, or a number of sessions (at least 1)")]
pub struct SessionLimitError;

impl std::str::FromStr for SessionLimit {
    type Err = SessionLimitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "unlimited" => Ok(Self::Unlimited),
            "one" => Ok(Self::At(1)),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::At(n)),
                _ => Err(SessionLimitError),
            },
        }
    }
}

/// Confirmation codes and reset tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePolicy {
    /// How long a registration's confirmation code is valid.
    pub confirmation_ttl: Duration,
    /// How long a reset token is valid.
    pub reset_ttl: Duration,
    /// Wrong guesses a code or token survives; the next wrong guess destroys it.
    pub max_attempts: u32,
}

impl Default for CodePolicy {
    fn default() -> Self {
        Self {
            confirmation_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }
}

/// What a password must satisfy (NIST SP 800-63B: length, no composition rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters (Unicode scalar values).
    pub min_chars: usize,
    /// Most bytes (UTF-8); longer passwords are refused before any hashing.
    pub max_bytes: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 8,
            max_bytes: 1024,
        }
    }
}

/// Brute-force and spam limits. Each is a fixed window per key, counted in the store (shared by
/// every worker on it) and claimed before the work it guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Failed logins an email may have per `login_window` before further attempts are refused
    /// (`too_many_attempts`, without running argon2) until the window ends.
    pub login_failures: u32,
    /// The login lockout window.
    pub login_window: Duration,
    /// Failed logins a source address (`client_ip`) may have per `login_window`.
    pub source_failures: u32,
    /// How long a login's claim holds a place under the login limits while its password is
    /// verified: a claim whose worker died lapses after this, uncounted. Longer than a login
    /// takes (argon2 and its queue); a redelivery of the same request takes the claim again.
    pub claim_lease: Duration,
    /// `register` calls per email per `spam_window`.
    pub register_per_email: u32,
    /// `start_reset` calls per email per `spam_window`.
    pub reset_per_email: u32,
    /// The window of the register and reset limits.
    pub spam_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_failures: 10,
            login_window: Duration::from_secs(15 * 60),
            source_failures: 100,
            claim_lease: Duration::from_secs(60),
            register_per_email: 5,
            reset_per_email: 5,
            spam_window: Duration::from_secs(3600),
        }
    }
}

impl Limits {
    /// At most this many failed logins per account may ever reach argon2 per hour.
    pub const MAX_FAILURES_PER_HOUR: u64 = 100;

    /// Failed logins per account that can reach argon2 in one hour under these limits.
    pub fn failures_per_hour(&self) -> u64 {
        let window_ms = self.login_window.as_millis().max(1);
        let windows = 3_600_000u128.div_ceil(window_ms);
        u64::try_from(windows.saturating_mul(u128::from(self.login_failures))).unwrap_or(u64::MAX)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.login_failures == 0
            || self.source_failures == 0
            || self.register_per_email == 0
            || self.reset_per_email == 0
            || self.login_window.is_zero()
            || self.claim_lease.is_zero()
            || self.spam_window.is_zero()
        {
            return Err(ConfigError::Invalid(
                "limits: every limit and window must be positive".into(),
            ));
        }
        if self.failures_per_hour() > Self::MAX_FAILURES_PER_HOUR {
            return Err(ConfigError::Invalid(format!(
                "limits: {} failed logins per {:?} let {} per hour reach argon2 (at most {})",
                self.login_failures,
                self.login_window,
                self.failures_per_hour(),
                Self::MAX_FAILURES_PER_HOUR
            )));
        }
        Ok(())
    }
}
