//! The one small query layer both backends share: [`Tx`] runs a statement on SQLite or on
//! PostgreSQL, [`Value`] binds a parameter, [`Row`] reads a column.
//!
//! Statements are written once, in SQLite's dialect with numbered parameters (`?1`, `?2`);
//! for PostgreSQL each is rewritten (`$1`, `$2`) and prepared once per connection, the first
//! time it runs, then kept in that connection's statement cache. The few statements whose SQL
//! differs between the engines name both texts with [`Tx::dialect`], beside each other.
//!
//! A [`Tx`] is either one transaction or, for [`super::Store::read`], a connection in
//! autocommit mode (each statement atomic on its own). Which one a caller gets is decided
//! where it is opened ([`super::Store::read`], [`super::Store::write`]), never by ambient
//! state: a `Tx` is always passed by argument.

use super::StoreError;
use super::postgres::StatementCache;

/// A statement parameter.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// An integer (times are Unix ms).
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes (digests, sealed blobs).
    Bytes(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

impl<'a> From<&'a [u8; 32]> for Value<'a> {
    fn from(v: &'a [u8; 32]) -> Self {
        Self::Bytes(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Statement parameters: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::query::Value::from($v)),*][..]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Null => ValueRef::Null,
            Self::Int(v) => ValueRef::Integer(v),
            Self::Text(v) => ValueRef::Text(v.as_bytes()),
            Self::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Self::Null => Ok(postgres::types::IsNull::Yes),
            Self::Int(v) => v.to_sql(ty, out),
            Self::Text(v) => v.to_sql(ty, out),
            Self::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A type a column can be read as, on either engine.
pub trait Column: Sized {
    /// Reads column `i` of a SQLite row.
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    /// Reads column `i` of a PostgreSQL row.
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error>;
}

impl<T> Column for T
where
    T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>,
{
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }

    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
        row.try_get(i)
    }
}

/// One result row.
pub enum Row<'r, 's> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'s>),
    /// A PostgreSQL row.
    Postgres(&'r postgres::Row),
}

impl std::fmt::Debug for Row<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Row")
    }
}

impl Row<'_, '_> {
    /// Column `i` as a `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        match self {
            Self::Sqlite(r) => Ok(T::sqlite(r, i)?),
            Self::Postgres(r) => Ok(T::postgres(r, i)?),
        }
    }

    /// Column `i`, a 32-byte digest.
    pub fn digest(&self, i: usize) -> Result<crate::crypto::Digest, StoreError> {
        let bytes: Vec<u8> = self.get(i)?;
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("a stored digest is not 32 bytes".into()))
    }
}

/// A named lock that serialises transactions across every worker on every host (PostgreSQL:
/// a transaction-scoped advisory lock). SQLite needs none: a write transaction holds the
/// database's single write lock already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Taken before an event is appended to the outbox, held to commit: events commit in the
    /// order of their sequence numbers, so the relay never passes over one still uncommitted.
    OutboxAppend,
    /// Taken by the relay's claim: one relay at a time, on all hosts.
    OutboxRelay,
    /// Taken before a request's outcome is looked up: a redelivery of the same request on
    /// another worker waits for the first one's commit, then finds its outcome.
    Outcome(i64),
    /// Taken before a signing key is created: one active key at a time, on all hosts.
    SigningKeys,
}

impl Lock {
    /// The advisory lock key (the outbox locks take fixed keys outside the hash space of
    /// [`Lock::Outcome`] only by convention: a collision merely serialises two requests).
    fn key(self) -> i64 {
        match self {
            Self::OutboxAppend => 0x6175_7468_7101,
            Self::OutboxRelay => 0x6175_7468_7102,
            Self::Outcome(k) => k,
            Self::SigningKeys => 0x6175_7468_7103,
        }
    }
}

/// What a [`Tx`] runs statements on.
enum Exec<'c> {
    Sqlite(&'c rusqlite::Connection),
    PgClient(&'c mut postgres::Client),
    PgTransaction(postgres::Transaction<'c>),
}

/// A transaction (or, from [`super::Store::read`], an autocommit connection) on either engine.
/// The store's areas ([`super::users`], [`super::sessions`], …) add their operations to it.
pub struct Tx<'c> {
    exec: Exec<'c>,
    cache: Option<&'c mut StatementCache>,
    in_transaction: bool,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("postgres", &self.is_postgres())
            .field("in_transaction", &self.in_transaction)
            .finish()
    }
}

impl<'c> Tx<'c> {
    /// On a SQLite connection (in a transaction when `in_transaction`).
    pub(super) fn sqlite(conn: &'c rusqlite::Connection, in_transaction: bool) -> Self {
        Self {
            exec: Exec::Sqlite(conn),
            cache: None,
            in_transaction,
        }
    }

    /// On a PostgreSQL connection, autocommit.
    pub(super) fn pg_autocommit(
        client: &'c mut postgres::Client,
        cache: &'c mut StatementCache,
    ) -> Self {
        Self {
            exec: Exec::PgClient(client),
            cache: Some(cache),
            in_transaction: false,
        }
    }

    /// In a PostgreSQL transaction.
    pub(super) fn pg_transaction(
        tx: postgres::Transaction<'c>,
        cache: &'c mut StatementCache,
    ) -> Self {
        Self {
            exec: Exec::PgTransaction(tx),
            cache: Some(cache),
            in_transaction: true,
        }
    }

    /// Commits a PostgreSQL transaction (a SQLite one is committed by its opener).
    pub(super) fn commit(self) -> Result<(), StoreError> {
        if let Exec::PgTransaction(tx) = self.exec {
            tx.commit()?;
        }
        Ok(())
    }

    /// Whether this runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        !matches!(self.exec, Exec::Sqlite(_))
    }

    /// The statement for this engine: `sqlite`'s text on SQLite, `postgres`'s on PostgreSQL.
    pub fn dialect(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        if self.is_postgres() { postgres } else { sqlite }
    }

    /// Takes `lock` until this transaction ends (a no-op on SQLite, whose write transactions
    /// are serialised already).
    pub fn lock(&mut self, lock: Lock) -> Result<(), StoreError> {
        if self.is_postgres() {
            debug_assert!(
                self.in_transaction,
                "an advisory lock outside a transaction"
            );
            self.execute("SELECT pg_advisory_xact_lock(?1)", args![lock.key()])?;
        }
        Ok(())
    }

    fn pg_statement(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        let cache = self
            .cache
            .as_deref_mut()
            .ok_or(StoreError::Misuse("a PostgreSQL statement on SQLite"))?;
        if let Some(stmt) = cache.get(sql) {
            return Ok(stmt);
        }
        let text = super::postgres::numbered_parameters(sql);
        let stmt = match &mut self.exec {
            Exec::PgClient(c) => c.prepare(&text)?,
            Exec::PgTransaction(t) => t.prepare(&text)?,
            Exec::Sqlite(_) => unreachable!("checked above"),
        };
        cache.insert(sql, stmt.clone());
        Ok(stmt)
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<u64, StoreError> {
        if let Exec::Sqlite(conn) = &self.exec {
            let n = conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(args))?;
            return Ok(n as u64);
        }
        let stmt = self.pg_statement(sql)?;
        let params = pg_params(args);
        Ok(match &mut self.exec {
            Exec::PgClient(c) => c.execute(&stmt, &params)?,
            Exec::PgTransaction(t) => t.execute(&stmt, &params)?,
            Exec::Sqlite(_) => unreachable!("handled above"),
        })
    }

    /// The first row of a query, read by `read`, if there is one.
    pub fn query_opt<T>(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
        read: impl Fn(&Row<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        if let Exec::Sqlite(conn) = &self.exec {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
            return match rows.next()? {
                Some(r) => read(&Row::Sqlite(r)).map(Some),
                None => Ok(None),
            };
        }
        let stmt = self.pg_statement(sql)?;
        let params = pg_params(args);
        let row = match &mut self.exec {
            Exec::PgClient(c) => c.query_opt(&stmt, &params)?,
            Exec::PgTransaction(t) => t.query_opt(&stmt, &params)?,
            Exec::Sqlite(_) => unreachable!("handled above"),
        };
        row.map(|r| read(&Row::Postgres(&r))).transpose()
    }

    /// Every row of a query, each read by `read`.
    pub fn query_all<T>(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
        read: impl Fn(&Row<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if let Exec::Sqlite(conn) = &self.exec {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(read(&Row::Sqlite(r))?);
            }
            return Ok(out);
        }
        let stmt = self.pg_statement(sql)?;
        let params = pg_params(args);
        let rows = match &mut self.exec {
            Exec::PgClient(c) => c.query(&stmt, &params)?,
            Exec::PgTransaction(t) => t.query(&stmt, &params)?,
            Exec::Sqlite(_) => unreachable!("handled above"),
        };
        rows.iter().map(|r| read(&Row::Postgres(r))).collect()
    }

    /// The first column of the first row, if there is a row.
    pub fn query_value<T: Column>(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Option<T>, StoreError> {
        self.query_opt(sql, args, |r| r.get(0))
    }
}

pub(super) fn pg_params<'v>(args: &'v [Value<'_>]) -> Vec<&'v (dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}
