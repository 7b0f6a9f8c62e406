//! The worker's configuration: a plain struct with production defaults.
//!
//! The binary layers flags and `AUTHQ_*` environment variables over [`Config::default`]; tests
//! build it directly. [`Config::validate`] refuses combinations that cannot work.

use crate::store::StoreLocation;
use authq_protocol::{Names, Operation, Tube, names::DEFAULT_NAMESPACE, redact_url};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod hashing;
mod policies;
pub mod providers;
pub mod social;
pub mod tokens;

pub use hashing::{HashConfig, HashParams, HashPriority};
pub use policies::{
    CodePolicy, DeletionPolicy, Limits, PasswordPolicy, PolicyConfig, QueuePolicy, QueueType,
    SessionLimit, SessionLimitError, SessionPolicy, TubeConfig,
};
pub use social::{ProviderConfig, SocialConfig};
pub use tokens::TokenConfig;

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
    /// (see `crate::suspended_set`); its password is redacted in `Debug`.
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
    /// (`suspend`, `unsuspend`, `delete_user`, `start_reset`, and `authq user`'s `list_users`,
    /// `get_user`, `import_users`, `end_user_sessions`, `reset_mfa`, and the service clients'
    /// `create_service_client`, `revoke_service_client`, `list_service_clients`,
    /// `rotate_service_client_secret`). Empty: nobody.
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
    /// Where to serve `/metrics`, `/livez` and `/readyz` (`crate::observe`); `None`: nowhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How often expired sessions and codes are purged from the store.
    pub purge_interval: Duration,
    /// When set, every queue is declared with this `x-expires`, so an abandoned namespace
    /// (a crashed test run) disappears from the broker. Leave unset in production.
    pub queue_expires: Option<Duration>,
    /// Social login (providers, key, timeouts); no provider: off.
    pub social: SocialConfig,
    /// Signed access tokens beside sessions (off by default).
    pub tokens: TokenConfig,
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
            tokens: TokenConfig::default(),
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

    /// Whether replies to `op` carry `headers::REFUSALS_RETURNED`: a read whose tube returns
    /// what it refuses ([`QueueType::returns_refusals`]), so callers may publish it without
    /// confirms. Writes never do: their callers wait for the confirm of every publish.
    pub fn refusals_returned(&self, op: Operation) -> bool {
        !op.is_mutating() && self.queues.queue_type(self.tube_of(op)).returns_refusals()
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
        if cfg!(not(feature = "redis")) && self.redis_url.is_some() {
            return Err(ConfigError::Invalid(
                "--redis-url: this authq was built without the `redis` feature".into(),
            ));
        }
        if self.key_path().is_none() {
            return Err(ConfigError::Invalid(
                "a PostgreSQL store needs the key file set (--key-file): every worker on every \
                 host must use the same server key"
                    .into(),
            ));
        }
        if let Some(why) = self.tokens.invalid() {
            return Err(ConfigError::Invalid(format!("tokens: {why}")));
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
        if s.per_user == SessionLimit::At(0) {
            return Err(ConfigError::Invalid(
                "sessions: a session limit is at least 1".into(),
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
            .field("tokens", &self.tokens)
            .finish()
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
    fn replies_say_refusals_come_back_for_reads_on_a_classic_or_transient_tube_only() {
        let mut c = valid();
        // The transient session tube: its reads, not its writes.
        assert!(c.refusals_returned(Operation::Check));
        assert!(c.refusals_returned(Operation::Ping));
        assert!(!c.refusals_returned(Operation::Logout));
        // A read on a quorum tube: no.
        assert!(!c.refusals_returned(Operation::ListUsers));
        c.routes.insert(Operation::GetProfile, Tube::Account);
        assert!(!c.refusals_returned(Operation::GetProfile));
        c.queues.tube_types.insert(Tube::Session, QueueType::Quorum);
        assert!(!c.refusals_returned(Operation::Check));
        c.queues
            .tube_types
            .insert(Tube::Account, QueueType::Classic);
        assert!(c.refusals_returned(Operation::GetProfile));
        assert!(!c.refusals_returned(Operation::Register));
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
