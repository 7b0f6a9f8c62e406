//! Sessions: created at login, looked up (and renewed) by `check`, ended singly or all at once.
//! Stored by the token's digest only.
//!
//! Defaults (`crate::config`): 24 h idle timeout, 30 days absolute, renewed once past half
//! the idle window: long enough for a web app's "stay signed in", bounded like NIST SP 800-63B
//! AAL1, and `check` writes at most about once per 12 h per session. Renewal is a conditional
//! `UPDATE … WHERE expires_at < new`, so concurrent renewals only move the expiry forward and
//! `check` stays a pure read until the renewal point.

use super::StoreError;
use super::query::{Row, Tx, args};
use super::users::{Credentials, UserRecord};
use crate::crypto::Digest;
use authq_protocol::ops::{SessionSummary, UserState};

/// A new session.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The token's digest.
    pub digest: &'a Digest,
    /// Now (Unix ms).
    pub now: i64,
    /// The first idle expiry (Unix ms).
    pub expires_at: i64,
    /// The absolute expiry (Unix ms); renewals never pass it.
    pub absolute_expires_at: i64,
    /// The session's public id ([`crate::crypto::new_session_id`]): random, never the token.
    pub session_id: &'a str,
    /// The user agent the calling service passed at login (validated by the caller).
    pub user_agent: Option<&'a str>,
    /// The client address the calling service passed at login (validated by the caller).
    pub client_ip: Option<&'a str>,
    /// Whether the deployment limits sessions per user: the user's row is then locked
    /// exclusively, so concurrent logins of one user (whose limit each enforces with
    /// [`Tx::end_sessions_beyond`]) run one after the other.
    pub limited: bool,
}

/// When `check_session` renews a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// Renew once `now` reaches `expires_at - renew_window_ms`.
    pub renew_window_ms: i64,
    /// A renewed session expires at `now + idle_timeout_ms` (capped by its absolute expiry).
    pub idle_timeout_ms: i64,
}

impl Renewal {
    /// The rule a session policy describes: renew once `renew_after` of the idle window has
    /// passed, i.e. once the remaining time falls below `(1 - renew_after) * idle_timeout`.
    pub fn from_policy(policy: &crate::config::SessionPolicy) -> Self {
        let idle = crate::clock::duration_ms(policy.idle_timeout);
        let renew_after = policy.renew_after.clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let window = ((1.0 - renew_after) * idle as f64) as i64;
        Self {
            renew_window_ms: window,
            idle_timeout_ms: idle,
        }
    }
}

/// A live session and its user.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    /// The user.
    pub user: UserRecord,
    /// The (possibly renewed) idle expiry (Unix ms).
    pub expires_at: i64,
    /// Whether this call renewed the session.
    pub renewed: bool,
    /// The user's session epoch: it grows whenever all of the user's sessions end at once.
    pub session_epoch: u64,
}

/// The condition that makes session `s` live (digest `?1`, now `?2`): a macro, so each query
/// is one literal (no string is built per call).
macro_rules! live_session {
    () => {
        "s.token_digest = ?1 AND s.expires_at > ?2 AND s.absolute_expires_at > ?2"
    };
}

/// `check`'s look-up: the live session by digest, with its user.
pub(super) const CHECK_SESSION: &str = concat!(
    "SELECT u.id, u.email, u.state, u.profile, s.expires_at, s.absolute_expires_at,
            u.session_epoch
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE ",
    live_session!(),
    ""
);

/// A live session as read, before any renewal.
pub(super) struct LiveSession {
    user: UserRecord,
    expires_at: i64,
    absolute_expires_at: i64,
    session_epoch: u64,
}

impl LiveSession {
    /// Reads a row of [`CHECK_SESSION`].
    pub(super) fn from_row(r: &Row<'_, '_>) -> Result<Self, StoreError> {
        Ok(Self {
            user: UserRecord::from_row(r, 0)?,
            expires_at: r.get(4)?,
            absolute_expires_at: r.get(5)?,
            session_epoch: u64::try_from(r.get::<i64>(6)?).unwrap_or(0),
        })
    }

    /// Whether the session is live at `now` (what `live_session!` asks of the database).
    pub(super) fn live_at(&self, now: i64) -> bool {
        self.expires_at > now && self.absolute_expires_at > now
    }

    /// The new idle expiry when the session is due for renewal at `now`, else `None`.
    pub(super) fn renewal(&self, now: i64, renewal: Renewal) -> Option<i64> {
        let due = now >= self.expires_at.saturating_sub(renewal.renew_window_ms);
        let renewed_to = now
            .saturating_add(renewal.idle_timeout_ms)
            .min(self.absolute_expires_at);
        (self.user.state == UserState::Active && due && renewed_to > self.expires_at)
            .then_some(renewed_to)
    }

    pub(super) fn unrenewed(self) -> SessionInfo {
        SessionInfo {
            user: self.user,
            expires_at: self.expires_at,
            renewed: false,
            session_epoch: self.session_epoch,
        }
    }
}

impl Tx<'_> {
    /// The live session with this digest at `now`, with its user.
    pub(super) fn live_session(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<LiveSession>, StoreError> {
        self.query_opt(CHECK_SESSION, args![digest, now], LiveSession::from_row)
    }

    /// Creates a session, only if the user is (still) active. `None` otherwise.
    pub fn create_session(
        &mut self,
        new: &NewSession<'_>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let lookup = if new.limited {
            self.dialect(
                "SELECT id, email, state, profile FROM users WHERE id = ?1",
                // Exclusive among logins (and against a suspension): two logins of one user
                // under a session limit each see the other's session once it committed.
                "SELECT id, email, state, profile FROM users WHERE id = ?1 FOR NO KEY UPDATE",
            )
        } else {
            self.dialect(
                "SELECT id, email, state, profile FROM users WHERE id = ?1",
                // The row lock makes a concurrent suspension wait for this session (which it
                // then ends), or this login see the suspension.
                "SELECT id, email, state, profile FROM users WHERE id = ?1 FOR SHARE",
            )
        };
        let user = self.query_opt(lookup, args![new.user_id], |r| UserRecord::from_row(r, 0))?;
        let Some(user) = user.filter(|u| u.state == UserState::Active) else {
            return Ok(None);
        };
        self.insert_session(new)?;
        Ok(Some(user))
    }

    /// Inserts the session row (the user is known to be active).
    pub(super) fn insert_session(&mut self, new: &NewSession<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sessions (token_digest, user_id, created_at, expires_at,
                                   absolute_expires_at, session_id, last_seen_at, user_agent,
                                   client_ip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3, ?7, ?8)",
            args![
                new.digest,
                new.user_id,
                new.now,
                new.expires_at,
                new.absolute_expires_at,
                new.session_id,
                new.user_agent,
                new.client_ip
            ],
        )?;
        Ok(())
    }

    /// Locks the user's row exclusively among logins until the transaction ends (PostgreSQL;
    /// SQLite's write transactions are serialised already), as [`Tx::create_session`] does
    /// with `limited`.
    pub fn lock_user_sessions(&mut self, user_id: &str) -> Result<(), StoreError> {
        if self.is_postgres() {
            self.execute(
                "SELECT 1 FROM users WHERE id = ?1 FOR NO KEY UPDATE",
                args![user_id],
            )?;
        }
        Ok(())
    }

    /// Ends the user's oldest live sessions beyond the newest `keep`, never the session
    /// `newest` (the one a login just created, which counts as one of the `keep`). Returns the
    /// ids of the sessions ended. Run in the login's transaction, after
    /// [`Tx::create_session`] with `limited` (whose row lock orders concurrent logins).
    pub fn end_sessions_beyond(
        &mut self,
        user_id: &str,
        newest: &str,
        keep: u32,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        // A session a concurrent login's limit ended already ends nothing itself (a later
        // login superseded it): otherwise two racing logins would end each other's.
        let present: Option<String> = self.query_value(
            "SELECT session_id FROM sessions WHERE session_id = ?1",
            args![newest],
        )?;
        if present.is_none() {
            return Ok(Vec::new());
        }
        let others = i64::from(keep.saturating_sub(1));
        let ended: Vec<String> = self.query_all(
            self.dialect(
                "SELECT session_id FROM sessions
                 WHERE user_id = ?1 AND session_id <> ?2
                   AND expires_at > ?3 AND absolute_expires_at > ?3
                 ORDER BY created_at DESC, session_id DESC
                 LIMIT -1 OFFSET ?4",
                "SELECT session_id FROM sessions
                 WHERE user_id = ?1 AND session_id <> ?2
                   AND expires_at > ?3 AND absolute_expires_at > ?3
                 ORDER BY created_at DESC, session_id DESC
                 OFFSET ?4",
            ),
            args![user_id, newest, now, others],
            |r| r.get(0),
        )?;
        for id in &ended {
            self.execute(
                "DELETE FROM sessions WHERE session_id = ?1",
                args![id.as_str()],
            )?;
        }
        Ok(ended)
    }

    /// The user's live sessions at `now`, newest first, at most `limit` of them, the one with
    /// digest `current` marked; and how many live sessions the user has in all.
    pub fn list_sessions(
        &mut self,
        user_id: &str,
        current: &Digest,
        now: i64,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, u64), StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let listed = self.query_all(
            "SELECT session_id, created_at, last_seen_at, expires_at, user_agent, client_ip,
                    token_digest = ?2
             FROM sessions
             WHERE user_id = ?1 AND expires_at > ?3 AND absolute_expires_at > ?3
             ORDER BY created_at DESC, session_id DESC
             LIMIT ?4",
            args![user_id, current, now, limit],
            |r| {
                Ok(SessionSummary {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    last_seen_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    user_agent: r.get(4)?,
                    client_ip: r.get(5)?,
                    current: r.get(6)?,
                })
            },
        )?;
        let total: i64 = self
            .query_value(
                "SELECT count(*) FROM sessions
                 WHERE user_id = ?1 AND expires_at > ?2 AND absolute_expires_at > ?2",
                args![user_id, now],
            )?
            .unwrap_or(0);
        Ok((listed, u64::try_from(total).unwrap_or(0)))
    }

    /// Ends the user's live session with this id. `false` if the user has no such live session
    /// (none with this id, or another user's: the caller cannot tell which).
    pub fn end_session_by_id(
        &mut self,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM sessions
             WHERE session_id = ?1 AND user_id = ?2
               AND expires_at > ?3 AND absolute_expires_at > ?3",
            args![session_id, user_id, now],
        )?;
        Ok(n == 1)
    }

    /// The session with this digest if it is live at `now`, renewing it when due. A session of
    /// a user who is no longer active is returned with that user's state: the caller refuses it.
    pub fn check_session(
        &mut self,
        digest: &Digest,
        now: i64,
        renewal: Renewal,
    ) -> Result<Option<SessionInfo>, StoreError> {
        let Some(found) = self.live_session(digest, now)? else {
            return Ok(None);
        };
        match found.renewal(now, renewal) {
            None => Ok(Some(found.unrenewed())),
            Some(renewed_to) => {
                // Conditional, so concurrent renewals only ever move the expiry forward.
                let n = self.execute(
                    "UPDATE sessions SET expires_at = ?2, last_seen_at = ?3
                     WHERE token_digest = ?1 AND expires_at < ?2",
                    args![digest, renewed_to, now],
                )?;
                Ok(Some(SessionInfo {
                    user: found.user,
                    expires_at: renewed_to,
                    renewed: n == 1,
                    session_epoch: found.session_epoch,
                }))
            }
        }
    }

    /// The live session's user with the password hash (whatever the user's state).
    pub fn session_credentials(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<Credentials>, StoreError> {
        self.query_opt(
            concat!(
                "SELECT u.id, u.email, u.state, u.profile, u.password_hash
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE ",
                live_session!(),
                ""
            ),
            args![digest, now],
            |r| {
                Ok(Credentials {
                    user: UserRecord::from_row(r, 0)?,
                    password_hash: r.get(4)?,
                })
            },
        )
    }

    /// The user of the live session with this digest.
    pub fn session_user_id(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.query_value(
            concat!(
                "SELECT s.user_id FROM sessions s WHERE ",
                live_session!(),
                ""
            ),
            args![digest, now],
        )
    }

    /// Ends the live session with this digest. `false` if there was none.
    pub fn end_session(&mut self, digest: &Digest, now: i64) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM sessions
             WHERE token_digest = ?1 AND expires_at > ?2 AND absolute_expires_at > ?2",
            args![digest, now],
        )?;
        Ok(n == 1)
    }

    /// Ends every session of the live session's user. `None` if the session was not live.
    pub fn end_all_sessions(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(user_id) = self.session_user_id(digest, now)? else {
            return Ok(None);
        };
        self.end_user_sessions(&user_id).map(Some)
    }

    /// Ends every session of the user; returns how many.
    pub fn end_user_sessions(&mut self, user_id: &str) -> Result<u64, StoreError> {
        self.execute("DELETE FROM sessions WHERE user_id = ?1", args![user_id])
    }
}
