//! Idempotency outcomes: the first reply of each mutating request, sealed, keyed by the caller
//! and the request's `message_id` (see `crate::idempotency`).

use super::StoreError;
use super::query::{Lock, Tx, args};
use crate::idempotency::OutcomeKey;

/// A request's recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedOutcome {
    /// SHA-256 of the request it answers (operation and body).
    pub request_digest: Vec<u8>,
    /// The reply, sealed (see `crate::idempotency`).
    pub sealed: Vec<u8>,
}

impl Tx<'_> {
    /// The outcome recorded for the request `message_id` of `caller` at or after
    /// `recorded_since`, if any.
    pub fn find_outcome(
        &mut self,
        caller: &str,
        message_id: &str,
        recorded_since: i64,
    ) -> Result<Option<RecordedOutcome>, StoreError> {
        self.query_opt(
            "SELECT request_digest, sealed FROM outcomes
             WHERE caller = ?1 AND message_id = ?2 AND recorded_at >= ?3",
            args![caller, message_id, recorded_since],
            |r| {
                Ok(RecordedOutcome {
                    request_digest: r.get(0)?,
                    sealed: r.get(1)?,
                })
            },
        )
    }

    /// The first step of a transaction that records the outcome under `key`: waits for any
    /// other transaction recording the same key (on any worker) to end, forgets an outcome
    /// recorded before `recorded_since` (out of the window), and returns the outcome already
    /// recorded, if there is one (then the caller answers with it and does nothing else).
    pub fn begin_outcome(
        &mut self,
        key: &OutcomeKey,
        recorded_since: i64,
    ) -> Result<Option<RecordedOutcome>, StoreError> {
        self.lock(Lock::Outcome(key.lock_key()))?;
        self.execute(
            "DELETE FROM outcomes WHERE caller = ?1 AND message_id = ?2 AND recorded_at < ?3",
            args![&key.caller, &key.message_id, recorded_since],
        )?;
        self.find_outcome(&key.caller, &key.message_id, recorded_since)
    }

    /// Records a request's outcome (in the transaction of its effect).
    pub fn record_outcome(
        &mut self,
        key: &OutcomeKey,
        sealed: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO outcomes (caller, message_id, request_digest, sealed, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                &key.caller,
                &key.message_id,
                &key.request_digest,
                sealed,
                now
            ],
        )?;
        Ok(())
    }

    /// Deletes outcomes recorded before `recorded_before`. Returns how many went.
    pub fn purge_outcomes(&mut self, recorded_before: i64) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM outcomes WHERE recorded_at < ?1",
            args![recorded_before],
        )
    }
}
