//! [`SqliteStore`]: the embedded default store (rusqlite + r2d2, WAL mode).
//!
//! Every connection has foreign keys on, a busy timeout, and a statement cache, so each
//! statement is prepared once per connection and reused. Writes run in `BEGIN IMMEDIATE`
//! transactions: SQLite has one writer at a time, and taking the write lock up front avoids
//! the deadlock of two readers upgrading at once.

use super::migrations;
use super::{
    AttemptLimit, CodePurpose, CodeRecord, Credentials, LinkOutcome, NewOAuthState,
    NewRegistration, NewSession, NewSocialLogin, OAuthStateRecord, OutboxEvent, ProfileUpdate,
    RecordedOutcome, Registration, Renewal, SessionInfo, SocialLink, SocialLoginOutcome,
    SocialSessionRecord, Store, StoreError, UserKey, UserRecord,
};
use crate::crypto::Digest;
use crate::idempotency::OutcomeKey;
use crate::store::{DeletionAck, DeletionRecord, OutcomeWork};
use authq_protocol::ops::{ProfileMode, UserState};
use r2d2::{ManageConnection, Pool, PooledConnection};
use rusqlite::config::DbConfig;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Savepoint, Transaction, TransactionBehavior,
    params,
};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Statements cached per connection (more than the store uses, so none is ever re-prepared).
const STATEMENT_CACHE: usize = 64;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Pool<Manager>,
    inline_readers: Arc<InlineReaders>,
}

/// Read-only connections for [`Store::check_session_now`], which runs on the async executor:
/// one per executor thread, so one is free whenever an executor thread asks, each with no busy
/// timeout (a busy database sends the call to the blocking pool instead of stalling the
/// executor).
#[derive(Debug, Default)]
struct InlineReaders(Mutex<Vec<Connection>>);

impl InlineReaders {
    fn open(manager: &Manager, count: usize) -> Result<Self, rusqlite::Error> {
        let mut readers = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = manager.connect()?;
            conn.busy_timeout(Duration::ZERO)?;
            conn.pragma_update(None, "query_only", true)?;
            readers.push(conn);
        }
        Ok(Self(Mutex::new(readers)))
    }

    /// An idle reader, if one is free. The lock guards a `Vec` push or pop (nanoseconds), so
    /// taking it never stalls the executor; a `try_lock` here sent every collision between the
    /// two executor threads to the blocking pool.
    fn take(&self) -> Option<Connection> {
        self.0.lock().ok()?.pop()
    }

    fn give_back(&self, conn: Connection) {
        // Poisoning cannot happen (nothing panics while holding the lock); a reader that cannot
        // be given back is simply closed.
        if let Ok(mut readers) = self.0.lock() {
            readers.push(conn);
        }
    }
}

/// Opens connections configured for authq.
#[derive(Debug)]
struct Manager {
    path: PathBuf,
}

impl ManageConnection for Manager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // FULL: a commit is on disk before the request is acknowledged, so an acknowledged
        // effect survives a power loss, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The query planner stability guarantee: a cached statement keeps its plan whatever is
        // bound to it. Without it, the bundled SQLite (built with STAT4) re-prepares a statement
        // on every new value bound to a parameter compared with an indexed column: `check`
        // parsed and planned its query again on every call (a quarter of the worker's CPU).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.execute_batch("")
    }

    fn has_broken(&self, _conn: &mut Connection) -> bool {
        false
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, switches it to WAL mode and applies
    /// the migrations. `pool_size` bounds concurrent connections.
    pub fn open(path: &Path, pool_size: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let manager = Manager {
            path: path.to_owned(),
        };
        let mut first = manager.connect()?;
        // WAL is a property of the file: readers never block the writer, and vice versa.
        let mode: String =
            first.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch the database to WAL mode (journal_mode is {mode})"
            )));
        }
        migrations::apply(&mut first)?;
        drop(first);
        let executor_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let inline_readers = Arc::new(InlineReaders::open(&manager, executor_threads)?);
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Self {
            pool,
            inline_readers,
        })
    }

    /// A connection: the one of the enclosing [`Store::with_outcome`] transaction when there is
    /// one on this thread, else one from the pool.
    fn conn(&self) -> Result<Conn, StoreError> {
        match AMBIENT.with(|a| a.borrow_mut().take()) {
            Some(conn) => Ok(Conn::Ambient(Some(conn))),
            None => Ok(Conn::Pooled(self.pool.get()?)),
        }
    }
}

thread_local! {
    /// The connection of a [`Store::with_outcome`] transaction in progress on this thread: the
    /// store methods its work calls run inside that transaction (as savepoints).
    static AMBIENT: RefCell<Option<PooledConnection<Manager>>> = const { RefCell::new(None) };
}

/// A connection a store method works on.
enum Conn {
    Pooled(PooledConnection<Manager>),
    /// Borrowed from [`AMBIENT`]; given back on drop.
    Ambient(Option<PooledConnection<Manager>>),
}

impl Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Self::Pooled(c) => c,
            Self::Ambient(c) => c
                .as_ref()
                .unwrap_or_else(|| unreachable!("taken only on drop")),
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            Self::Pooled(c) => c,
            Self::Ambient(c) => c
                .as_mut()
                .unwrap_or_else(|| unreachable!("taken only on drop")),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Self::Ambient(c) = self
            && let Some(c) = c.take()
        {
            AMBIENT.with(|a| *a.borrow_mut() = Some(c));
        }
    }
}

/// A write transaction: `BEGIN IMMEDIATE` on its own, a savepoint inside a
/// [`Store::with_outcome`] transaction.
enum Tx<'c> {
    Top(Transaction<'c>),
    Nested(Savepoint<'c>),
}

fn begin(conn: &mut Connection) -> rusqlite::Result<Tx<'_>> {
    if conn.is_autocommit() {
        Ok(Tx::Top(conn.transaction_with_behavior(
            TransactionBehavior::Immediate,
        )?))
    } else {
        Ok(Tx::Nested(conn.savepoint()?))
    }
}

impl Tx<'_> {
    fn commit(self) -> rusqlite::Result<()> {
        match self {
            Self::Top(t) => t.commit(),
            Self::Nested(s) => s.commit(),
        }
    }
}

impl Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Self::Top(t) => t,
            Self::Nested(s) => s,
        }
    }
}

/// Hands a connection in a transaction to the store methods called on this thread; takes it
/// back (rolling back if nobody committed, e.g. on a panic) when dropped.
struct AmbientGuard;

impl AmbientGuard {
    fn enter(conn: PooledConnection<Manager>) -> Self {
        AMBIENT.with(|a| *a.borrow_mut() = Some(conn));
        Self
    }

    fn leave(self) -> Option<PooledConnection<Manager>> {
        let conn = AMBIENT.with(|a| a.borrow_mut().take());
        std::mem::forget(self);
        conn
    }
}

impl Drop for AmbientGuard {
    fn drop(&mut self) {
        if let Some(conn) = AMBIENT.with(|a| a.borrow_mut().take()) {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

fn deletion_on(conn: &Connection, user_id: &str) -> rusqlite::Result<Option<DeletionRecord>> {
    let Some((requested_at, deadline, completed_at)) = conn
        .prepare_cached(
            "SELECT requested_at, deadline, completed_at FROM deletions WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
    else {
        return Ok(None);
    };
    let mut acknowledged = Vec::new();
    let mut pending = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT service, acknowledged_at IS NOT NULL FROM deletion_services
         WHERE user_id = ?1 ORDER BY service",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
    })?;
    for row in rows {
        let (service, done) = row?;
        if done {
            acknowledged.push(service);
        } else {
            pending.push(service);
        }
    }
    Ok(Some(DeletionRecord {
        user_id: user_id.to_owned(),
        requested_at,
        deadline,
        acknowledged,
        pending,
        completed_at,
    }))
}

fn find_outcome_on(
    conn: &Connection,
    caller: &str,
    message_id: &str,
    recorded_since: i64,
) -> rusqlite::Result<Option<RecordedOutcome>> {
    conn.prepare_cached(
        "SELECT request_digest, sealed FROM outcomes
         WHERE caller = ?1 AND message_id = ?2 AND recorded_at >= ?3",
    )?
    .query_row(params![caller, message_id, recorded_since], |r| {
        Ok(RecordedOutcome {
            request_digest: r.get(0)?,
            sealed: r.get(1)?,
        })
    })
    .optional()
}

fn user_from_row(row: &Row<'_>, offset: usize) -> rusqlite::Result<UserRecord> {
    let state: String = row.get(offset + 2)?;
    Ok(UserRecord {
        id: row.get(offset)?,
        email: row.get(offset + 1)?,
        state: UserState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                offset + 2,
                rusqlite::types::Type::Text,
                format!("unknown user state {state:?}").into(),
            )
        })?,
        profile: row.get(offset + 3)?,
    })
}

fn digest_from_row(row: &Row<'_>, idx: usize) -> rusqlite::Result<Digest> {
    let bytes: Vec<u8> = row.get(idx)?;
    bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            "a stored digest is not 32 bytes".into(),
        )
    })
}

fn find_user(conn: &Connection, key: UserKey<'_>) -> rusqlite::Result<Option<UserRecord>> {
    let (sql, value) = match key {
        UserKey::Id(id) => (
            "SELECT id, email, state, profile FROM users WHERE id = ?1",
            id,
        ),
        UserKey::EmailKey(k) => (
            "SELECT id, email, state, profile FROM users WHERE email_key = ?1",
            k,
        ),
    };
    conn.prepare_cached(sql)?
        .query_row([value], |r| user_from_row(r, 0))
        .optional()
}

fn user_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<UserRecord>> {
    find_user(conn, UserKey::Id(id))
}

/// Consumes a live code with exactly this digest. `true` if one was consumed.
fn consume_code(
    conn: &Connection,
    user_id: &str,
    purpose: CodePurpose,
    digest: &Digest,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "DELETE FROM codes
             WHERE user_id = ?1 AND purpose = ?2 AND digest = ?3 AND expires_at > ?4",
        )?
        .execute(params![user_id, purpose.as_str(), &digest[..], now])?;
    Ok(n == 1)
}

fn end_user_sessions(conn: &Connection, user_id: &str) -> rusqlite::Result<u64> {
    let n = conn
        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(n as u64)
}

/// The condition that makes session `s` live (digest `?1`, now `?2`): a macro, so each query
/// is one literal (no string is built per call).
macro_rules! live_session {
    () => {
        "s.token_digest = ?1 AND s.expires_at > ?2 AND s.absolute_expires_at > ?2"
    };
}

/// `check`'s look-up: the live session by digest, with its user.
const CHECK_SESSION: &str = concat!(
    "SELECT u.id, u.email, u.state, u.profile, s.expires_at, s.absolute_expires_at,
            u.session_epoch
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE ",
    live_session!(),
    ""
);

/// A live session as read, before any renewal.
struct LiveSession {
    user: UserRecord,
    expires_at: i64,
    absolute_expires_at: i64,
    session_epoch: u64,
}

impl LiveSession {
    /// The new idle expiry when the session is due for renewal at `now`, else `None`.
    fn renewal(&self, now: i64, renewal: Renewal) -> Option<i64> {
        let due = now >= self.expires_at.saturating_sub(renewal.renew_window_ms);
        let renewed_to = now
            .saturating_add(renewal.idle_timeout_ms)
            .min(self.absolute_expires_at);
        (self.user.state == UserState::Active && due && renewed_to > self.expires_at)
            .then_some(renewed_to)
    }

    fn unrenewed(self) -> SessionInfo {
        SessionInfo {
            user: self.user,
            expires_at: self.expires_at,
            renewed: false,
            session_epoch: self.session_epoch,
        }
    }
}

/// The live session with this digest at `now`, with its user.
fn live_session(
    conn: &Connection,
    digest: &Digest,
    now: i64,
) -> Result<Option<LiveSession>, StoreError> {
    Ok(conn
        .prepare_cached(CHECK_SESSION)?
        .query_row(params![&digest[..], now], |r| {
            Ok(LiveSession {
                user: user_from_row(r, 0)?,
                expires_at: r.get(4)?,
                absolute_expires_at: r.get(5)?,
                session_epoch: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            })
        })
        .optional()?)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Store for SqliteStore {
    fn register(&self, new: &NewRegistration<'_>) -> Result<Registration, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let existing: Option<(String, String)> = tx
            .prepare_cached("SELECT id, state FROM users WHERE email_key = ?1")?
            .query_row([new.email_key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let outcome = match existing {
            Some((_, state)) if state != UserState::Pending.as_str() => {
                return Ok(Registration::Exists);
            }
            Some((user_id, _)) => {
                if let Some(profile) = new.profile {
                    tx.prepare_cached(
                        "UPDATE users SET profile = ?2, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![user_id, profile, new.now])?;
                }
                Registration::CodeReissued { user_id }
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO users (id, email, email_key, profile, state, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                )?
                .execute(params![
                    new.user_id,
                    new.email,
                    new.email_key,
                    new.profile.unwrap_or("{}"),
                    new.now
                ])?;
                Registration::Created {
                    user_id: new.user_id.to_owned(),
                }
            }
        };
        let (Registration::Created { user_id } | Registration::CodeReissued { user_id }) = &outcome
        else {
            return Ok(outcome);
        };
        tx.prepare_cached(
            "INSERT OR REPLACE INTO codes (user_id, purpose, digest, expires_at, attempts, created_at)
             VALUES (?1, 'confirm', ?2, ?3, 0, ?4)",
        )?
        .execute(params![
            user_id,
            &new.code_digest[..],
            new.code_expires_at,
            new.now
        ])?;
        tx.commit()?;
        Ok(outcome)
    }

    fn find_code(
        &self,
        email_key: &str,
        purpose: CodePurpose,
        now: i64,
    ) -> Result<Option<CodeRecord>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .prepare_cached(
                "SELECT c.user_id, c.digest, c.expires_at
                 FROM codes c JOIN users u ON u.id = c.user_id
                 WHERE u.email_key = ?1 AND c.purpose = ?2 AND u.state = ?3
                   AND c.expires_at > ?4",
            )?
            .query_row(
                params![
                    email_key,
                    purpose.as_str(),
                    purpose.required_state().as_str(),
                    now
                ],
                |r| {
                    Ok(CodeRecord {
                        user_id: r.get(0)?,
                        digest: digest_from_row(r, 1)?,
                        expires_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn code_failed(
        &self,
        user_id: &str,
        purpose: CodePurpose,
        digest: &Digest,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        tx.prepare_cached(
            "UPDATE codes SET attempts = attempts + 1
             WHERE user_id = ?1 AND purpose = ?2 AND digest = ?3",
        )?
        .execute(params![user_id, purpose.as_str(), &digest[..]])?;
        tx.prepare_cached(
            "DELETE FROM codes WHERE user_id = ?1 AND purpose = ?2 AND attempts >= ?3",
        )?
        .execute(params![user_id, purpose.as_str(), max_attempts])?;
        tx.commit()?;
        Ok(())
    }

    fn confirm_registration(
        &self,
        user_id: &str,
        code: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        if !consume_code(&tx, user_id, CodePurpose::Confirm, code, now)? {
            return Ok(None);
        }
        let activated = tx
            .prepare_cached(
                "UPDATE users SET password_hash = ?2, state = 'active', updated_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![user_id, password_hash, now])?;
        if activated != 1 {
            return Ok(None); // dropping the transaction rolls the consumption back
        }
        let user = user_by_id(&tx, user_id)?;
        tx.commit()?;
        Ok(user)
    }

    fn credentials(&self, email_key: &str) -> Result<Option<Credentials>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .prepare_cached(
                "SELECT id, email, state, profile, password_hash FROM users WHERE email_key = ?1",
            )?
            .query_row([email_key], |r| {
                Ok(Credentials {
                    user: user_from_row(r, 0)?,
                    password_hash: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn create_session(&self, new: &NewSession<'_>) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO sessions (token_digest, user_id, created_at, expires_at, absolute_expires_at)
                 SELECT ?1, id, ?3, ?4, ?5 FROM users WHERE id = ?2 AND state = 'active'",
            )?
            .execute(params![
                &new.digest[..],
                new.user_id,
                new.now,
                new.expires_at,
                new.absolute_expires_at
            ])?;
        if inserted != 1 {
            return Ok(None);
        }
        let user = user_by_id(&tx, new.user_id)?;
        tx.commit()?;
        Ok(user)
    }

    fn check_session(
        &self,
        digest: &Digest,
        now: i64,
        renewal: Renewal,
    ) -> Result<Option<SessionInfo>, StoreError> {
        let conn = self.conn()?;
        let Some(found) = live_session(&conn, digest, now)? else {
            return Ok(None);
        };
        match found.renewal(now, renewal) {
            None => Ok(Some(found.unrenewed())),
            Some(renewed_to) => {
                // Conditional, so concurrent renewals only ever move the expiry forward.
                let n = conn
                    .prepare_cached(
                        "UPDATE sessions SET expires_at = ?2 WHERE token_digest = ?1 AND expires_at < ?2",
                    )?
                    .execute(params![&digest[..], renewed_to])?;
                Ok(Some(SessionInfo {
                    user: found.user,
                    expires_at: renewed_to,
                    renewed: n == 1,
                    session_epoch: found.session_epoch,
                }))
            }
        }
    }

    fn check_session_now(
        &self,
        digest: &Digest,
        now: i64,
        renewal: Renewal,
    ) -> Option<Result<Option<SessionInfo>, StoreError>> {
        let conn = self.inline_readers.take()?;
        let found = live_session(&conn, digest, now);
        self.inline_readers.give_back(conn);
        match found {
            // Busy (a writer is checkpointing, say): never wait on the executor.
            Err(StoreError::Database(e)) if is_busy(&e) => None,
            Err(e) => Some(Err(e)),
            Ok(None) => Some(Ok(None)),
            // A renewal is a write: the blocking pool does it (and reads again).
            Ok(Some(found)) if found.renewal(now, renewal).is_some() => None,
            Ok(Some(found)) => Some(Ok(Some(found.unrenewed()))),
        }
    }

    fn session_credentials(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<Credentials>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .prepare_cached(concat!(
                "SELECT u.id, u.email, u.state, u.profile, u.password_hash
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE ",
                live_session!(),
                ""
            ))?
            .query_row(params![&digest[..], now], |r| {
                Ok(Credentials {
                    user: user_from_row(r, 0)?,
                    password_hash: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn end_session(&self, digest: &Digest, now: i64) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "DELETE FROM sessions
                 WHERE token_digest = ?1 AND expires_at > ?2 AND absolute_expires_at > ?2",
            )?
            .execute(params![&digest[..], now])?;
        Ok(n == 1)
    }

    fn end_all_sessions(&self, digest: &Digest, now: i64) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let user_id: Option<String> = tx
            .prepare_cached(concat!(
                "SELECT s.user_id FROM sessions s WHERE ",
                live_session!(),
                ""
            ))?
            .query_row(params![&digest[..], now], |r| r.get(0))
            .optional()?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        let n = end_user_sessions(&tx, &user_id)?;
        tx.commit()?;
        Ok(Some(n))
    }

    fn start_reset(
        &self,
        email_key: &str,
        digest: &Digest,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let n = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO codes (user_id, purpose, digest, expires_at, attempts, created_at)
                 SELECT id, 'reset', ?2, ?3, 0, ?4 FROM users WHERE email_key = ?1 AND state = 'active'",
            )?
            .execute(params![email_key, &digest[..], expires_at, now])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn complete_reset(
        &self,
        user_id: &str,
        token: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<(UserRecord, u64)>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        if !consume_code(&tx, user_id, CodePurpose::Reset, token, now)? {
            return Ok(None);
        }
        let updated = tx
            .prepare_cached(
                "UPDATE users SET password_hash = ?2, updated_at = ?3
                 WHERE id = ?1 AND state = 'active'",
            )?
            .execute(params![user_id, password_hash, now])?;
        if updated != 1 {
            return Ok(None);
        }
        let ended = end_user_sessions(&tx, user_id)?;
        let user = user_by_id(&tx, user_id)?;
        tx.commit()?;
        Ok(user.map(|u| (u, ended)))
    }

    fn change_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        keep: &Digest,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let updated = tx
            .prepare_cached(
                "UPDATE users SET password_hash = ?3, updated_at = ?4
                 WHERE id = ?1 AND password_hash = ?2 AND state = 'active'",
            )?
            .execute(params![user_id, old_hash, new_hash, now])?;
        if updated != 1 {
            return Ok(None);
        }
        let ended = tx
            .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND token_digest <> ?2")?
            .execute(params![user_id, &keep[..]])?;
        tx.commit()?;
        Ok(Some(ended as u64))
    }

    fn set_profile(
        &self,
        user_id: &str,
        profile: &str,
        mode: ProfileMode,
        max_bytes: usize,
        now: i64,
    ) -> Result<ProfileUpdate, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        // SQLite's json_patch() is RFC 7396 JSON Merge Patch; json() minifies a replacement.
        let sql = match mode {
            ProfileMode::Merge => "SELECT json_patch(profile, ?2) FROM users WHERE id = ?1",
            ProfileMode::Replace => "SELECT json(?2) FROM users WHERE id = ?1",
        };
        let new_profile: Option<String> = tx
            .prepare_cached(sql)?
            .query_row(params![user_id, profile], |r| r.get(0))
            .optional()?;
        let Some(new_profile) = new_profile else {
            return Ok(ProfileUpdate::NotFound);
        };
        if new_profile.len() > max_bytes {
            return Ok(ProfileUpdate::TooLarge);
        }
        tx.prepare_cached("UPDATE users SET profile = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![user_id, new_profile, now])?;
        let user = user_by_id(&tx, user_id)?;
        tx.commit()?;
        Ok(user.map_or(ProfileUpdate::NotFound, ProfileUpdate::Updated))
    }

    fn delete_user(&self, user: UserKey<'_>) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let Some(found) = find_user(&tx, user)? else {
            return Ok(None);
        };
        // Sessions and codes go with the user (ON DELETE CASCADE).
        tx.prepare_cached("DELETE FROM users WHERE id = ?1")?
            .execute([&found.id])?;
        tx.commit()?;
        Ok(Some(found.id))
    }

    fn suspend(
        &self,
        user: UserKey<'_>,
        now: i64,
    ) -> Result<Option<(UserRecord, u64)>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let Some(found) = find_user(&tx, user)? else {
            return Ok(None);
        };
        tx.prepare_cached(
            "UPDATE users SET state = 'suspended', updated_at = ?2
             WHERE id = ?1 AND state <> 'suspended'",
        )?
        .execute(params![found.id, now])?;
        let ended = end_user_sessions(&tx, &found.id)?;
        tx.prepare_cached("DELETE FROM codes WHERE user_id = ?1")?
            .execute([&found.id])?;
        let user = user_by_id(&tx, &found.id)?;
        tx.commit()?;
        Ok(user.map(|u| (u, ended)))
    }

    fn unsuspend(&self, user: UserKey<'_>, now: i64) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let Some(found) = find_user(&tx, user)? else {
            return Ok(None);
        };
        tx.prepare_cached(
            "UPDATE users
             SET state = CASE
                     WHEN password_hash IS NULL
                      AND NOT EXISTS (SELECT 1 FROM social_accounts a WHERE a.user_id = users.id)
                     THEN 'pending' ELSE 'active' END,
                 updated_at = ?2
             WHERE id = ?1 AND state = 'suspended'",
        )?
        .execute(params![found.id, now])?;
        let user = user_by_id(&tx, &found.id)?;
        tx.commit()?;
        Ok(user)
    }

    fn claim_attempts(&self, limits: &[AttemptLimit<'_>], now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        for limit in limits {
            let current: Option<(i64, i64)> = tx
                .prepare_cached("SELECT count, expires_at FROM attempts WHERE key = ?1")?
                .query_row([limit.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match current {
                Some((count, expires_at)) if expires_at > now => {
                    if count >= i64::from(limit.max) {
                        // Locked: refuse without counting, and undo nothing (no write yet is
                        // kept: the transaction is dropped).
                        return Ok(false);
                    }
                    tx.prepare_cached("UPDATE attempts SET count = count + 1 WHERE key = ?1")?
                        .execute([limit.key])?;
                }
                _ => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO attempts (key, count, expires_at) VALUES (?1, 1, ?2)",
                    )?
                    .execute(params![limit.key, now.saturating_add(limit.window_ms)])?;
                }
            }
        }
        tx.commit()?;
        Ok(true)
    }

    fn settle_attempts(&self, clear: &[&str], release: &[&str]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        for key in clear {
            tx.prepare_cached("DELETE FROM attempts WHERE key = ?1")?
                .execute([key])?;
        }
        for key in release {
            tx.prepare_cached(
                "UPDATE attempts SET count = count - 1 WHERE key = ?1 AND count > 0",
            )?
            .execute([key])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn rehash_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "UPDATE users SET password_hash = ?3, updated_at = ?4
                 WHERE id = ?1 AND password_hash = ?2",
            )?
            .execute(params![user_id, old_hash, new_hash, now])?;
        Ok(n == 1)
    }

    fn find_outcome(
        &self,
        caller: &str,
        message_id: &str,
        recorded_since: i64,
    ) -> Result<Option<RecordedOutcome>, StoreError> {
        let conn = self.conn()?;
        Ok(find_outcome_on(&conn, caller, message_id, recorded_since)?)
    }

    fn with_outcome(
        &self,
        key: Option<&OutcomeKey>,
        now: i64,
        recorded_since: i64,
        work: &mut OutcomeWork<'_>,
    ) -> Result<Option<RecordedOutcome>, StoreError> {
        let conn = self.pool.get()?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let found = match key {
            None => Ok(None),
            Some(key) => conn
                .prepare_cached(
                    "DELETE FROM outcomes WHERE caller = ?1 AND message_id = ?2 AND recorded_at < ?3",
                )
                .and_then(|mut stale| {
                    stale.execute(params![key.caller, key.message_id, recorded_since])
                })
                .and_then(|_| find_outcome_on(&conn, &key.caller, &key.message_id, recorded_since)),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        };
        if found.is_some() {
            // A concurrent delivery of the same request got there first: its outcome stands.
            conn.execute_batch("ROLLBACK")?;
            return Ok(found);
        }
        let guard = AmbientGuard::enter(conn);
        let worked = work(self);
        let conn = guard.leave().ok_or_else(|| {
            StoreError::Corrupt("the outcome transaction's connection went missing".into())
        })?;
        let recorded = worked.and_then(|sealed| {
            let Some(key) = key else { return Ok(()) };
            conn.prepare_cached(
                "INSERT INTO outcomes (caller, message_id, request_digest, sealed, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key.caller,
                key.message_id,
                &key.request_digest[..],
                sealed,
                now
            ])?;
            Ok(())
        });
        match recorded {
            Ok(()) => {
                conn.execute_batch("COMMIT")?;
                Ok(None)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn enqueue_event(&self, routing_key: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO outbox (routing_key, sealed, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![routing_key, sealed, now])?;
        Ok(())
    }

    fn claim_events(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let held: i64 = tx
            .prepare_cached("SELECT count(*) FROM outbox WHERE claimed_until > ?1")?
            .query_row([now], |r| r.get(0))?;
        if held > 0 {
            return Ok(Vec::new());
        }
        let events = tx
            .prepare_cached("SELECT seq, routing_key, sealed FROM outbox ORDER BY seq LIMIT ?1")?
            .query_map([limit], |r| {
                Ok(OutboxEvent {
                    seq: r.get(0)?,
                    routing_key: r.get(1)?,
                    sealed: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = events.last() {
            tx.prepare_cached("UPDATE outbox SET claimed_until = ?1 WHERE seq <= ?2")?
                .execute(params![now.saturating_add(lease_ms), last.seq])?;
        }
        tx.commit()?;
        Ok(events)
    }

    fn delete_events(&self, up_to_seq: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
            .execute([up_to_seq])?;
        Ok(())
    }

    fn begin_deletion(
        &self,
        user_id: &str,
        services: &[String],
        now: i64,
        deadline: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO deletions (user_id, requested_at, deadline) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![user_id, now, deadline])?;
        for service in services {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deletion_services (user_id, service) VALUES (?1, ?2)",
            )?
            .execute(params![user_id, service])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn acknowledge_deletion(
        &self,
        user_id: &str,
        service: &str,
        now: i64,
    ) -> Result<DeletionAck, StoreError> {
        let conn = self.conn()?;
        let Some(_) = deletion_on(&conn, user_id)? else {
            return Ok(DeletionAck::NoDeletion);
        };
        let n = conn
            .prepare_cached(
                "UPDATE deletion_services SET acknowledged_at = coalesce(acknowledged_at, ?3)
                 WHERE user_id = ?1 AND service = ?2",
            )?
            .execute(params![user_id, service, now])?;
        if n == 0 {
            return Ok(DeletionAck::UnknownService);
        }
        Ok(deletion_on(&conn, user_id)?.map_or(DeletionAck::NoDeletion, DeletionAck::Recorded))
    }

    fn deletion(&self, user_id: &str) -> Result<Option<DeletionRecord>, StoreError> {
        let conn = self.conn()?;
        Ok(deletion_on(&conn, user_id)?)
    }

    fn complete_deletion(&self, user_id: &str, now: i64) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "UPDATE deletions SET completed_at = ?2 WHERE user_id = ?1 AND completed_at IS NULL",
            )?
            .execute(params![user_id, now])?;
        Ok(n == 1)
    }

    fn overdue_deletions(&self, now: i64) -> Result<Vec<DeletionRecord>, StoreError> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached(
                "SELECT user_id FROM deletions WHERE completed_at IS NULL AND deadline <= ?1",
            )?
            .query_map([now], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut overdue = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = deletion_on(&conn, &id)? {
                overdue.push(d);
            }
        }
        Ok(overdue)
    }

    fn bump_session_epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let epoch: Option<i64> = conn
            .prepare_cached(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?1
                 RETURNING session_epoch",
            )?
            .query_row([user_id], |r| r.get(0))
            .optional()?;
        Ok(epoch.map_or(0, |e| u64::try_from(e).unwrap_or(0)))
    }

    fn suspended_users(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached("SELECT id FROM users WHERE state = 'suspended'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    fn purge_outcomes(&self, recorded_before: i64) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached("DELETE FROM outcomes WHERE recorded_at < ?1")?
            .execute([recorded_before])?;
        Ok(n as u64)
    }

    fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let sessions = tx
            .prepare_cached(
                "DELETE FROM sessions WHERE expires_at <= ?1 OR absolute_expires_at <= ?1",
            )?
            .execute([now])?;
        let codes = tx
            .prepare_cached("DELETE FROM codes WHERE expires_at <= ?1")?
            .execute([now])?;
        let attempts = tx
            .prepare_cached("DELETE FROM attempts WHERE expires_at <= ?1")?
            .execute([now])?;
        let states = tx
            .prepare_cached("DELETE FROM oauth_states WHERE expires_at <= ?1")?
            .execute([now])?;
        tx.commit()?;
        Ok((sessions + codes + states + attempts) as u64)
    }

    fn create_oauth_state(&self, new: &NewOAuthState<'_>) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO oauth_states
               (state_digest, provider, redirect_uri, verifier_sealed, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &new.digest[..],
            new.provider,
            new.redirect_uri,
            new.verifier_sealed,
            new.expires_at,
            new.now
        ])?;
        Ok(())
    }

    fn take_oauth_state(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<OAuthStateRecord>, StoreError> {
        let conn = self.conn()?;
        // One statement: of concurrent uses of a state exactly one deletes (and gets) it.
        let found = conn
            .prepare_cached(
                "DELETE FROM oauth_states WHERE state_digest = ?1
                 RETURNING provider, redirect_uri, verifier_sealed, expires_at",
            )?
            .query_row(params![&digest[..]], |r| {
                Ok((
                    OAuthStateRecord {
                        provider: r.get(0)?,
                        redirect_uri: r.get(1)?,
                        verifier_sealed: r.get(2)?,
                    },
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        Ok(found.and_then(|(record, expires_at)| (expires_at > now).then_some(record)))
    }

    fn social_login(&self, login: &NewSocialLogin<'_>) -> Result<SocialLoginOutcome, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let linked: Option<String> = tx
            .prepare_cached(
                "SELECT user_id FROM social_accounts WHERE provider = ?1 AND subject = ?2",
            )?
            .query_row(params![login.provider, login.subject], |r| r.get(0))
            .optional()?;
        let (user_id, created) = if let Some(user_id) = linked {
            tx.prepare_cached(
                "UPDATE social_accounts SET email = ?3, updated_at = ?4
                 WHERE provider = ?1 AND subject = ?2",
            )?
            .execute(params![
                login.provider,
                login.subject,
                login.email.map(|e| e.address),
                login.now
            ])?;
            (user_id, false)
        } else {
            let existing = match login.email {
                Some(e) => find_user(&tx, UserKey::EmailKey(e.key))?,
                None => None,
            };
            let user_id = match existing {
                Some(user) => {
                    let verified = login.email.is_some_and(|e| e.verified);
                    if !(verified && login.link_verified_email) {
                        return Ok(SocialLoginOutcome::LinkRequired);
                    }
                    if user.state == UserState::Pending {
                        // The provider proved the email: the pending registration is complete.
                        tx.prepare_cached(
                            "UPDATE users SET state = 'active', updated_at = ?2 WHERE id = ?1",
                        )?
                        .execute(params![user.id, login.now])?;
                        tx.prepare_cached(
                            "DELETE FROM codes WHERE user_id = ?1 AND purpose = 'confirm'",
                        )?
                        .execute([&user.id])?;
                    }
                    user.id
                }
                None => {
                    // Only a verified email is claimed for the new user: an unverified one
                    // would let whoever controls the provider account squat (and later reset
                    // into) an address that is not theirs.
                    let (email, key) = match login.email {
                        Some(e) if e.verified => (e.address.to_owned(), e.key.to_owned()),
                        _ => (
                            String::new(),
                            format!("social:{}:{}", login.provider, login.subject),
                        ),
                    };
                    tx.prepare_cached(
                        "INSERT INTO users (id, email, email_key, profile, state, created_at, updated_at)
                         VALUES (?1, ?2, ?3, '{}', 'active', ?4, ?4)",
                    )?
                    .execute(params![login.new_user_id, email, key, login.now])?;
                    login.new_user_id.to_owned()
                }
            };
            tx.prepare_cached(
                "INSERT INTO social_accounts (provider, subject, user_id, email, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?
            .execute(params![
                login.provider,
                login.subject,
                user_id,
                login.email.map(|e| e.address),
                login.now
            ])?;
            let created = user_id == login.new_user_id;
            (user_id, created)
        };
        let Some(user) = user_by_id(&tx, &user_id)? else {
            return Err(StoreError::Corrupt(
                "a social account without its user".into(),
            ));
        };
        if user.state == UserState::Suspended {
            return Ok(SocialLoginOutcome::Suspended);
        }
        // The provider's profile fields, merged in unless the result would be too large.
        tx.prepare_cached(
            "UPDATE users SET profile = json_patch(profile, ?2), updated_at = ?3
             WHERE id = ?1 AND length(json_patch(profile, ?2)) <= ?4",
        )?
        .execute(params![
            user_id,
            login.profile_patch,
            login.now,
            i64::try_from(login.max_profile_bytes).unwrap_or(i64::MAX)
        ])?;
        tx.prepare_cached(
            "INSERT INTO sessions (token_digest, user_id, created_at, expires_at, absolute_expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            &login.session_digest[..],
            user_id,
            login.now,
            login.expires_at,
            login.absolute_expires_at
        ])?;
        tx.prepare_cached(
            "INSERT INTO social_sessions
               (token_digest, provider, subject, verified_at, recheck_at, tokens_sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &login.session_digest[..],
            login.provider,
            login.subject,
            login.now,
            login.recheck_at,
            login.tokens_sealed
        ])?;
        let user = user_by_id(&tx, &user_id)?
            .ok_or_else(|| StoreError::Corrupt("the user vanished".into()))?;
        tx.commit()?;
        Ok(SocialLoginOutcome::LoggedIn { user, created })
    }

    fn link_social(&self, link: &SocialLink<'_>) -> Result<LinkOutcome, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        let user_id: Option<String> = tx
            .prepare_cached(concat!(
                "SELECT s.user_id FROM sessions s WHERE ",
                live_session!(),
                ""
            ))?
            .query_row(params![&link.session_digest[..], link.now], |r| r.get(0))
            .optional()?;
        let Some(user) = user_id
            .map(|id| user_by_id(&tx, &id))
            .transpose()?
            .flatten()
        else {
            return Ok(LinkOutcome::SessionInvalid);
        };
        match user.state {
            UserState::Active => {}
            UserState::Suspended => return Ok(LinkOutcome::Suspended),
            UserState::Pending => return Ok(LinkOutcome::SessionInvalid),
        }
        let linked: Option<String> = tx
            .prepare_cached(
                "SELECT user_id FROM social_accounts WHERE provider = ?1 AND subject = ?2",
            )?
            .query_row(params![link.provider, link.subject], |r| r.get(0))
            .optional()?;
        match linked {
            Some(other) if other != user.id => return Ok(LinkOutcome::AlreadyLinked),
            Some(_) => {
                tx.prepare_cached(
                    "UPDATE social_accounts SET email = ?3, updated_at = ?4
                     WHERE provider = ?1 AND subject = ?2",
                )?
                .execute(params![
                    link.provider,
                    link.subject,
                    link.email,
                    link.now
                ])?;
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO social_accounts (provider, subject, user_id, email, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )?
                .execute(params![link.provider, link.subject, user.id, link.email, link.now])?;
            }
        }
        tx.commit()?;
        Ok(LinkOutcome::Linked(user))
    }

    fn social_session_due(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<SocialSessionRecord>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .prepare_cached(
                "SELECT provider, subject, tokens_sealed FROM social_sessions
                 WHERE token_digest = ?1 AND recheck_at IS NOT NULL AND recheck_at <= ?2",
            )?
            .query_row(params![&digest[..], now], |r| {
                Ok(SocialSessionRecord {
                    provider: r.get(0)?,
                    subject: r.get(1)?,
                    tokens_sealed: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn social_session_rechecked(
        &self,
        digest: &Digest,
        verified_at: Option<i64>,
        next_recheck_at: i64,
        tokens_sealed: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "UPDATE social_sessions
             SET verified_at = COALESCE(?2, verified_at),
                 recheck_at = ?3,
                 tokens_sealed = COALESCE(?4, tokens_sealed)
             WHERE token_digest = ?1",
        )?
        .execute(params![
            &digest[..],
            verified_at,
            next_recheck_at,
            tokens_sealed
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_statements_are_never_prepared_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), 1).unwrap();
        let renewal = Renewal {
            renew_window_ms: 0,
            idle_timeout_ms: 0,
        };
        for i in 0..20u8 {
            assert!(
                store
                    .check_session(&[i; 32], i64::from(i), renewal)
                    .unwrap()
                    .is_none()
            );
        }
        let conn = store.pool.get().unwrap();
        let stmt = conn.prepare_cached(CHECK_SESSION).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "a new digest must not make SQLite parse and plan the query again"
        );
    }

    #[test]
    fn the_executor_look_up_never_waits_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), 2).unwrap();
        store
            .pool
            .get()
            .unwrap()
            .execute_batch(
                "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
                     VALUES ('u', 'a@b.c', 'a@b.c', 'active', 0, 0);
                 INSERT INTO sessions VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 'u', 0, 1000, 5000);",
            )
            .unwrap();
        let live = [1u8; 32];
        let renewal = Renewal {
            renew_window_ms: 100,
            idle_timeout_ms: 1000,
        };
        // Live and not due: answered here, unrenewed.
        let found = store
            .check_session_now(&live, 10, renewal)
            .unwrap()
            .unwrap();
        assert_eq!((found.unwrap().expires_at, false), (1000, false));
        // Unknown: answered here too.
        assert!(
            store
                .check_session_now(&[2; 32], 10, renewal)
                .unwrap()
                .unwrap()
                .is_none()
        );
        // Due for renewal (a write): left to the blocking pool, which renews.
        assert!(store.check_session_now(&live, 950, renewal).is_none());
        let renewed = store.check_session(&live, 950, renewal).unwrap().unwrap();
        assert_eq!((renewed.expires_at, renewed.renewed), (1950, true));
        // Every inline reader taken: no wait, no answer.
        let taken: Vec<_> = std::iter::from_fn(|| store.inline_readers.take()).collect();
        assert!(!taken.is_empty());
        assert!(store.check_session_now(&live, 10, renewal).is_none());
        taken
            .into_iter()
            .for_each(|c| store.inline_readers.give_back(c));
        assert!(store.check_session_now(&live, 10, renewal).is_some());
    }

    #[test]
    fn oauth_states_are_single_use_expire_and_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), 2).unwrap();
        fn state(digest: &Digest, expires_at: i64) -> NewOAuthState<'_> {
            NewOAuthState {
                digest,
                provider: "p",
                redirect_uri: "https://app.example/cb",
                verifier_sealed: b"sealed",
                expires_at,
                now: 0,
            }
        }
        store.create_oauth_state(&state(&[1; 32], 100)).unwrap();
        let taken = store.take_oauth_state(&[1; 32], 50).unwrap().unwrap();
        assert_eq!(taken.provider, "p");
        assert_eq!(taken.verifier_sealed, b"sealed");
        assert!(
            store.take_oauth_state(&[1; 32], 50).unwrap().is_none(),
            "single use"
        );

        store.create_oauth_state(&state(&[2; 32], 100)).unwrap();
        assert!(
            store.take_oauth_state(&[2; 32], 100).unwrap().is_none(),
            "expired"
        );

        store.create_oauth_state(&state(&[3; 32], 100)).unwrap();
        assert_eq!(store.purge_expired(100).unwrap(), 1);
        assert!(
            store.take_oauth_state(&[3; 32], 0).unwrap().is_none(),
            "purged"
        );
    }
}
