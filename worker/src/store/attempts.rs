//! Attempt limits: one fixed-window counter per key (`login:{email}`, `login-ip:{address}`,
//! `register:{email}`, `reset:{email}`), claimed before the work it guards.
//!
//! Registrations and resets count every claim ([`Tx::claim_attempts`]). Logins count only
//! verified failures, per request ([`Tx::claim_for_request`]): a login's claim is a *pending*
//! row of `attempt_claims`, keyed by the counter and the request's identity, that holds a place
//! under the limit for a short lease while the login runs. A redelivery of the same request takes
//! the same row again; a claim whose worker died lapses with its lease and never counts; a
//! verified failure turns it into a counted failure ([`Tx::fail_claims`], once per request);
//! a success removes it ([`Tx::clear_claims`]).

use super::StoreError;
use super::query::{Tx, args};

/// What [`Tx::claim_for_request`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClaim {
    /// The request holds a place under every limit: check the password.
    Granted,
    /// This very request failed before and its failure is counted (a redelivery or retry of
    /// it): answer the same failure again, without another check and without counting.
    Failed,
    /// A limit is reached: nothing was recorded.
    Refused,
}

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

    /// Forgets the counters `clear` (with their counted login failures) and gives one claim
    /// back to each of `release` (a completed reset clears the email's login lock).
    pub fn settle_attempts(&mut self, clear: &[&str], release: &[&str]) -> Result<(), StoreError> {
        for key in clear {
            self.execute("DELETE FROM attempts WHERE key = ?1", args![*key])?;
            self.execute(
                "DELETE FROM attempt_claims WHERE key = ?1 AND state = 'failed'",
                args![*key],
            )?;
        }
        for key in release {
            self.execute(
                "UPDATE attempts SET count = count - 1 WHERE key = ?1 AND count > 0",
                args![*key],
            )?;
        }
        Ok(())
    }

    /// Claims a place for `request` (a request's identity: the same for every delivery and
    /// retry of it) under every limit in `limits`, all or nothing, for `lease_ms`. A limit's
    /// counter holds verified failures in a fixed window (from its first claim); it refuses
    /// when its failures plus the live pending claims of other requests reach `max`. When any
    /// limit refuses, nothing is recorded.
    ///
    /// - A request that already holds a live pending claim takes it again (its lease renewed):
    ///   a redelivery never counts twice, whatever the others did meanwhile.
    /// - A request whose failure is counted already gets [`RequestClaim::Failed`] (unless a
    ///   limit is reached): its password was checked and was wrong; nothing more is counted.
    /// - A pending claim whose lease ended (its worker died) no longer holds a place and never
    ///   becomes a failure.
    ///
    /// The counter's upsert comes first on each key, in key order: its row lock (PostgreSQL)
    /// or the write lock (SQLite) serialises concurrent claims on a key, so parallel requests
    /// cannot slip past the limit.
    pub fn claim_for_request(
        &mut self,
        limits: &[AttemptLimit<'_>],
        request: &[u8; 32],
        lease_ms: i64,
        now: i64,
    ) -> Result<RequestClaim, StoreError> {
        let mut ordered: Vec<&AttemptLimit<'_>> = limits.iter().collect();
        ordered.sort_by_key(|l| l.key);
        let mut failed_before = false;
        for limit in &ordered {
            let failures = self.open_window(limit, now)?;
            let own: Option<String> = self.query_value(
                "SELECT state FROM attempt_claims
                 WHERE key = ?1 AND request = ?2 AND expires_at > ?3",
                args![limit.key, request, now],
            )?;
            if own.as_deref() == Some("pending") {
                continue;
            }
            let pending: i64 = self
                .query_value(
                    "SELECT count(*) FROM attempt_claims
                     WHERE key = ?1 AND request <> ?2 AND state = 'pending' AND expires_at > ?3",
                    args![limit.key, request, now],
                )?
                .unwrap_or(0);
            if failures + pending >= i64::from(limit.max) {
                return Ok(RequestClaim::Refused);
            }
            failed_before |= own.is_some();
        }
        if failed_before {
            return Ok(RequestClaim::Failed);
        }
        for limit in &ordered {
            self.execute(
                "INSERT INTO attempt_claims (key, request, state, deliveries, expires_at)
                 VALUES (?1, ?2, 'pending', 1, ?3)
                 ON CONFLICT (key, request) DO UPDATE SET
                     deliveries = attempt_claims.deliveries + 1,
                     state = 'pending',
                     expires_at = excluded.expires_at",
                args![limit.key, request, now.saturating_add(lease_ms)],
            )?;
        }
        Ok(RequestClaim::Granted)
    }

    /// Counts a verified failure of `request` on every limit in `limits`, once per request:
    /// its claim becomes a counted failure that lasts as long as the counter's window. A
    /// request whose failure was counted already (a redelivery that failed again) counts
    /// nothing more. A claim whose lease ended meanwhile still counts: the failure was real.
    pub fn fail_claims(
        &mut self,
        limits: &[AttemptLimit<'_>],
        request: &[u8; 32],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut ordered: Vec<&AttemptLimit<'_>> = limits.iter().collect();
        ordered.sort_by_key(|l| l.key);
        for limit in ordered {
            let counted: Option<i64> = self.query_value(
                "SELECT count(*) FROM attempt_claims
                 WHERE key = ?1 AND request = ?2 AND state = 'failed' AND expires_at > ?3",
                args![limit.key, request, now],
            )?;
            if counted.unwrap_or(0) > 0 {
                continue;
            }
            let window_end: Option<i64> = self.query_value(
                "INSERT INTO attempts (key, count, expires_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET
                     count = CASE WHEN attempts.expires_at > ?3 THEN attempts.count + 1 ELSE 1 END,
                     expires_at = CASE WHEN attempts.expires_at > ?3
                                       THEN attempts.expires_at ELSE excluded.expires_at END
                 RETURNING expires_at",
                args![limit.key, now.saturating_add(limit.window_ms), now],
            )?;
            let window_end = window_end.unwrap_or_else(|| now.saturating_add(limit.window_ms));
            self.execute(
                "INSERT INTO attempt_claims (key, request, state, deliveries, expires_at)
                 VALUES (?1, ?2, 'failed', 1, ?3)
                 ON CONFLICT (key, request) DO UPDATE SET state = 'failed', expires_at = ?3",
                args![limit.key, request, window_end],
            )?;
        }
        Ok(())
    }

    /// Settles a successful login of `request`: the counters `clear` are forgotten (with their
    /// counted failures), and the request's claims on them and on `release` are removed.
    pub fn clear_claims(
        &mut self,
        clear: &[&str],
        release: &[&str],
        request: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.settle_attempts(clear, &[])?;
        for key in clear.iter().chain(release) {
            self.execute(
                "DELETE FROM attempt_claims WHERE key = ?1 AND request = ?2",
                args![*key, request],
            )?;
        }
        Ok(())
    }

    /// Locks `limit`'s counter for this transaction (the upsert's row lock on PostgreSQL),
    /// starting a new window if the last one ended; returns the failures counted in it.
    fn open_window(&mut self, limit: &AttemptLimit<'_>, now: i64) -> Result<i64, StoreError> {
        let count: Option<i64> = self.query_value(
            "INSERT INTO attempts (key, count, expires_at) VALUES (?1, 0, ?2)
             ON CONFLICT (key) DO UPDATE SET
                 count = CASE WHEN attempts.expires_at > ?3 THEN attempts.count ELSE 0 END,
                 expires_at = CASE WHEN attempts.expires_at > ?3
                                   THEN attempts.expires_at ELSE excluded.expires_at END
             RETURNING count",
            args![limit.key, now.saturating_add(limit.window_ms), now],
        )?;
        Ok(count.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreLocation};

    const LEASE: i64 = 60_000;
    const WINDOW: i64 = 900_000;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&StoreLocation::Sqlite(dir.path().join("t.db")), 1).unwrap()
    }

    fn limits(max: u32) -> [AttemptLimit<'static>; 2] {
        [
            AttemptLimit {
                key: "login:ann@example.com",
                max,
                window_ms: WINDOW,
            },
            AttemptLimit {
                key: "login-ip:192.0.2.1",
                max: 100,
                window_ms: WINDOW,
            },
        ]
    }

    fn claim(store: &Store, max: u32, request: u8, now: i64) -> bool {
        claimed(store, max, request, now) == RequestClaim::Granted
    }

    fn claimed(store: &Store, max: u32, request: u8, now: i64) -> RequestClaim {
        store
            .write(|tx| tx.claim_for_request(&limits(max), &[request; 32], LEASE, now))
            .unwrap()
    }

    fn fail(store: &Store, request: u8, now: i64) {
        store
            .write(|tx| tx.fail_claims(&limits(5), &[request; 32], now))
            .unwrap();
    }

    fn failures(store: &Store) -> i64 {
        store
            .read(|tx| {
                tx.query_value(
                    "SELECT count FROM attempts WHERE key = 'login:ann@example.com'",
                    &[],
                )
            })
            .unwrap()
            .unwrap_or(0)
    }

    #[test]
    fn a_redelivered_claim_is_taken_again_and_a_crashed_one_lapses_uncounted() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        // One request delivered ten times (its worker dying each time): one place, no failure.
        for _ in 0..10 {
            assert!(claim(&store, 2, 1, 0));
        }
        assert_eq!(failures(&store), 0);
        // It holds one place of two while its lease lasts; a third request is refused.
        assert!(claim(&store, 2, 2, 10));
        assert!(!claim(&store, 2, 3, 20));
        // After the leases end, the crashed claims hold nothing and never counted.
        assert!(claim(&store, 2, 3, LEASE + 30));
        assert!(claim(&store, 2, 4, LEASE + 30));
        assert_eq!(failures(&store), 0);
    }

    #[test]
    fn a_verified_failure_counts_once_per_request_and_a_success_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        for request in 1..=2 {
            assert!(claim(&store, 3, request, 0));
            fail(&store, request, 1);
            // Redelivered after its failure was counted (the reply was lost): the same failure,
            // not checked or counted again.
            assert_eq!(claimed(&store, 3, request, 2), RequestClaim::Failed);
            fail(&store, request, 3);
        }
        assert_eq!(failures(&store), 2);
        assert!(claim(&store, 3, 3, 4));
        fail(&store, 3, 4);
        assert_eq!(failures(&store), 3);
        assert!(!claim(&store, 3, 4, 4), "locked at the limit");
        assert_eq!(
            claimed(&store, 3, 3, 4),
            RequestClaim::Refused,
            "during the lock, a retry is refused like any login"
        );
        // The window ends: the failures are gone.
        assert!(claim(&store, 3, 4, WINDOW + 10));
        fail(&store, 4, WINDOW + 11);
        assert_eq!(failures(&store), 1);
        assert!(claim(&store, 3, 5, WINDOW + 12));
        store
            .write(|tx| {
                tx.clear_claims(
                    &["login:ann@example.com"],
                    &["login-ip:192.0.2.1"],
                    &[5; 32],
                )
            })
            .unwrap();
        assert_eq!(failures(&store), 0);
        assert_eq!(
            store
                .read(|tx| tx.query_value::<i64>(
                    "SELECT count(*) FROM attempt_claims WHERE key = 'login:ann@example.com'",
                    &[]
                ))
                .unwrap(),
            Some(0)
        );
    }
}
