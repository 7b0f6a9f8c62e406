//! The worker's configuration: a plain struct with production defaults.
//!
//! The binary layers flags and `AUTHQ_*` environment variables over [`Config::default`]; tests
//! build it directly. [`Config::validate`] refuses combinations that cannot work.

use crate::social::SocialConfig;
use crate::store::StoreLocation;
use authq_protocol::{Names, Operation, Tube, names::DEFAULT_NAMESPACE, redact_url};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a worker needs to run.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// The AMQP URL of the broker (`amqp://user:password@host:port/vhost`). Its password is
    /// redacted in `Debug`.
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (see [`Names`]).
    pub namespace: String,
    /// The store: a SQLite file (created if missing), or a PostgreSQL database (see
    /// [`StoreLocation`]).
    pub database: StoreLocation,
    /// The server key file (see [`crate::keys`]); `None`: the SQLite database's path with
    /// `.key` appended (a PostgreSQL store needs it set: every worker on every host must use
    /// the same key). Created on first start.
    pub key_file: Option<PathBuf>,
    /// Consumers and prefetch of each tube.
    pub tubes: BTreeMap<Tube, TubeConfig>,
    /// Consumers and prefetch of the unrouted queue (requests for unknown operations).
    pub unrouted: TubeConfig,
    /// How the tubes are declared on the broker: queue type, bounds, delivery limit.
    pub queues: QueuePolicy,
    /// How long a mutating request's first outcome is kept for redeliveries and retries with
    /// the same `message_id`.
    pub idempotency_window: Duration,
    /// The deletion cascade: which services must acknowledge a deleted user, and by when.
    pub deletion: DeletionPolicy,
    /// The policies that may refuse a login (or a registration): deny-list and hook.
    pub policy: PolicyConfig,
    /// A Redis server on which to keep the set `{namespace}:suspended` of suspended user ids
    /// (see [`crate::suspended_set`]); its password is redacted in `Debug`.
    pub redis_url: Option<String>,
    /// Which tube serves each operation. Operations missing here use their default tube.
    pub routes: BTreeMap<Operation, Tube>,
    /// The argon2 pool.
    pub hashing: HashConfig,
    /// Session lifetime and renewal.
    pub sessions: SessionPolicy,
    /// Confirmation codes and reset tokens.
    pub codes: CodePolicy,
    /// What a password must satisfy.
    pub passwords: PasswordPolicy,
    /// Brute-force and spam limits (lockout per email, per source address, register and reset
    /// per email).
    pub limits: Limits,
    /// RabbitMQ users (the validated `user-id` property) allowed the administrative operations
    /// (`suspend`, `unsuspend`, `delete_user`, `start_reset`). Empty: nobody.
    pub admin_callers: Vec<String>,
    /// RabbitMQ users (the validated `user-id` property) granted the **reset** role: they may
    /// call `start_reset` (a web service's "forgot my password") and nothing else
    /// administrative. Users in [`Config::admin_callers`] have it too. Empty: nobody.
    pub reset_callers: Vec<String>,
    /// Largest request body accepted, in bytes; larger ones are refused before parsing.
    pub max_body_bytes: usize,
    /// Largest profile (as minified JSON) a user may have, in bytes.
    pub max_profile_bytes: usize,
    /// Size of the store's connection pool.
    pub store_pool_size: u32,
    /// How long a SQLite statement waits for the database's write lock (held by another
    /// process on the same file) before the request is answered `unavailable`. Shorter than a
    /// caller's usual timeout (the client's default is 10 s), so the answer reaches it.
    pub store_busy_timeout: Duration,
    /// How long shutdown waits for in-flight requests before giving up on them (they are then
    /// redelivered to another worker).
    pub shutdown_grace: Duration,
    /// Where to serve `/metrics`, `/livez` and `/readyz` ([`crate::observe`]); `None`: nowhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How often expired sessions and codes are purged from the store.
    pub purge_interval: Duration,
    /// When set, every queue is declared with this `x-expires`, so an abandoned namespace
    /// (a crashed test run) disappears from the broker. Leave unset in production.
    pub queue_expires: Option<Duration>,
    /// Social login (providers, key, timeouts); no provider: off.
    pub social: SocialConfig,
}

impl Default for Config {
    fn default() -> Self {
        let hashing = HashConfig::default();
        let tubes = BTreeMap::from([
            (
                Tube::Session,
                TubeConfig {
                    consumers: 2,
                    prefetch: 64,
                },
            ),
            (
                Tube::Password,
                TubeConfig {
                    consumers: 1,
                    // Enough to keep every argon2 thread busy with one request waiting behind
                    // it; the rest of a login flood waits in the broker, not in the worker.
                    prefetch: u16::try_from(hashing.threads * 2).unwrap_or(u16::MAX),
                },
            ),
            (
                Tube::Account,
                TubeConfig {
                    consumers: 1,
                    prefetch: 16,
                },
            ),
        ]);
        Self {
            amqp_url: DEFAULT_AMQP_URL.to_owned(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            database: StoreLocation::Sqlite(PathBuf::from("authq.db")),
            key_file: None,
            tubes,
            unrouted: TubeConfig {
                consumers: 1,
                prefetch: 8,
            },
            queues: QueuePolicy::default(),
            idempotency_window: Duration::from_secs(3600),
            deletion: DeletionPolicy::default(),
            policy: PolicyConfig::default(),
            redis_url: None,
            routes: BTreeMap::new(),
            hashing,
            sessions: SessionPolicy::default(),
            codes: CodePolicy::default(),
            passwords: PasswordPolicy::default(),
            limits: Limits::default(),
            admin_callers: Vec::new(),
            reset_callers: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_profile_bytes: 16 * 1024,
            store_pool_size: 8,
            store_busy_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            metrics_addr: None,
            purge_interval: Duration::from_secs(600),
            queue_expires: None,
            social: SocialConfig::default(),
        }
    }
}

/// The broker URL used when none is configured: a local RabbitMQ with its default account.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Config {
    /// The tube serving `op`: its configured route, else its default.
    pub fn tube_of(&self, op: Operation) -> Tube {
        self.routes
            .get(&op)
            .copied()
            .unwrap_or_else(|| op.default_tube())
    }

    /// Where the server key lives: `None` only when it is not set and the store is not a
    /// SQLite file (which [`Config::validate`] refuses).
    pub fn key_path(&self) -> Option<PathBuf> {
        self.key_file.clone().or_else(|| {
            let mut path = self.database.sqlite_path()?.as_os_str().to_owned();
            path.push(".key");
            Some(PathBuf::from(path))
        })
    }

    /// The settings of a tube (defaults for a tube missing from the map).
    pub fn tube(&self, tube: Tube) -> TubeConfig {
        self.tubes.get(&tube).copied().unwrap_or(TubeConfig {
            consumers: 1,
            prefetch: 16,
        })
    }

    /// Checks the configuration and derives the broker names.
    pub fn validate(&self) -> Result<Names, ConfigError> {
        let names =
            Names::new(&self.namespace).map_err(|e| ConfigError::Namespace(e.to_string()))?;
        if self.key_path().is_none() {
            return Err(ConfigError::Invalid(
                "a PostgreSQL store needs the key file set (--key-file): every worker on every \
                 host must use the same server key"
                    .into(),
            ));
        }
        for tube in Tube::ALL {
            let t = self.tube(tube);
            if t.consumers == 0 || t.prefetch == 0 {
                return Err(ConfigError::Invalid(format!(
                    "tube {tube}: consumers and prefetch must be at least 1"
                )));
            }
        }
        if self.unrouted.consumers == 0 || self.unrouted.prefetch == 0 {
            return Err(ConfigError::Invalid(
                "unrouted queue: consumers and prefetch must be at least 1".into(),
            ));
        }
        if self.queues.max_length == 0 || self.queues.delivery_limit == 0 {
            return Err(ConfigError::Invalid(
                "queues: the maximum length and the delivery limit must be at least 1".into(),
            ));
        }
        if self.hashing.threads == 0 {
            return Err(ConfigError::Invalid(
                "the argon2 pool needs at least one thread".into(),
            ));
        }
        if !self.hashing.allow_insecure_params && !self.hashing.params.meets_owasp_minimum() {
            return Err(ConfigError::Invalid(format!(
                "argon2 parameters {:?} are below OWASP's minimum (m=19456 KiB, t=2, p=1)",
                self.hashing.params
            )));
        }
        let (p, max) = (&self.hashing.params, &self.hashing.max_params);
        if p.memory_kib > max.memory_kib
            || p.iterations > max.iterations
            || p.parallelism > max.parallelism
        {
            return Err(ConfigError::Invalid(
                "argon2 parameters exceed the configured bound for stored hashes (max_params)"
                    .into(),
            ));
        }
        self.limits.validate()?;
        let s = &self.sessions;
        if s.idle_timeout.is_zero() || s.max_lifetime < s.idle_timeout {
            return Err(ConfigError::Invalid(
                "sessions: the idle timeout must be positive and at most the maximum lifetime"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.renew_after) {
            return Err(ConfigError::Invalid(
                "sessions: renew_after is a fraction between 0 and 1".into(),
            ));
        }
        if self.codes.confirmation_ttl.is_zero()
            || self.codes.reset_ttl.is_zero()
            || self.codes.max_attempts == 0
        {
            return Err(ConfigError::Invalid(
                "codes: lifetimes and max_attempts must be positive".into(),
            ));
        }
        if self.passwords.min_chars == 0 || self.passwords.max_bytes < 64 {
            return Err(ConfigError::Invalid(
                "passwords: min_chars must be at least 1 and max_bytes at least 64".into(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        self.social.validate()?;
        if self.store_pool_size == 0 {
            return Err(ConfigError::Invalid(
                "store_pool_size must be at least 1".into(),
            ));
        }
        Ok(names)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("namespace", &self.namespace)
            .field("database", &self.database)
            .field("key_file", &self.key_file)
            .field("tubes", &self.tubes)
            .field("unrouted", &self.unrouted)
            .field("queues", &self.queues)
            .field("idempotency_window", &self.idempotency_window)
            .field("deletion", &self.deletion)
            .field("policy", &self.policy)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("routes", &self.routes)
            .field("hashing", &self.hashing)
            .field("sessions", &self.sessions)
            .field("codes", &self.codes)
            .field("passwords", &self.passwords)
            .field("limits", &self.limits)
            .field("admin_callers", &self.admin_callers)
            .field("reset_callers", &self.reset_callers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_profile_bytes", &self.max_profile_bytes)
            .field("store_pool_size", &self.store_pool_size)
            .field("store_busy_timeout", &self.store_busy_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("metrics_addr", &self.metrics_addr)
            .field("purge_interval", &self.purge_interval)
            .field("queue_expires", &self.queue_expires)
            .field("social", &self.social)
            .finish()
    }
}

/// The policy chain run before a session is issued (see [`crate::policy`]).
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

/// The RabbitMQ queue type of a tube.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    /// A replicated, durable quorum queue with a delivery limit (the default).
    Quorum,
    /// A classic durable queue (no delivery limit: a message that crashes every worker is
    /// redelivered until a worker dead-letters it).
    Classic,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

/// How the tubes are declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Tubes declared as classic queues instead of quorum queues.
    pub classic_tubes: std::collections::BTreeSet<Tube>,
    /// `x-max-length` of every tube: past it, the broker refuses publishes (`x-overflow =
    /// reject-publish`), which a publisher with confirms sees at once as a nack.
    pub max_length: u32,
    /// `x-delivery-limit` of quorum tubes: a request delivered this many times without being
    /// acknowledged (a worker crashing on it each time) is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            classic_tubes: std::collections::BTreeSet::new(),
            max_length: 200_000,
            delivery_limit: 5,
        }
    }
}

impl QueuePolicy {
    /// The queue type of `tube`.
    pub fn queue_type(&self, tube: Tube) -> QueueType {
        if self.classic_tubes.contains(&tube) {
            QueueType::Classic
        } else {
            QueueType::Quorum
        }
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

/// The argon2 pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashConfig {
    /// Threads that run argon2. Default: one fewer than the cores (at least 1), which leaves a
    /// core to the broker and to session checks on small hosts.
    pub threads: usize,
    /// The parameters new hashes are made with.
    pub params: HashParams,
    /// Accept parameters below OWASP's minimum. Only for tests.
    pub allow_insecure_params: bool,
    /// The most expensive parameters a stored hash may have: a hash beyond them is refused
    /// without running argon2 (a planted hash with m = 4 GiB must not take a worker down).
    pub max_params: HashParams,
    /// The OS scheduling class of the argon2 threads.
    pub priority: HashPriority,
}

/// The OS scheduling class the argon2 threads run in ([`crate::hashing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashPriority {
    /// The class follows the load: while session-tube requests flow, argon2 runs in Linux's
    /// `SCHED_IDLE` class, on the CPU time the checks (and the broker on the same host) leave,
    /// so a login flood does not slow them; otherwise in the normal class, so logins alone run
    /// at full speed and other work on the host cannot starve them. A login that has waited
    /// [`crate::hashing::PATIENCE`] for an idle-class thread is taken by a normal one. The
    /// default, measured with `authq bench login` and `authq bench flood` (BENCHMARKS.md).
    #[default]
    Auto,
    /// Always `SCHED_IDLE`: argon2 runs only on CPU time nothing else wants. While the host's
    /// CPUs are saturated by anything, logins wait (in the broker, bounded by their deadlines).
    Idle,
    /// The normal class: argon2 competes for the CPU like every other thread.
    Normal,
}

impl Default for HashConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            threads: cores.saturating_sub(1).max(1),
            params: HashParams::default(),
            allow_insecure_params: false,
            max_params: HashParams::MAX_DEFAULT,
            priority: HashPriority::default(),
        }
    }
}

impl HashConfig {
    /// Very cheap argon2 parameters, so tests that log in many times stay fast.
    /// Never use them anywhere else.
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            threads: 2,
            params: HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            allow_insecure_params: true,
            max_params: HashParams::MAX_DEFAULT,
            priority: HashPriority::default(),
        }
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory per hash, in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation for argon2id: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// The default bound on stored hashes' parameters: m = 256 MiB, t = 16, p = 8.
    pub const MAX_DEFAULT: Self = Self {
        memory_kib: 256 * 1024,
        iterations: 16,
        parallelism: 8,
    };

    /// Whether the parameters are at least OWASP's minimum (m = 19 MiB, t = 2, p = 1).
    pub fn meets_owasp_minimum(&self) -> bool {
        self.memory_kib >= 19 * 1024 && self.iterations >= 2 && self.parallelism >= 1
    }
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
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(24 * 3600),
            max_lifetime: Duration::from_secs(30 * 24 * 3600),
            renew_after: 0.5,
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

    fn validate(&self) -> Result<(), ConfigError> {
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

/// The configuration cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The namespace is not a valid name prefix.
    #[error("invalid namespace: {0}")]
    Namespace(String),
    /// Another setting is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config::default()
    }

    #[test]
    fn default_config_is_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn lockout_never_lets_more_than_100_failures_an_hour_reach_argon2() {
        let mut c = valid();
        assert!(c.limits.failures_per_hour() <= 100);
        c.limits.login_failures = 30;
        c.limits.login_window = Duration::from_secs(60 * 15); // 4 windows an hour: 120
        assert!(c.validate().is_err());
        c.limits.login_window = Duration::from_secs(3600);
        c.validate().unwrap();
    }

    #[test]
    fn weak_hash_params_need_the_test_switch() {
        let mut c = valid();
        c.hashing.params.memory_kib = 1024;
        assert!(c.validate().is_err());
        c.hashing = HashConfig::insecure_fast_for_tests();
        c.validate().unwrap();
    }

    #[test]
    fn debug_redacts_the_url_password() {
        let c = Config {
            amqp_url: "amqp://u:p4ss@h/".into(),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("p4ss"));
    }

    #[test]
    fn routes_default_to_each_operation_s_tube() {
        let mut c = Config::default();
        assert_eq!(c.tube_of(Operation::Login), Tube::Password);
        c.routes.insert(Operation::Login, Tube::Account);
        assert_eq!(c.tube_of(Operation::Login), Tube::Account);
    }
}
