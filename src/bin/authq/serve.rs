//! `authq serve`: its flags ([`ServeArgs`]), the worker configuration they describe, and the
//! run. Every flag's default is read from the worker's `Config::default()`, never restated;
//! `serve_defaults_match_the_worker_defaults` (in `cli`) holds the two equal.
use crate::broker_args::BrokerArgs;
use anyhow::Context as _;
use authq_protocol::{Operation, Tube};
use authq_worker::config::{
    Config, HashConfig, HashParams, HashPriority, QueueType, SessionLimit, TubeConfig,
};
use authq_worker::store::StoreLocation;
use clap::{Args, ValueEnum};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// `authq serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub tokens: crate::token_args::TokenArgs,
    /// The store: a SQLite file path or `sqlite://PATH` (one host; created and migrated at
    /// start-up), or `postgres://user:password@host/db` (workers on several hosts; migrated
    /// at start-up, one worker at a time).
    #[arg(long, env = "AUTHQ_DATABASE", default_value_t = defaults().database)]
    pub database: StoreLocation,
    /// The server key file (32 random bytes, created with mode 0600 on first start), which
    /// seals the recorded outcomes of requests and from which the key one-time codes are
    /// stored under is derived; keep it out of database backups. Default: the SQLite
    /// database path with `.key` appended. Required with PostgreSQL: copy one key file to
    /// every host.
    #[arg(long, env = "AUTHQ_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// TOML configuration file: social login providers and their secrets (`[social]`, see
    /// the README). Secrets in it may be indirect: `*_env` (an environment variable) or
    /// `*_file` (a file).
    #[arg(long, env = "AUTHQ_CONFIG")]
    pub config: Option<PathBuf>,

    /// Consumers on the `session` tube (check, logout, …).
    #[arg(long, env = "AUTHQ_SESSION_CONSUMERS", default_value_t = defaults().tube(Tube::Session).consumers)]
    pub session_consumers: u16,
    /// Unacknowledged requests each `session` consumer holds at most.
    #[arg(long, env = "AUTHQ_SESSION_PREFETCH", default_value_t = defaults().tube(Tube::Session).prefetch)]
    pub session_prefetch: u16,
    /// Consumers on the `password` tube (login, confirm_registration, …: argon2).
    #[arg(long, env = "AUTHQ_PASSWORD_CONSUMERS", default_value_t = defaults().tube(Tube::Password).consumers)]
    pub password_consumers: u16,
    /// Unacknowledged requests each `password` consumer holds at most [default: 2 × hash threads].
    #[arg(long, env = "AUTHQ_PASSWORD_PREFETCH")]
    pub password_prefetch: Option<u16>,
    /// Consumers on the `account` tube (register, suspend, …).
    #[arg(long, env = "AUTHQ_ACCOUNT_CONSUMERS", default_value_t = defaults().tube(Tube::Account).consumers)]
    pub account_consumers: u16,
    /// Unacknowledged requests each `account` consumer holds at most.
    #[arg(long, env = "AUTHQ_ACCOUNT_PREFETCH", default_value_t = defaults().tube(Tube::Account).prefetch)]
    pub account_prefetch: u16,
    /// Serve an operation from another tube than its default, e.g. `--route login=account`.
    /// Repeatable. Clients are unaffected: they address operations, not tubes.
    #[arg(long = "route", value_name = "OP=TUBE", value_parser = parse_route)]
    pub routes: Vec<(Operation, Tube)>,
    /// A tube's queue type, `TUBE=TYPE` with TYPE `quorum`, `classic` (durable, one node) or
    /// `transient` (classic, in memory), e.g. `--tube-type session=quorum` (repeatable, or
    /// comma-separated). Defaults: session transient, password and account quorum; each type's
    /// failure modes are in README.md, "Tube types".
    #[arg(long = "tube-type", env = "AUTHQ_TUBE_TYPES", value_name = "TUBE=TYPE", value_delimiter = ',', value_parser = parse_tube_type)]
    pub tube_types: Vec<(Tube, QueueType)>,
    /// The former spelling of `--tube-type TUBE=classic`.
    #[arg(long = "classic-tube", env = "AUTHQ_CLASSIC_TUBES", value_delimiter = ',', value_parser = parse_tube, hide = true)]
    pub classic_tubes: Vec<Tube>,
    /// Requests a tube holds at most; past it the broker refuses publishes and callers get
    /// `overloaded` at once.
    #[arg(long, env = "AUTHQ_TUBE_MAX_LENGTH", default_value_t = defaults().queues.max_length)]
    pub tube_max_length: u32,
    /// Deliveries of one request (a worker dying on it each time) before a quorum tube
    /// dead-letters it.
    #[arg(long, env = "AUTHQ_DELIVERY_LIMIT", default_value_t = defaults().queues.delivery_limit)]
    pub delivery_limit: u32,
    /// How long a mutating request's first outcome is kept, so that a redelivery or a retry
    /// with the same `message_id` gets it again instead of doing the work twice.
    #[arg(long, env = "AUTHQ_IDEMPOTENCY_WINDOW", default_value_t = HumanDuration(defaults().idempotency_window))]
    pub idempotency_window: HumanDuration,
    /// A service that must acknowledge every user deletion with `deletion_done` (repeatable);
    /// `deletion_status` tells which have, and `user.deletion_completed` follows when all have.
    #[arg(
        long = "deletion-service",
        env = "AUTHQ_DELETION_SERVICES",
        value_delimiter = ','
    )]
    pub deletion_services: Vec<String>,
    /// How long a deletion waits for its services before completing without the missing ones.
    #[arg(long, env = "AUTHQ_DELETION_DEADLINE", default_value_t = HumanDuration(defaults().deletion.deadline))]
    pub deletion_deadline: HumanDuration,
    /// Refuse logins (and, with `--policy-on-register`, registrations) of this email or, as
    /// `@domain`, of this domain and its subdomains (repeatable).
    #[arg(
        long = "deny",
        env = "AUTHQ_DENY",
        value_delimiter = ',',
        value_name = "EMAIL|@DOMAIN"
    )]
    pub deny: Vec<String>,
    /// The queue of an external policy hook asked before every login (PROTOCOL.md, "Policy
    /// hook"); it may deny with a reason.
    #[arg(long, env = "AUTHQ_POLICY_HOOK")]
    pub policy_hook: Option<String>,
    /// How long the policy hook may take to answer.
    #[arg(long, env = "AUTHQ_POLICY_HOOK_TIMEOUT", default_value_t = HumanDuration(defaults().policy.hook_timeout))]
    pub policy_hook_timeout: HumanDuration,
    /// Allow the login when the hook does not answer in time (default: deny).
    #[arg(long, env = "AUTHQ_POLICY_FAIL_OPEN")]
    pub policy_fail_open: bool,
    /// Run the policies before registrations too.
    #[arg(long, env = "AUTHQ_POLICY_ON_REGISTER")]
    pub policy_on_register: bool,
    /// Keep the set `{namespace}:suspended` of suspended user ids on this Redis server
    /// (`redis://host:6379/0`), for gateways that check it on every request.
    #[arg(long, env = "AUTHQ_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Threads that run argon2 [default: cores − 1, at least 1: leaves a core to the broker and
    /// to session checks].
    #[arg(long, env = "AUTHQ_HASH_THREADS")]
    pub hash_threads: Option<usize>,
    /// OS scheduling class of the argon2 threads: `auto` runs argon2 in the idle class while
    /// session checks are flowing (a login flood takes only the CPU they leave) and in the
    /// normal class otherwise, and moves a login that has waited 250 ms to the normal class;
    /// `idle` always runs it only on CPU time nothing else wants (logins wait while the host's
    /// CPUs are saturated by anything); `normal` lets it compete like any thread.
    #[arg(long, env = "AUTHQ_HASH_PRIORITY", value_enum, default_value_t = HashPriorityArg::from(defaults().hashing.priority))]
    pub hash_priority: HashPriorityArg,
    /// argon2id memory per hash, in KiB (never below OWASP's 19456).
    #[arg(long, env = "AUTHQ_ARGON2_MEMORY_KIB", default_value_t = defaults().hashing.params.memory_kib)]
    pub argon2_memory_kib: u32,
    /// argon2id passes (never below OWASP's 2).
    #[arg(long, env = "AUTHQ_ARGON2_ITERATIONS", default_value_t = defaults().hashing.params.iterations)]
    pub argon2_iterations: u32,
    /// argon2id lanes.
    #[arg(long, env = "AUTHQ_ARGON2_PARALLELISM", default_value_t = defaults().hashing.params.parallelism)]
    pub argon2_parallelism: u32,

    /// A session unused for this long expires (each renewal restarts it).
    #[arg(long, env = "AUTHQ_SESSION_IDLE_TIMEOUT", default_value_t = HumanDuration(defaults().sessions.idle_timeout))]
    pub session_idle_timeout: HumanDuration,
    /// No session outlives this, however often it is renewed.
    #[arg(long, env = "AUTHQ_SESSION_MAX_LIFETIME", default_value_t = HumanDuration(defaults().sessions.max_lifetime))]
    pub session_max_lifetime: HumanDuration,
    /// `check` renews a session once this fraction of its idle timeout has passed.
    #[arg(long, env = "AUTHQ_SESSION_RENEW_AFTER", default_value_t = defaults().sessions.renew_after)]
    pub session_renew_after: f64,
    /// Sessions one user may have at once: `unlimited`, `one` (a new login ends the user's
    /// other sessions), or a number N (a new login ends the oldest beyond N).
    #[arg(long, env = "AUTHQ_SESSION_LIMIT", default_value_t = defaults().sessions.per_user)]
    pub session_limit: SessionLimit,
    /// How long a registration's confirmation code is valid.
    #[arg(long, env = "AUTHQ_CODE_TTL", default_value_t = HumanDuration(defaults().codes.confirmation_ttl))]
    pub code_ttl: HumanDuration,
    /// How long a password reset token is valid.
    #[arg(long, env = "AUTHQ_RESET_TTL", default_value_t = HumanDuration(defaults().codes.reset_ttl))]
    pub reset_ttl: HumanDuration,
    /// Wrong guesses a code or reset token survives before it is destroyed.
    #[arg(long, env = "AUTHQ_CODE_MAX_ATTEMPTS", default_value_t = defaults().codes.max_attempts)]
    pub code_max_attempts: u32,
    /// Shortest password accepted, in characters.
    #[arg(long, env = "AUTHQ_PASSWORD_MIN_CHARS", default_value_t = defaults().passwords.min_chars)]
    pub password_min_chars: usize,
    /// Longest password accepted, in bytes (refused before hashing).
    #[arg(long, env = "AUTHQ_PASSWORD_MAX_BYTES", default_value_t = defaults().passwords.max_bytes)]
    pub password_max_bytes: usize,
    /// Largest request body accepted, in bytes (refused before parsing).
    #[arg(long, env = "AUTHQ_MAX_BODY_BYTES", default_value_t = defaults().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Largest profile a user may have, in bytes of minified JSON.
    #[arg(long, env = "AUTHQ_MAX_PROFILE_BYTES", default_value_t = defaults().max_profile_bytes)]
    pub max_profile_bytes: usize,
    /// SQLite connections in the pool.
    #[arg(long, env = "AUTHQ_STORE_POOL_SIZE", default_value_t = defaults().store_pool_size)]
    pub store_pool_size: u32,
    /// How long a SQLite write waits for the database's write lock (another process holding
    /// it) before the request is answered `unavailable`, which callers retry.
    #[arg(long, env = "AUTHQ_STORE_BUSY_TIMEOUT", default_value_t = HumanDuration(defaults().store_busy_timeout))]
    pub store_busy_timeout: HumanDuration,
    /// Declare every queue with this `x-expires` (e.g. `10m`), so the deployment's queues vanish
    /// from the broker once no worker has used them for that long. For tests and throw-away
    /// deployments; leave unset in production.
    #[arg(long, env = "AUTHQ_QUEUE_EXPIRES", value_parser = humantime::parse_duration)]
    pub queue_expires: Option<Duration>,
    /// On SIGINT/SIGTERM, how long to let requests in flight finish.
    #[arg(long, env = "AUTHQ_SHUTDOWN_GRACE", default_value_t = HumanDuration(defaults().shutdown_grace))]
    pub shutdown_grace: HumanDuration,
    /// RabbitMQ user allowed the administrative operations (suspend, unsuspend, delete_user,
    /// start_reset, `authq user`'s list_users, get_user, import_users, end_user_sessions,
    /// reset_mfa, and the service clients' create, revoke, list and rotate operations), as
    /// validated by the broker's `user-id` property. Repeat, or separate with
    /// commas in the variable. None by default.
    #[arg(
        long = "admin-caller",
        env = "AUTHQ_ADMIN_CALLERS",
        value_delimiter = ','
    )]
    pub admin_callers: Vec<String>,
    /// RabbitMQ user granted the reset role: `start_reset` and no other administrative
    /// operation (a web service's "forgot my password"). Repeat, or separate with commas in the
    /// variable. None by default.
    #[arg(
        long = "reset-caller",
        env = "AUTHQ_RESET_CALLERS",
        value_delimiter = ','
    )]
    pub reset_callers: Vec<String>,
    /// Failed logins per email per lockout window; further attempts are refused without
    /// running argon2 until the window ends (at most 100 an hour may reach argon2).
    #[arg(long, env = "AUTHQ_LOGIN_MAX_FAILURES", default_value_t = defaults().limits.login_failures)]
    pub login_max_failures: u32,
    /// The lockout window, e.g. `15m`.
    #[arg(long, env = "AUTHQ_LOGIN_WINDOW", default_value_t = HumanDuration(defaults().limits.login_window))]
    pub login_window: HumanDuration,
    /// Failed logins per source address (`client_ip`) per lockout window.
    #[arg(long, env = "AUTHQ_SOURCE_MAX_FAILURES", default_value_t = defaults().limits.source_failures)]
    pub source_max_failures: u32,
    /// `register` calls per email per hour.
    #[arg(long, env = "AUTHQ_REGISTER_PER_EMAIL", default_value_t = defaults().limits.register_per_email)]
    pub register_per_email: u32,
    /// `start_reset` calls per email per hour.
    #[arg(long, env = "AUTHQ_RESET_PER_EMAIL", default_value_t = defaults().limits.reset_per_email)]
    pub reset_per_email: u32,
    /// Serve Prometheus metrics (`/metrics`), `/livez` and `/readyz` on this address (e.g.
    /// `127.0.0.1:9187`). Off by default.
    #[arg(long, env = "AUTHQ_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// On exit, write the worker's counters and per-stage timings (JSON) to this file. `authq
    /// bench --spawn` reads it to show where the time goes.
    #[arg(long, env = "AUTHQ_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

fn defaults() -> Config {
    Config::default()
}

fn parse_tube(s: &str) -> Result<Tube, String> {
    Tube::parse(s).ok_or_else(|| format!("unknown tube {s:?} (session, password or account)"))
}

fn parse_tube_type(s: &str) -> Result<(Tube, QueueType), String> {
    let (tube, kind) = s
        .split_once('=')
        .ok_or_else(|| format!("expected TUBE=TYPE, got {s:?}"))?;
    let kind = QueueType::parse(kind)
        .ok_or_else(|| format!("unknown queue type {kind:?} (quorum, classic or transient)"))?;
    Ok((parse_tube(tube)?, kind))
}

fn parse_route(s: &str) -> Result<(Operation, Tube), String> {
    let (op, tube) = s
        .split_once('=')
        .ok_or_else(|| format!("expected OP=TUBE, got {s:?}"))?;
    let op = Operation::parse(op).ok_or_else(|| format!("unknown operation {op:?}"))?;
    let tube = Tube::parse(tube)
        .ok_or_else(|| format!("unknown tube {tube:?} (session, password or account)"))?;
    Ok((op, tube))
}

/// `--hash-priority`: the OS scheduling class of the argon2 threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HashPriorityArg {
    /// The idle class while session checks flow, the normal class otherwise.
    Auto,
    /// `SCHED_IDLE`: only CPU time nothing else wants.
    Idle,
    /// The normal class.
    Normal,
}

impl From<HashPriority> for HashPriorityArg {
    fn from(priority: HashPriority) -> Self {
        match priority {
            HashPriority::Auto => Self::Auto,
            HashPriority::Idle => Self::Idle,
            HashPriority::Normal => Self::Normal,
        }
    }
}

/// A duration flag's value: read as humantime reads it (`24h`, `30days`, `500ms`), and
/// printable, so that its default in `--help` can be the worker's own ([`Config::default`])
/// rather than a copy of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// In one unit, as the defaults were always shown: whole days beyond one in days (`30days`),
/// else whole hours (`24h`, `1h`), minutes (`15m`) or seconds (`30s`); anything else as
/// humantime writes it. Reads back as the same duration.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY: u64 = 24 * 3600;
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() != 0 || secs == 0 {
            humantime::format_duration(self.0).fmt(f)
        } else if secs % DAY == 0 && secs > DAY {
            write!(f, "{}days", secs / DAY)
        } else if secs % 3600 == 0 {
            write!(f, "{}h", secs / 3600)
        } else if secs % 60 == 0 {
            write!(f, "{}m", secs / 60)
        } else {
            write!(f, "{secs}s")
        }
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Self)
    }
}

impl ServeArgs {
    /// The worker configuration these flags describe.
    pub fn into_config(self) -> Config {
        let mut config = Config::default();
        let mut hashing = HashConfig::default();
        if let Some(threads) = self.hash_threads {
            hashing.threads = threads;
        }
        hashing.priority = match self.hash_priority {
            HashPriorityArg::Auto => HashPriority::Auto,
            HashPriorityArg::Idle => HashPriority::Idle,
            HashPriorityArg::Normal => HashPriority::Normal,
        };
        hashing.params = HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        };
        // The one default computed here rather than read from `Config::default()`: it follows
        // `--hash-threads` (the worker's default uses the default thread count, the same rule).
        let password_prefetch = self
            .password_prefetch
            .unwrap_or_else(|| u16::try_from(hashing.threads * 2).unwrap_or(u16::MAX));
        config.tubes.insert(
            Tube::Session,
            TubeConfig {
                consumers: self.session_consumers,
                prefetch: self.session_prefetch,
            },
        );
        config.tubes.insert(
            Tube::Password,
            TubeConfig {
                consumers: self.password_consumers,
                prefetch: password_prefetch,
            },
        );
        config.tubes.insert(
            Tube::Account,
            TubeConfig {
                consumers: self.account_consumers,
                prefetch: self.account_prefetch,
            },
        );
        config.tokens = self.tokens.into_config();
        config.amqp_url = self.broker.amqp_url;
        config.namespace = self.broker.namespace;
        config.database = self.database;
        config.key_file = self.key_file;
        config.routes = self.routes.into_iter().collect();
        let classic = self
            .classic_tubes
            .into_iter()
            .map(|t| (t, QueueType::Classic));
        config
            .queues
            .tube_types
            .extend(classic.chain(self.tube_types));
        config.queues.max_length = self.tube_max_length;
        config.queues.delivery_limit = self.delivery_limit;
        config.idempotency_window = self.idempotency_window.0;
        config.deletion.services = self.deletion_services;
        config.deletion.deadline = self.deletion_deadline.0;
        config.policy.deny = self.deny;
        config.policy.hook_queue = self.policy_hook;
        config.policy.hook_timeout = self.policy_hook_timeout.0;
        config.policy.fail_open = self.policy_fail_open;
        config.policy.on_register = self.policy_on_register;
        config.redis_url = self.redis_url;
        config.hashing = hashing;
        config.sessions.idle_timeout = self.session_idle_timeout.0;
        config.sessions.max_lifetime = self.session_max_lifetime.0;
        config.sessions.renew_after = self.session_renew_after;
        config.sessions.per_user = self.session_limit;
        config.codes.confirmation_ttl = self.code_ttl.0;
        config.codes.reset_ttl = self.reset_ttl.0;
        config.codes.max_attempts = self.code_max_attempts;
        config.passwords.min_chars = self.password_min_chars;
        config.passwords.max_bytes = self.password_max_bytes;
        config.max_body_bytes = self.max_body_bytes;
        config.max_profile_bytes = self.max_profile_bytes;
        config.store_pool_size = self.store_pool_size;
        config.store_busy_timeout = self.store_busy_timeout.0;
        config.shutdown_grace = self.shutdown_grace.0;
        config.metrics_addr = self.metrics_addr;
        config.queue_expires = self.queue_expires;
        config.admin_callers = self.admin_callers;
        config.reset_callers = self.reset_callers;
        config.limits.login_failures = self.login_max_failures;
        config.limits.login_window = self.login_window.0;
        config.limits.source_failures = self.source_max_failures;
        config.limits.register_per_email = self.register_per_email;
        config.limits.reset_per_email = self.reset_per_email;
        config
    }
}

/// Runs `authq serve`: the worker pool until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let metrics_file = args.metrics_file.clone();
    let file = args.config.clone();
    let mut config = args.into_config();
    if let Some(path) = file {
        config.social = authq_worker::config::social::load_file(&path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
    }
    tracing::debug!(?config, "configuration");
    let shutdown = crate::shutdown::shutdown_signal();
    let worker = authq_worker::WorkerHandle::start(config)
        .await
        .context("the worker could not start")?;
    let metrics = std::sync::Arc::clone(worker.metrics());
    let outcome = worker
        .run_until(shutdown)
        .await
        .context("the worker stopped with an error");
    if let Some(path) = metrics_file {
        let json = serde_json::to_vec_pretty(&metrics.snapshot())?;
        std::fs::write(&path, json)
            .with_context(|| format!("cannot write the metrics to {}", path.display()))?;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(
            parse_route("login=account").unwrap(),
            (Operation::Login, Tube::Account)
        );
        assert!(parse_route("login").is_err());
        assert!(parse_route("nope=account").is_err());
        assert!(parse_route("login=nope").is_err());
    }

    #[test]
    fn durations_print_in_one_unit_and_read_back() {
        for (secs, shown) in [
            (2, "2s"),
            (90, "90s"),
            (15 * 60, "15m"),
            (3600, "1h"),
            (24 * 3600, "24h"),
            (36 * 3600, "36h"),
            (30 * 24 * 3600, "30days"),
        ] {
            let d = HumanDuration(Duration::from_secs(secs));
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<HumanDuration>().unwrap(), d);
        }
        let odd = HumanDuration(Duration::from_millis(1500));
        assert_eq!(odd.to_string().parse::<HumanDuration>().unwrap(), odd);
        let zero = HumanDuration(Duration::ZERO);
        assert_eq!(zero.to_string().parse::<HumanDuration>().unwrap(), zero);
    }
}
