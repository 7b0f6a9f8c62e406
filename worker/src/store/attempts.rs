//! Attempt limits: one fixed-window counter per key (`login:{email}`, `login-ip:{address}`,
//! `register:{email}`, `reset:{email}`), claimed before the work it guards.

use super::StoreError;
use super::query::{Tx, args};

/// One counter to claim an attempt on ([`Tx::claim_attempts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptLimit<'a> {
    /// The counter's key, e.g. `login:ann@example.com`.
    pub key: &'a str,
    /// Claims allowed per window.
    pub max: u32,
    /// The window's length (Unix ms), from the first claim.
    pub window_ms: i64,
}

impl Tx<'_> {
    /// Claims one attempt on every limit in `limits`, all or nothing: a limit's window starts
    /// at its first claim and lasts `window_ms`; a limit that already has `max` claims in its
    /// window refuses. `false` when any limit refused; then nothing is counted (attempts
    /// refused during a lock are not counted).
    ///
    /// Each counter is one upsert, whose row lock (PostgreSQL) or the write lock (SQLite)
    /// serialises concurrent claims; counters are taken in key order, so two claims on the
    /// same keys never deadlock.
    pub fn claim_attempts(
        &mut self,
        limits: &[AttemptLimit<'_>],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut ordered: Vec<&AttemptLimit<'_>> = limits.iter().collect();
        ordered.sort_by_key(|l| l.key);
        let mut claimed: Vec<&str> = Vec::with_capacity(ordered.len());
        for limit in ordered {
            let count: Option<i64> = self.query_value(
                "INSERT INTO attempts (key, count, expires_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET
                     count = CASE WHEN attempts.expires_at > ?3 THEN attempts.count + 1 ELSE 1 END,
                     expires_at = CASE WHEN attempts.expires_at > ?3
                                       THEN attempts.expires_at ELSE excluded.expires_at END
                 RETURNING count",
                args![limit.key, now.saturating_add(limit.window_ms), now],
            )?;
            claimed.push(limit.key);
            if count.unwrap_or(0) > i64::from(limit.max) {
                // Locked: give back every claim this call made, the refused one included.
                self.settle_attempts(&[], &claimed)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forgets the counters `clear` and gives one claim back to each of `release` (a
    /// successful login clears its email's counter and releases its source's claim; a completed
    /// reset clears the email's login lock).
    pub fn settle_attempts(&mut self, clear: &[&str], release: &[&str]) -> Result<(), StoreError> {
        for key in clear {
            self.execute("DELETE FROM attempts WHERE key = ?1", args![*key])?;
        }
        for key in release {
            self.execute(
                "UPDATE attempts SET count = count - 1 WHERE key = ?1 AND count > 0",
                args![*key],
            )?;
        }
        Ok(())
    }
}
