//! Refresh tokens: stored by digest, each tied to its session (a foreign key with `ON DELETE
//! CASCADE`, so every way a session ends also ends its refresh tokens: logout, logout_all,
//! end_session, the session limit, password change and reset, suspension, deletion, expiry
//! purges). A session's refresh tokens are one token family; a token is used once, decided by
//! a conditional `UPDATE … WHERE used_at IS NULL` (the store's atomic compare), and a used
//! token given again ends the family with its session.

use super::StoreError;
use super::query::{Tx, args};
use crate::crypto::Digest;
use authq_protocol::ops::UserState;

/// What `refresh` found for a refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// No such token, or its session is no longer live, or its user no longer active.
    Invalid,
    /// The token had been used already (or a concurrent refresh used it first): its session
    /// was ended now, with every refresh token of it. `ended` is false when another call
    /// ended it first.
    Reused {
        /// The user.
        user_id: String,
        /// The session's id.
        session_id: String,
        /// Whether this call ended the session.
        ended: bool,
    },
    /// The token is now used, `next` stored in its place, the session renewed.
    Fresh {
        /// The user.
        user_id: String,
        /// The session's id.
        session_id: String,
        /// The user's session epoch.
        session_epoch: u64,
    },
}

impl Tx<'_> {
    /// Stores a new, unused refresh token of session `session_id`.
    pub fn insert_refresh_token(
        &mut self,
        digest: &Digest,
        session_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO refresh_tokens (digest, session_id, created_at) VALUES (?1, ?2, ?3)",
            args![digest, session_id, now],
        )?;
        Ok(())
    }

    /// Uses the refresh token with digest `digest` at `now`: if it is unused and its session
    /// live, marks it used, stores `next` for the same session and renews the session's idle
    /// expiry (`idle_ms`, capped by its absolute expiry); if it was used, ends its session.
    pub fn use_refresh_token(
        &mut self,
        digest: &Digest,
        next: &Digest,
        now: i64,
        idle_ms: i64,
    ) -> Result<RefreshUse, StoreError> {
        let session: Option<String> = self.query_value(
            "SELECT session_id FROM refresh_tokens WHERE digest = ?1",
            args![digest],
        )?;
        let Some(session_id) = session else {
            return Ok(RefreshUse::Invalid);
        };
        // The session's row first, locked (PostgreSQL; SQLite's write transactions are
        // serialised already): every use of one family's tokens runs one after the other, in
        // the same lock order as everything that ends sessions (session, then its tokens).
        // Without it, concurrent reuses of one token deadlocked each other's cascades.
        let found = self.query_opt(
            self.dialect(
                "SELECT s.user_id, s.expires_at, s.absolute_expires_at, u.state, u.session_epoch
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.session_id = ?1",
                "SELECT s.user_id, s.expires_at, s.absolute_expires_at, u.state, u.session_epoch
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.session_id = ?1 FOR UPDATE OF s",
            ),
            args![session_id.as_str()],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<i64>(2)?,
                    r.get::<String>(3)?,
                    r.get::<i64>(4)?,
                ))
            },
        )?;
        let Some((user_id, expires_at, absolute, state, epoch)) = found else {
            // The session ended since (and took its tokens with it).
            return Ok(RefreshUse::Invalid);
        };
        // Read again under the session's lock: a use that committed meanwhile shows now.
        let used_at: Option<Option<i64>> = self.query_opt(
            "SELECT used_at FROM refresh_tokens WHERE digest = ?1",
            args![digest],
            |r| r.get::<Option<i64>>(0),
        )?;
        let Some(used_at) = used_at else {
            return Ok(RefreshUse::Invalid);
        };
        if used_at.is_some() {
            return self.end_reused(user_id, session_id);
        }
        if expires_at <= now || absolute <= now || state != UserState::Active.as_str() {
            return Ok(RefreshUse::Invalid);
        }
        let claimed = self.execute(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE digest = ?1 AND used_at IS NULL",
            args![digest, now],
        )?;
        if claimed == 0 {
            // A concurrent refresh used it first: the same token presented twice.
            return self.end_reused(user_id, session_id);
        }
        let renewed_to = now.saturating_add(idle_ms).min(absolute);
        self.execute(
            "UPDATE sessions SET expires_at = ?2, last_seen_at = ?3
             WHERE session_id = ?1 AND expires_at < ?2",
            args![session_id.as_str(), renewed_to, now],
        )?;
        self.insert_refresh_token(next, &session_id, now)?;
        Ok(RefreshUse::Fresh {
            user_id,
            session_id,
            session_epoch: u64::try_from(epoch).unwrap_or(0),
        })
    }

    /// Ends the session of a reused refresh token (its refresh tokens go with it).
    fn end_reused(
        &mut self,
        user_id: String,
        session_id: String,
    ) -> Result<RefreshUse, StoreError> {
        let n = self.execute(
            "DELETE FROM sessions WHERE session_id = ?1",
            args![session_id.as_str()],
        )?;
        Ok(RefreshUse::Reused {
            user_id,
            session_id,
            ended: n == 1,
        })
    }
}
