//! Versioned schema migrations, applied at start-up, one list per engine.
//!
//! Migration `i` of each list brings that engine's schema to version `i + 1`; the two lists
//! grow together (the same version means the same tables on both). Migrations are only ever
//! appended.
//!
//! - SQLite: the `user_version` pragma records the version. Each migration runs in its own
//!   immediate transaction that re-reads the version first, so several workers starting on one
//!   file at once apply each migration exactly once.
//! - PostgreSQL: the table `authq_schema` records it. A starting worker takes a session-level
//!   advisory lock first, so workers starting at once on several hosts apply migrations one at a
//!   time; each migration commits with its version in one transaction.

use super::StoreError;
use super::postgres::StatementCache;
use super::query::Tx;
use super::users::RekeyReport;
use rusqlite::{Connection, TransactionBehavior};

/// The SQLite migrations, in order.
const SQLITE: &[&str] = &[
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
    // 8: canonical email keys (`domain::canonical_email_key`); rows the new rules refuse or
    // that collide with another account are flagged for review (see `rekey_emails`).
    r#"
    ALTER TABLE users ADD COLUMN email_review TEXT;
    "#,
    // 9: login attempt claims, one per (counter, request): a lease while the login runs, a
    // counted failure once it failed (see `attempts::Tx::claim_for_request`).
    r#"
    CREATE TABLE attempt_claims (
        key        TEXT NOT NULL,
        request    BLOB NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
        deliveries INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (key, request)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX attempt_claims_by_expiry ON attempt_claims(expires_at);
    "#,
    // 10: sessions a user can see: a random id beside the token digest (never derived from
    // it), when the session was last seen (login, renewals), and the device metadata the
    // calling service passed at login. Sessions from before get a fresh random id.
    r#"
    ALTER TABLE sessions ADD COLUMN session_id TEXT;
    ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
    ALTER TABLE sessions ADD COLUMN user_agent TEXT;
    ALTER TABLE sessions ADD COLUMN client_ip TEXT;
    UPDATE sessions SET session_id = lower(hex(randomblob(16))), last_seen_at = created_at;
    CREATE UNIQUE INDEX sessions_by_id ON sessions(session_id);
    CREATE INDEX sessions_by_user_created ON sessions(user_id, created_at);
    "#,
    // 11: the TOTP second factor: the sealed secret with the last accepted time step (replay
    // protection), recovery code digests, and the pending handles of `mfa_required` logins.
    r#"
    CREATE TABLE mfa_totp (
        user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        secret_sealed BLOB NOT NULL,
        enabled_at    INTEGER,
        last_step     INTEGER NOT NULL DEFAULT -1,
        created_at    INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE mfa_recovery_codes (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        digest  BLOB NOT NULL,
        PRIMARY KEY (user_id, digest)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE mfa_pending (
        handle_digest BLOB PRIMARY KEY,
        user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_at    INTEGER NOT NULL,
        method        TEXT NOT NULL,
        provider      TEXT,
        user_agent    TEXT,
        client_ip     TEXT
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX mfa_pending_by_user ON mfa_pending(user_id);
    CREATE INDEX mfa_pending_by_expiry ON mfa_pending(expires_at);
    "#,
    // 12: access token signing keys (the private key sealed with the server key),
    // refresh tokens by digest, each tied to its session (they end with it), and service
    // clients (their secret as a keyed digest).
    r#"
    CREATE TABLE signing_keys (
        kid            TEXT PRIMARY KEY,
        not_before     INTEGER NOT NULL,
        retire_at      INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        public_key     BLOB NOT NULL,
        sealed_private BLOB NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE refresh_tokens (
        digest     BLOB PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        used_at    INTEGER
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);
    CREATE TABLE service_clients (
        client_id     TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        secret_digest BLOB NOT NULL,
        scopes        TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        revoked_at    INTEGER
    ) STRICT, WITHOUT ROWID;
    "#,
];

/// The PostgreSQL migrations: the same tables as [`SQLITE`], version for version.
const POSTGRES: &[&str] = &[
    // 1: users, sessions, one-time codes.
    r#"
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        profile       TEXT NOT NULL DEFAULT '{}',
        state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'suspended')),
        created_at    BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        token_digest        BYTEA PRIMARY KEY,
        user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at          BIGINT NOT NULL,
        expires_at          BIGINT NOT NULL,
        absolute_expires_at BIGINT NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
    CREATE TABLE codes (
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset')),
        digest     BYTEA NOT NULL,
        expires_at BIGINT NOT NULL,
        attempts   BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, purpose)
    );
    CREATE INDEX codes_by_expiry ON codes(expires_at);
    "#,
    // 2: outcomes.
    r#"
    CREATE TABLE outcomes (
        caller         TEXT NOT NULL,
        message_id     TEXT NOT NULL,
        request_digest BYTEA NOT NULL,
        sealed         BYTEA NOT NULL,
        recorded_at    BIGINT NOT NULL,
        PRIMARY KEY (caller, message_id)
    );
    CREATE INDEX outcomes_by_age ON outcomes(recorded_at);
    "#,
    // 3: social login.
    r#"
    CREATE TABLE oauth_states (
        state_digest    BYTEA PRIMARY KEY,
        provider        TEXT NOT NULL,
        redirect_uri    TEXT NOT NULL,
        verifier_sealed BYTEA NOT NULL,
        expires_at      BIGINT NOT NULL,
        created_at      BIGINT NOT NULL
    );
    CREATE INDEX oauth_states_by_expiry ON oauth_states(expires_at);
    CREATE TABLE social_accounts (
        provider   TEXT NOT NULL,
        subject    TEXT NOT NULL,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email      TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (provider, subject)
    );
    CREATE INDEX social_accounts_by_user ON social_accounts(user_id);
    CREATE TABLE social_sessions (
        token_digest  BYTEA PRIMARY KEY REFERENCES sessions(token_digest) ON DELETE CASCADE,
        provider      TEXT NOT NULL,
        subject       TEXT NOT NULL,
        verified_at   BIGINT NOT NULL,
        recheck_at    BIGINT,
        tokens_sealed BYTEA
    );
    "#,
    // 4: the outbox.
    r#"
    CREATE TABLE outbox (
        seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        routing_key   TEXT NOT NULL,
        sealed        BYTEA NOT NULL,
        claimed_until BIGINT NOT NULL DEFAULT 0,
        created_at    BIGINT NOT NULL
    );
    "#,
    // 5: the deletion cascade.
    r#"
    CREATE TABLE deletions (
        user_id      TEXT PRIMARY KEY,
        requested_at BIGINT NOT NULL,
        deadline     BIGINT NOT NULL,
        completed_at BIGINT
    );
    CREATE INDEX deletions_open ON deletions(deadline) WHERE completed_at IS NULL;
    CREATE TABLE deletion_services (
        user_id         TEXT NOT NULL REFERENCES deletions(user_id) ON DELETE CASCADE,
        service         TEXT NOT NULL,
        acknowledged_at BIGINT,
        PRIMARY KEY (user_id, service)
    );
    "#,
    // 6: attempt limits.
    r#"
    CREATE TABLE attempts (
        key        TEXT PRIMARY KEY,
        count      BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX attempts_by_expiry ON attempts(expires_at);
    "#,
    // 7: the per-user session epoch.
    r#"
    ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
    "#,
    // 8: canonical email keys.
    r#"
    ALTER TABLE users ADD COLUMN email_review TEXT;
    "#,
    // 9: login attempt claims.
    r#"
    CREATE TABLE attempt_claims (
        key        TEXT NOT NULL,
        request    BYTEA NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
        deliveries BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (key, request)
    );
    CREATE INDEX attempt_claims_by_expiry ON attempt_claims(expires_at);
    "#,
    // 10: session ids, last seen, device metadata.
    r#"
    ALTER TABLE sessions ADD COLUMN session_id TEXT;
    ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
    ALTER TABLE sessions ADD COLUMN user_agent TEXT;
    ALTER TABLE sessions ADD COLUMN client_ip TEXT;
    UPDATE sessions SET session_id = replace(gen_random_uuid()::text, '-', ''),
                        last_seen_at = created_at;
    ALTER TABLE sessions ALTER COLUMN session_id SET NOT NULL;
    ALTER TABLE sessions ALTER COLUMN last_seen_at SET NOT NULL;
    CREATE UNIQUE INDEX sessions_by_id ON sessions(session_id);
    CREATE INDEX sessions_by_user_created ON sessions(user_id, created_at);
    "#,
    // 11: the TOTP second factor.
    r#"
    CREATE TABLE mfa_totp (
        user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        secret_sealed BYTEA NOT NULL,
        enabled_at    BIGINT,
        last_step     BIGINT NOT NULL DEFAULT -1,
        created_at    BIGINT NOT NULL
    );
    CREATE TABLE mfa_recovery_codes (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        digest  BYTEA NOT NULL,
        PRIMARY KEY (user_id, digest)
    );
    CREATE TABLE mfa_pending (
        handle_digest BYTEA PRIMARY KEY,
        user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_at    BIGINT NOT NULL,
        method        TEXT NOT NULL,
        provider      TEXT,
        user_agent    TEXT,
        client_ip     TEXT
    );
    CREATE INDEX mfa_pending_by_user ON mfa_pending(user_id);
    CREATE INDEX mfa_pending_by_expiry ON mfa_pending(expires_at);
    "#,
    // 12: signing keys, refresh tokens, service clients.
    r#"
    CREATE TABLE signing_keys (
        kid            TEXT PRIMARY KEY,
        not_before     BIGINT NOT NULL,
        retire_at      BIGINT NOT NULL,
        expires_at     BIGINT NOT NULL,
        public_key     BYTEA NOT NULL,
        sealed_private BYTEA NOT NULL
    );
    CREATE TABLE refresh_tokens (
        digest     BYTEA PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        used_at    BIGINT
    );
    CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);
    CREATE TABLE service_clients (
        client_id     TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        secret_digest BYTEA NOT NULL,
        scopes        TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        revoked_at    BIGINT
    );
    "#,
];

/// The data step of a migration, run in its transaction after its SQL, on either engine.
fn after(version: u32, tx: &mut Tx<'_>) -> Result<(), StoreError> {
    if version == 8 {
        let report = tx.rekey_emails()?;
        if report != RekeyReport::default() {
            tracing::warn!(
                rekeyed = report.rekeyed,
                refused = report.refused,
                duplicates = report.duplicates,
                "email keys made canonical; refused and duplicate addresses are flagged in \
                 users.email_review"
            );
        }
    }
    Ok(())
}

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: u32 = SQLITE.len() as u32;

const _: () = assert!(
    SQLITE.len() == POSTGRES.len(),
    "one migration per version on each engine"
);

/// The advisory lock PostgreSQL migrations run under.
const MIGRATION_LOCK: i64 = 0x6175_7468_7100;

/// Brings a PostgreSQL database to [`SCHEMA_VERSION`]. Returns the version it found.
pub fn apply_postgres(client: &mut postgres::Client) -> Result<u32, StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let applied = apply_postgres_locked(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let found = applied?;
    unlocked?;
    Ok(found)
}

fn apply_postgres_locked(client: &mut postgres::Client) -> Result<u32, StoreError> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS authq_schema (version BIGINT NOT NULL)")?;
    let version = |c: &mut postgres::Client| -> Result<u32, StoreError> {
        let v: Option<i64> = c
            .query_opt("SELECT max(version) FROM authq_schema", &[])?
            .and_then(|r| r.get(0));
        Ok(u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX))
    };
    let found = version(client)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in POSTGRES.iter().enumerate().skip(found as usize) {
        let target = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("DELETE FROM authq_schema", &[])?;
        tx.execute("INSERT INTO authq_schema (version) VALUES ($1)", &[&target])?;
        let mut cache = StatementCache::default();
        let mut tx = Tx::pg_transaction(tx, &mut cache);
        after(u32::try_from(target).unwrap_or(u32::MAX), &mut tx)?;
        tx.commit()?;
        tracing::info!(version = target, "applied database migration");
    }
    Ok(found)
}

/// Brings a SQLite database to [`SCHEMA_VERSION`]. Returns the version it found.
pub fn apply_sqlite(conn: &mut Connection) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in SQLITE.iter().enumerate() {
        let target = i as u32 + 1;
        if found >= target {
            // Applied already: no write lock to wait for (a worker starting beside one that
            // holds it, stopped inside a write, must not wait for it).
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? >= target {
            continue; // another worker got here first
        }
        tx.execute_batch(sql)?;
        after(target, &mut Tx::sqlite(&tx, true))?;
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
    fn upgrading_makes_email_keys_canonical_and_flags_what_it_cannot_keep() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &SQLITE[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        // Keys as authq made them before: the address trimmed and lower-cased.
        for (id, email, at) in [
            ("quoted", "\"A1\"@example.com", 1),
            ("plain", "a1@example.com", 2),
            ("fullwidth", "\u{ff41}2@example.com", 3),
            ("cyrillic", "\u{430}3@example.com", 4),
            ("idn", "b@B\u{fc}cher.example", 5),
        ] {
            conn.execute(
                "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
                 VALUES (?1, ?2, lower(?2), 'active', ?3, ?3)",
                rusqlite::params![id, email, at],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
             VALUES ('social', '', 'social:p:1', 'active', 6, 6)",
            [],
        )
        .unwrap();
        assert_eq!(apply_sqlite(&mut conn).unwrap(), 7);
        let row = |id: &str| -> (String, Option<String>) {
            conn.query_row(
                "SELECT email_key, email_review FROM users WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(row("plain"), ("a1@example.com".into(), None));
        assert_eq!(
            row("quoted"),
            ("review:quoted".into(), Some("duplicate".into())),
            "the quoted spelling of an existing account's address"
        );
        assert_eq!(row("fullwidth"), ("a2@example.com".into(), None));
        assert_eq!(
            row("cyrillic"),
            ("review:cyrillic".into(), Some("refused".into()))
        );
        assert_eq!(row("idn"), ("b@xn--bcher-kva.example".into(), None));
        assert_eq!(row("social"), ("social:p:1".into(), None));
    }

    #[test]
    fn sessions_from_before_version_10_get_a_random_id_and_a_last_seen_time() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &SQLITE[..9] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
             VALUES ('u', 'a@b.c', 'a@b.c', 'active', 0, 0);
             INSERT INTO sessions VALUES (x'01', 'u', 7, 100, 200);
             INSERT INTO sessions VALUES (x'02', 'u', 8, 100, 200);",
        )
        .unwrap();
        assert_eq!(apply_sqlite(&mut conn).unwrap(), 9);
        let rows: Vec<(String, i64, i64)> = conn
            .prepare(
                "SELECT session_id, last_seen_at, created_at FROM sessions ORDER BY created_at",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2);
        for (id, seen, created) in &rows {
            assert_eq!(id.len(), 32);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert_eq!(seen, created);
        }
        assert_ne!(rows[0].0, rows[1].0, "each session its own id");
    }

    #[test]
    fn migrations_apply_once_and_refuse_newer_schemas() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply_sqlite(&mut conn).unwrap(), 0);
        assert_eq!(apply_sqlite(&mut conn).unwrap(), SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            apply_sqlite(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
