//! The transactional outbox of auth events: appended in the transaction of the change they
//! describe, published by one relay at a time (across all workers on all hosts) in commit
//! order, then deleted.

use super::StoreError;
use super::query::{Lock, Tx, args};

/// An event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its place in the outbox (publication order).
    pub seq: i64,
    /// The routing key to publish it with.
    pub routing_key: String,
    /// The event's JSON, sealed.
    pub sealed: Vec<u8>,
}

impl Tx<'_> {
    /// Events waiting to be relayed, and the oldest one's `created_at` (Unix ms).
    pub fn outbox_figures(&mut self) -> Result<(i64, Option<i64>), StoreError> {
        let figures = self.query_opt("SELECT count(*), min(created_at) FROM outbox", &[], |r| {
            Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(1)?))
        })?;
        Ok(figures.unwrap_or((0, None)))
    }

    /// Appends an event to the outbox, in this transaction. On PostgreSQL the append takes
    /// [`Lock::OutboxAppend`] until commit, so sequence numbers are visible in commit order
    /// (the relay never publishes `seq` 11 while 10 is still uncommitted).
    pub fn enqueue_event(
        &mut self,
        routing_key: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        self.lock(Lock::OutboxAppend)?;
        self.execute(
            "INSERT INTO outbox (routing_key, sealed, created_at) VALUES (?1, ?2, ?3)",
            args![routing_key, sealed, now],
        )?;
        Ok(())
    }

    /// Claims up to `limit` of the oldest unpublished events for `lease_ms`, unless another
    /// relay holds a claim (events go out one relay at a time, in order). Run in a write
    /// transaction: the relay lock ([`Lock::OutboxRelay`]) serialises claims on PostgreSQL.
    pub fn claim_events(
        &mut self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.lock(Lock::OutboxRelay)?;
        let held: Option<i64> = self.query_value(
            "SELECT count(*) FROM outbox WHERE claimed_until > ?1",
            args![now],
        )?;
        if held.unwrap_or(0) > 0 {
            return Ok(Vec::new());
        }
        let events = self.query_all(
            "SELECT seq, routing_key, sealed FROM outbox ORDER BY seq LIMIT ?1",
            args![limit],
            |r| {
                Ok(OutboxEvent {
                    seq: r.get(0)?,
                    routing_key: r.get(1)?,
                    sealed: r.get(2)?,
                })
            },
        )?;
        if let Some(last) = events.last() {
            self.execute(
                "UPDATE outbox SET claimed_until = ?1 WHERE seq <= ?2",
                args![now.saturating_add(lease_ms), last.seq],
            )?;
        }
        Ok(events)
    }

    /// Removes published events: those claimed, up to and including `seq`.
    pub fn delete_events(&mut self, up_to_seq: i64) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM outbox WHERE seq <= ?1 AND claimed_until > 0",
            args![up_to_seq],
        )?;
        Ok(())
    }

    /// Events not yet published.
    pub fn outbox_backlog(&mut self) -> Result<u64, StoreError> {
        let n: Option<i64> = self.query_value("SELECT count(*) FROM outbox", args![])?;
        Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}
