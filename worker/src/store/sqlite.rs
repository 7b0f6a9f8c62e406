//! [`SqliteStore`]: the embedded default store (rusqlite + r2d2, WAL mode).
//!
//! Every connection has foreign keys on, a busy timeout, and a statement cache, so each
//! statement is prepared once per connection and reused. Writes run in `BEGIN IMMEDIATE`
//! transactions: SQLite has one writer at a time, and taking the write lock up front avoids
//! the deadlock of two readers upgrading at once.
//!
//! # Settings, and why
//! - **WAL** (readers never block the writer) with **`synchronous = FULL`** (an acknowledged
//!   effect survives power loss); a busy timeout (`--store-busy-timeout`, 5 s) after which a
//!   call answers `unavailable`.
//! - **Statements stay prepared**: each connection enables SQLite's query planner stability
//!   guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`). The bundled SQLite is built with STAT4, and
//!   without QPSG it re-plans a cached statement whenever a new value is bound to a parameter
//!   compared with an indexed column, i.e. on every `check`: a quarter of the worker's CPU,
//!   found with `perf`. A unit test keeps SQLite's re-prepare counter at zero.
//! - **Inline readers for `check`** ([`super::Store::check_session_now`]):
//!   one `query_only` connection per executor thread with busy timeout 0, used on the executor
//!   itself, because the blocking pool's two thread hand-offs cost more than the indexed read.
//!   When none is idle, SQLite answers busy, or the session is due for renewal (a write), the
//!   call says "not now" and goes to the blocking pool. It never sleeps, writes or waits for a
//!   database lock (WAL readers take none).
//! - **Its own `ManageConnection`** (20 lines): `r2d2_sqlite` does not support rusqlite 0.41;
//!   it also sets the per-connection pragmas.

use super::StoreError;
use super::migrations;
use super::query::Tx;
use r2d2::{ManageConnection, Pool};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for SQLite's write lock before failing, unless the store is
/// opened with another ([`SqliteStore::open_with`]).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements cached per connection (more than the store uses, so none is ever re-prepared).
const STATEMENT_CACHE: usize = 64;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Pool<Manager>,
    inline_readers: Arc<InlineReaders>,
}

/// Read-only connections for [`super::Store::check_session_now`], which runs on the async executor:
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
    busy_timeout: Duration,
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
        conn.busy_timeout(self.busy_timeout)?;
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
        Self::open_with(path, pool_size, BUSY_TIMEOUT)
    }

    /// [`SqliteStore::open`] with statements waiting at most `busy_timeout` for the write lock.
    pub fn open_with(
        path: &Path,
        pool_size: u32,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        let manager = Manager {
            path: path.to_owned(),
            busy_timeout,
        };
        let mut first = manager.connect()?;
        // WAL is a property of the file: readers never block the writer, and vice versa.
        let mode: String =
            first.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal(mode));
        }
        migrations::apply_sqlite(&mut first)?;
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

    /// Runs `work` on a pooled connection in autocommit mode (each statement atomic).
    pub fn read<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.get()?;
        work(&mut Tx::sqlite(&conn, false))
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction, committed if it returns `Ok` (and
    /// rolled back, when the transaction drops, otherwise).
    pub fn write<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = work(&mut Tx::sqlite(&tx, true))?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `work` on an idle inline reader, if one is free: never waits (the readers have no
    /// busy timeout; a busy database is an error the caller reads with [`is_busy`]).
    pub fn read_inline<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let conn = self.inline_readers.take()?;
        let out = work(&mut Tx::sqlite(&conn, false));
        self.inline_readers.give_back(conn);
        Some(out)
    }
}

/// Whether a store error is SQLite's "database is busy/locked".
pub fn is_busy(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database(e) if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Digest;
    use crate::store::sessions::CHECK_SESSION;
    use crate::store::{NewOAuthState, Renewal, Store, StoreLocation};

    fn open(dir: &tempfile::TempDir, pool: u32) -> (Store, SqliteStore) {
        let store = Store::open(&StoreLocation::Sqlite(dir.path().join("t.db")), pool).unwrap();
        let super::super::Backend::Sqlite(sqlite) = &store.backend else {
            unreachable!("a SQLite location")
        };
        let sqlite = sqlite.clone();
        (store, sqlite)
    }

    #[test]
    fn cached_statements_are_never_prepared_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sqlite) = open(&dir, 1);
        let renewal = Renewal {
            renew_window_ms: 0,
            idle_timeout_ms: 0,
        };
        for i in 0..20u8 {
            let found = store
                .read(|tx| tx.check_session(&[i; 32], i64::from(i), renewal))
                .unwrap();
            assert!(found.is_none());
        }
        let conn = sqlite.pool.get().unwrap();
        let stmt = conn.prepare_cached(CHECK_SESSION).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "a new digest must not make SQLite parse and plan the query again"
        );
    }

    #[tokio::test]
    async fn the_executor_look_up_never_waits_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sqlite) = open(&dir, 2);
        sqlite
            .pool
            .get()
            .unwrap()
            .execute_batch(
                "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
                     VALUES ('u', 'a@b.c', 'a@b.c', 'active', 0, 0);
                 INSERT INTO sessions (token_digest, user_id, created_at, expires_at,
                                       absolute_expires_at, session_id, last_seen_at)
                     VALUES (x'0101010101010101010101010101010101010101010101010101010101010101',
                             'u', 0, 1000, 5000, 's1', 0);",
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
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.unwrap().expires_at, false), (1000, false));
        // Unknown: answered here too.
        assert!(
            store
                .check_session_now(&[2; 32], 10, renewal)
                .await
                .unwrap()
                .unwrap()
                .is_none()
        );
        // Due for renewal (a write): left to the blocking pool, which renews.
        assert!(store.check_session_now(&live, 950, renewal).await.is_none());
        let renewed = store
            .read(|tx| tx.check_session(&live, 950, renewal))
            .unwrap()
            .unwrap();
        assert_eq!((renewed.expires_at, renewed.renewed), (1950, true));
        // Every inline reader taken: no wait, no answer.
        let taken: Vec<_> = std::iter::from_fn(|| sqlite.inline_readers.take()).collect();
        assert!(!taken.is_empty());
        assert!(store.check_session_now(&live, 10, renewal).await.is_none());
        taken
            .into_iter()
            .for_each(|c| sqlite.inline_readers.give_back(c));
        assert!(store.check_session_now(&live, 10, renewal).await.is_some());
    }

    #[test]
    fn oauth_states_are_single_use_expire_and_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir, 2);
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
        let create = |d: &Digest| store.write(|tx| tx.create_oauth_state(&state(d, 100)));
        let take = |d: &Digest, now| store.write(|tx| tx.take_oauth_state(d, now));
        create(&[1; 32]).unwrap();
        let taken = take(&[1; 32], 50).unwrap().unwrap();
        assert_eq!(taken.provider, "p");
        assert_eq!(taken.verifier_sealed, b"sealed");
        assert!(take(&[1; 32], 50).unwrap().is_none(), "single use");

        create(&[2; 32]).unwrap();
        assert!(take(&[2; 32], 100).unwrap().is_none(), "expired");

        create(&[3; 32]).unwrap();
        assert_eq!(store.write(|tx| tx.purge_expired(100)).unwrap(), 1);
        assert!(take(&[3; 32], 0).unwrap().is_none(), "purged");
    }
}
