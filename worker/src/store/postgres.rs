//! [`PgStore`]: the store for pools on several hosts (the synchronous `postgres` driver, pooled
//! with r2d2, each connection with its own prepared-statement cache).
//!
//! Transactions run at PostgreSQL's default isolation, READ COMMITTED. What makes the auth
//! logic correct there, when SQLite's single writer made it correct by construction:
//! - single-use codes, OAuth states and sessions are consumed by one conditional `DELETE`
//!   (a second transaction waits for the row lock, then finds the row gone);
//! - attempt counters are one upsert (`INSERT … ON CONFLICT DO UPDATE … RETURNING`), whose row
//!   lock serialises concurrent claims; claims take their counters in key order (no deadlock);
//! - a registration inserts with `ON CONFLICT (email_key) DO NOTHING`, so of concurrent
//!   registrations of one address exactly one creates the user;
//! - a request's outcome, the outbox's append and the relay's claim take advisory locks
//!   ([`super::query::Lock`]), held until commit.
//!
//! The synchronous driver, pooled like SQLite's, keeps one calling convention (synchronous
//! calls on the blocking pool, bounded by the pool size) and one query layer for both engines.
//! The driver closes a connection by blocking on its own runtime, which panics on an executor
//! thread, so a dropped connection is closed on a thread of its own. `check`'s look-up alone
//! goes through the async driver ([`super::pg_reads`]): the synchronous path does about
//! 26,000 look-ups/s at 128 in flight, the async one 85,000–115,000/s
//! (`cargo run --release --example store_drivers`).

use super::StoreError;
use super::migrations;
use super::pg_reads::PgReads;
use super::query::Tx;
use r2d2::{ManageConnection, Pool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Prepared statements of one connection, by the `&'static str` they were written as.
#[derive(Default)]
pub struct StatementCache(HashMap<(usize, usize), postgres::Statement>);

impl std::fmt::Debug for StatementCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatementCache")
            .field(&self.0.len())
            .finish()
    }
}

impl StatementCache {
    fn key(sql: &'static str) -> (usize, usize) {
        (sql.as_ptr() as usize, sql.len())
    }

    /// The statement prepared for `sql`, if it was.
    pub fn get(&self, sql: &'static str) -> Option<postgres::Statement> {
        self.0.get(&Self::key(sql)).cloned()
    }

    /// Keeps the statement prepared for `sql`.
    pub fn insert(&mut self, sql: &'static str, stmt: postgres::Statement) {
        self.0.insert(Self::key(sql), stmt);
    }
}

/// `?1`, `?2` (SQLite's numbered parameters) as `$1`, `$2`.
pub fn numbered_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A pooled connection with its statement cache.
pub struct PgConn {
    client: Option<postgres::Client>,
    cache: StatementCache,
}

impl PgConn {
    fn parts(&mut self) -> Result<(&mut postgres::Client, &mut StatementCache), StoreError> {
        let client = self
            .client
            .as_mut()
            .ok_or(StoreError::Misuse("a closed PostgreSQL connection"))?;
        Ok((client, &mut self.cache))
    }
}

/// The synchronous driver closes a connection by blocking on its own runtime, which panics on
/// an async executor's thread (where the last handle to a pool may well be dropped): the
/// close runs on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("authq-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("cache", &self.cache)
            .finish()
    }
}

/// Opens connections to one database.
#[derive(Debug)]
struct Manager {
    config: postgres::Config,
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: Some(self.config.connect(postgres::NoTls)?),
            cache: StatementCache::default(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        match &mut conn.client {
            Some(c) => c.simple_query("").map(|_| ()),
            None => Ok(()),
        }
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.as_ref().is_none_or(postgres::Client::is_closed)
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<Manager>,
    reads: Arc<PgReads>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.state().connections)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) and applies the migrations (one
    /// worker at a time, under an advisory lock). `pool_size` bounds concurrent connections.
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let config: postgres::Config = url.parse()?;
        // One async connection: its batches are larger than two connections' would be, and
        // larger batches cost PostgreSQL less per check (see `pg_reads`).
        let reads = Arc::new(PgReads::new(url.parse()?, 1));
        let manager = Manager { config };
        let mut first = manager.connect()?;
        migrations::apply_postgres(first.parts()?.0)?;
        drop(first);
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Self { pool, reads })
    }

    /// The async connections for `check`'s look-up.
    pub(super) fn reads(&self) -> &PgReads {
        &self.reads
    }

    /// Runs `work` on a connection in autocommit mode.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let (client, cache) = conn.parts()?;
        work(&mut Tx::pg_autocommit(client, cache))
    }

    /// Runs `work` in one transaction, committed if it returns `Ok`.
    pub fn write<T>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let (client, cache) = conn.parts()?;
        let mut tx = Tx::pg_transaction(client.transaction()?, cache);
        let out = work(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars() {
        assert_eq!(
            numbered_parameters("SELECT a FROM t WHERE b = ?1 AND c > ?12"),
            "SELECT a FROM t WHERE b = $1 AND c > $12"
        );
    }
}
