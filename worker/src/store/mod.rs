//! The user store: SQLite for one host (the embedded default), PostgreSQL for pools spread over
//! several hosts, behind one small query layer.
//!
//! # Shape
//! - [`Store`] opens the backend named by a [`StoreLocation`] (a path or `sqlite://…`, or
//!   `postgres://…`), applies its [`migrations`], and hands out transactions: [`Store::write`]
//!   runs a closure in one transaction (committed if it returns `Ok`), [`Store::read`] on a
//!   connection in autocommit mode. The closure gets the transaction, a [`Tx`], as an
//!   argument: no ambient state carries a transaction, a connection or an idempotency key.
//! - [`Tx`] ([`query`]) runs a statement on either engine. Each area of the store adds its
//!   operations to it, one module per thing it keeps: [`users`], [`codes`], [`sessions`],
//!   [`attempts`], [`outcomes`], [`outbox`], [`deletions`], [`social`]. Each statement is
//!   written once; where the engines differ, both texts stand side by side.
//! - Backends ([`sqlite`], [`postgres`]) only open connections, pool them and begin
//!   transactions.
//!
//! Calls are synchronous: the worker runs them on tokio's blocking pool, bounded by the
//! connection pool's size. One exception, `check`'s look-up ([`Store::check_session_now`]),
//! runs on the executor: an idle SQLite inline reader, or PostgreSQL's async driver
//! ([`pg_reads`]). The store never sees a secret in clear: tokens and codes arrive as
//! digests, passwords as argon2id PHC strings. Time arrives as an argument (`now`, Unix ms),
//! so expiry is the caller's clock's business.

pub mod admin;
pub mod attempts;
pub mod codes;
pub mod deletions;
pub mod mfa;
pub mod migrations;
pub mod outbox;
pub mod outcomes;
pub mod pg_reads;
pub mod postgres;
pub mod query;
pub mod refresh;
pub mod service_clients;
pub mod sessions;
pub mod signing_keys;
pub mod social;
pub mod sqlite;
pub mod users;

pub use admin::{ImportRow, Imported, UserDetails};
pub use attempts::{AttemptLimit, RequestClaim};
pub use codes::{CodePurpose, CodeRecord};
pub use deletions::{DeletionAck, DeletionRecord};
pub use mfa::{MfaPendingRecord, MfaRecord, NewMfaPending};
pub use outbox::OutboxEvent;
pub use outcomes::RecordedOutcome;
pub use postgres::PgStore;
pub use query::Tx;
pub use sessions::{NewSession, Renewal, SessionInfo};
pub use social::{
    LinkOutcome, NewOAuthState, NewSocialLogin, OAuthStateRecord, ProviderEmail, SocialLink,
    SocialLoginOutcome, SocialSessionRecord,
};
pub use sqlite::SqliteStore;
pub use users::{Credentials, NewRegistration, ProfileUpdate, Registration, UserKey, UserRecord};

use crate::crypto::Digest;
use query::args;
use std::fmt;
use std::path::PathBuf;

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or the connection to it failed).
    #[error("database error: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// No connection could be taken from the pool in time.
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The database holds something this version cannot read (a row breaking an invariant the
    /// schema cannot express).
    #[error("database content is invalid: {0}")]
    Corrupt(String),
    /// A stored or a to-be-stored JSON value could not be read or written.
    #[error("{what}: {source}")]
    Json {
        /// What was being read or written.
        what: &'static str,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// The operating system's random number generator failed (a nonce could not be drawn).
    #[error(transparent)]
    Random(#[from] crate::crypto::RandomError),
    /// A row could not be sealed before it was stored.
    #[error(transparent)]
    Seal(#[from] crate::sealing::SealError),
    /// A directory the store's file needs could not be made.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// SQLite kept another journal mode than WAL (e.g. a file system without shared memory).
    #[error("cannot switch the database to WAL mode (journal_mode is {0})")]
    NoWal(String),
    /// A connection was used in a way its engine cannot serve: a closed PostgreSQL connection,
    /// or a PostgreSQL statement on SQLite (a bug, never the data).
    #[error("store misuse: {0}")]
    Misuse(&'static str),
    /// The database was written by a newer authq (a schema version this one does not know).
    #[error("database schema version {found} is newer than this authq supports ({supported})")]
    SchemaTooNew {
        /// The version found in the database.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
}

/// Where the store is: the `--database` setting.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (a path, or `sqlite://PATH`).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`, as libpq takes it).
    Postgres(String),
}

impl StoreLocation {
    /// Reads the `--database` setting: `postgres://…` and `postgresql://…` name PostgreSQL,
    /// `sqlite://PATH` and any other text a SQLite file.
    pub fn parse(setting: &str) -> Self {
        if setting.starts_with("postgres://") || setting.starts_with("postgresql://") {
            Self::Postgres(setting.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(
                setting.strip_prefix("sqlite://").unwrap_or(setting),
            ))
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres(_) => None,
        }
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl std::str::FromStr for StoreLocation {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

/// Shown without a password: a PostgreSQL URL's password never reaches a log line.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("***"));
                    write!(f, "{u}")
                }
                Ok(u) => write!(f, "{u}"),
                Err(_) => f.write_str("postgres://[unparsable URL]"),
            },
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The user store: one of the two backends.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store at `location` and brings its schema up to date. `pool_size` bounds
    /// concurrent connections.
    pub fn open(location: &StoreLocation, pool_size: u32) -> Result<Self, StoreError> {
        Self::open_with(location, pool_size, sqlite::BUSY_TIMEOUT)
    }

    /// [`Store::open`] with SQLite statements waiting at most `busy_timeout` for the write lock
    /// (PostgreSQL waits for row locks without one).
    pub fn open_with(
        location: &StoreLocation,
        pool_size: u32,
        busy_timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let backend = match location {
            StoreLocation::Sqlite(path) => {
                Backend::Sqlite(SqliteStore::open_with(path, pool_size, busy_timeout)?)
            }
            StoreLocation::Postgres(url) => Backend::Postgres(PgStore::open(url, pool_size)?),
        };
        Ok(Self { backend })
    }

    /// The engine's name (`sqlite` or `postgres`).
    pub fn engine(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs `work` on a connection in autocommit mode: each statement is atomic on its own.
    /// For look-ups, and for single-statement writes that need no transaction.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(work),
            Backend::Postgres(s) => s.read(work),
        }
    }

    /// Runs `work` in one write transaction: committed if it returns `Ok`, rolled back if it
    /// returns `Err` (or panics).
    pub fn write<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.write(work),
            Backend::Postgres(s) => s.write(work),
        }
    }

    /// [`Tx::check_session`] for the async executor: it never blocks a thread. SQLite: an
    /// idle inline reader, at once; PostgreSQL: the async driver ([`pg_reads`]). `None` when it
    /// would have to block (no SQLite inline reader idle, the database busy, no async
    /// PostgreSQL connection ready) or when the session is due for renewal (a write); the
    /// caller then runs `check_session` on the blocking pool.
    pub async fn check_session_now(
        &self,
        digest: &Digest,
        now: i64,
        renewal: Renewal,
    ) -> Option<Result<Option<SessionInfo>, StoreError>> {
        let found = match &self.backend {
            Backend::Sqlite(s) => match s.read_inline(|tx| tx.live_session(digest, now))? {
                // Busy (a writer is checkpointing, say): never wait on the executor.
                Err(e) if sqlite::is_busy(&e) => return None,
                other => other,
            },
            Backend::Postgres(s) => s.reads().live_session(digest, now).await?,
        };
        match found {
            Err(e) => Some(Err(e)),
            Ok(None) => Some(Ok(None)),
            // A renewal is a write: the blocking pool does it (and reads again).
            Ok(Some(found)) if found.renewal(now, renewal).is_some() => None,
            Ok(Some(found)) => Some(Ok(Some(found.unrenewed()))),
        }
    }
}

/// Whether a store error says the store is too busy to answer now, and the same request may
/// succeed if made again: SQLite's write lock held past the busy timeout, or no pooled
/// connection free in time.
pub fn is_unavailable(e: &StoreError) -> bool {
    sqlite::is_busy(e) || matches!(e, StoreError::Pool(_))
}

impl Tx<'_> {
    /// Deletes sessions, codes, attempt counters and claims, OAuth states and MFA pending handles that expired before `now`.
    /// Returns how many rows went.
    pub fn purge_expired(&mut self, now: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for sql in [
            "DELETE FROM sessions WHERE expires_at <= ?1 OR absolute_expires_at <= ?1",
            "DELETE FROM codes WHERE expires_at <= ?1",
            "DELETE FROM attempts WHERE expires_at <= ?1",
            "DELETE FROM attempt_claims WHERE expires_at <= ?1",
            "DELETE FROM oauth_states WHERE expires_at <= ?1",
            "DELETE FROM mfa_pending WHERE expires_at <= ?1",
        ] {
            n += self.execute(sql, args![now])?;
        }
        Ok(n)
    }
}
