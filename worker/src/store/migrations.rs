//! Versioned schema migrations, applied at start-up.
//!
//! The database's `user_version` pragma records how many migrations it has. Each migration runs
//! in its own immediate transaction that re-reads the version first, so several workers starting
//! on one file at once apply each migration exactly once. Migrations are only ever appended.

use super::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// The migrations, in order. Migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, sessions, one-time codes.
    r#"
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        profile       TEXT NOT NULL DEFAULT '{}',
        state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'suspended')),
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE sessions (
        token_digest        BLOB PRIMARY KEY,
        user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at          INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);

    CREATE TABLE codes (
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset')),
        digest     BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, purpose)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX codes_by_expiry ON codes(expires_at);
    "#,
    // 2: the first outcome of each mutating request, for redeliveries and retries.
    r#"
    CREATE TABLE outcomes (
        caller         TEXT NOT NULL,
        message_id     TEXT NOT NULL,
        request_digest BLOB NOT NULL,
        sealed         BLOB NOT NULL,
        recorded_at    INTEGER NOT NULL,
        PRIMARY KEY (caller, message_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX outcomes_by_age ON outcomes(recorded_at);
    "#,
    // 3: social login: OAuth states (single use, PKCE verifier sealed), provider accounts linked
    // to users, and the provider side of social sessions (tokens sealed, or not kept at all).
    r#"
    CREATE TABLE oauth_states (
        state_digest    BLOB PRIMARY KEY,
        provider        TEXT NOT NULL,
        redirect_uri    TEXT NOT NULL,
        verifier_sealed BLOB NOT NULL,
        expires_at      INTEGER NOT NULL,
        created_at      INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX oauth_states_by_expiry ON oauth_states(expires_at);

    CREATE TABLE social_accounts (
        provider   TEXT NOT NULL,
        subject    TEXT NOT NULL,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email      TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, subject)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX social_accounts_by_user ON social_accounts(user_id);

    CREATE TABLE social_sessions (
        token_digest  BLOB PRIMARY KEY REFERENCES sessions(token_digest) ON DELETE CASCADE,
        provider      TEXT NOT NULL,
        subject       TEXT NOT NULL,
        verified_at   INTEGER NOT NULL,
        recheck_at    INTEGER,
        tokens_sealed BLOB
    ) STRICT, WITHOUT ROWID;
    "#,
    // 4: the transactional outbox of auth events (bodies sealed: two carry a code or a token).
    r#"
    CREATE TABLE outbox (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        routing_key   TEXT NOT NULL,
        sealed        BLOB NOT NULL,
        claimed_until INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
    ) STRICT;
    "#,
    // 5: the deletion cascade: which services must acknowledge a deleted user, and which did.
    r#"
    CREATE TABLE deletions (
        user_id      TEXT PRIMARY KEY,
        requested_at INTEGER NOT NULL,
        deadline     INTEGER NOT NULL,
        completed_at INTEGER
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX deletions_open ON deletions(deadline) WHERE completed_at IS NULL;
    CREATE TABLE deletion_services (
        user_id         TEXT NOT NULL REFERENCES deletions(user_id) ON DELETE CASCADE,
        service         TEXT NOT NULL,
        acknowledged_at INTEGER,
        PRIMARY KEY (user_id, service)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 6: brute-force and spam limits, one fixed-window counter per key
    // (`login:{email}`, `login-ip:{address}`, `register:{email}`, `reset:{email}`), claimed
    // before the work it guards.
    r#"
    CREATE TABLE attempts (
        key        TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX attempts_by_expiry ON attempts(expires_at);
    "#,
    // 7: the per-user session epoch, which grows whenever all of a user's sessions end at once.
    r#"
    ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`]. Returns the version it found.
pub fn apply(conn: &mut Connection) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? >= target {
            continue; // another worker got here first
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        tracing::info!(version = target, "applied database migration");
    }
    Ok(found)
}

fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_schemas() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn).unwrap(), 0);
        assert_eq!(apply(&mut conn).unwrap(), SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
