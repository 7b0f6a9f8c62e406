//! Counters the worker keeps about itself, for tests, benchmarks and operators.

use authq_protocol::ErrorCode;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The worker's counters. Shared by every consumer of a worker; read with [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Deliveries taken from any queue.
    pub received: Counter,
    /// Replies published with `status: ok`.
    pub replied_ok: Counter,
    /// Replies published with `status: error`.
    pub replied_error: Counter,
    /// Requests dropped because their deadline had passed when they were taken.
    pub expired: Counter,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: Counter,
    /// argon2 runs (hashes and verifications, including dummy verifications).
    pub argon2_runs: Counter,
    /// argon2 runs taken by an idle-class thread ([`crate::hashing`]).
    pub argon2_background_runs: Counter,
    /// argon2 runs queued for the idle-class threads that a normal-class thread took after
    /// they had waited [`crate::hashing::PATIENCE`] (the idle-class threads were starved).
    pub argon2_rescued: Counter,
    /// Store transactions that wrote.
    pub store_writes: Counter,
    /// Mutating requests answered from their first outcome (a redelivery or a retry with the
    /// same `message_id`) instead of being done again.
    pub replayed: Counter,
    /// Prefetched requests returned to their queue (nack with requeue) at shutdown.
    pub requeued: Counter,
    /// Times the worker reconnected to the broker after losing its connection.
    pub reconnects: Counter,
    /// Where the time goes: cumulative time per stage of the hot path.
    pub stages: Stages,
    errors: [Counter; ERROR_SLOTS],
}

/// Cumulative time and count of one stage of the hot path (two relaxed atomic adds per use).
#[derive(Debug, Default)]
pub struct StageTimer {
    nanos: AtomicU64,
    count: AtomicU64,
}

impl StageTimer {
    /// Adds the time elapsed since `start`.
    pub fn since(&self, start: Instant) {
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Total time and count so far.
    pub fn snapshot(&self) -> StageSnapshot {
        StageSnapshot {
            nanos: self.nanos.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// Per-stage timers of the hot path, for `authq bench`'s "where the time goes".
///
/// Stages overlap by design: `store` and `hash` are awaited inside the handler, and `total`
/// spans a delivery from the start of its task to its acknowledgement.
#[derive(Debug, Default)]
pub struct Stages {
    /// Decoding the request body into its type.
    pub decode: StageTimer,
    /// Store calls, as awaited by handlers (blocking-pool hand-off included).
    pub store: StageTimer,
    /// argon2 runs, on the hashing threads (queueing before a thread is free excluded).
    pub hash: StageTimer,
    /// Encoding the reply envelope.
    pub encode: StageTimer,
    /// Publishing the reply.
    pub publish: StageTimer,
    /// Acknowledging the request.
    pub ack: StageTimer,
    /// A delivery's whole task, start to acknowledgement.
    pub total: StageTimer,
}

/// A point-in-time copy of one [`StageTimer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StageSnapshot {
    /// Cumulative nanoseconds.
    pub nanos: u64,
    /// How many times the stage ran.
    pub count: u64,
}

/// A point-in-time copy of [`Stages`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StagesSnapshot {
    /// See [`Stages::decode`].
    pub decode: StageSnapshot,
    /// See [`Stages::store`].
    pub store: StageSnapshot,
    /// See [`Stages::hash`].
    pub hash: StageSnapshot,
    /// See [`Stages::encode`].
    pub encode: StageSnapshot,
    /// See [`Stages::publish`].
    pub publish: StageSnapshot,
    /// See [`Stages::ack`].
    pub ack: StageSnapshot,
    /// See [`Stages::total`].
    pub total: StageSnapshot,
}

impl Stages {
    /// A copy of every stage's figures.
    pub fn snapshot(&self) -> StagesSnapshot {
        StagesSnapshot {
            decode: self.decode.snapshot(),
            store: self.store.snapshot(),
            hash: self.hash.snapshot(),
            encode: self.encode.snapshot(),
            publish: self.publish.snapshot(),
            ack: self.ack.snapshot(),
            total: self.total.snapshot(),
        }
    }
}

const ERROR_SLOTS: usize = 32;

impl Metrics {
    /// Counts an error reply by code.
    pub fn count_error(&self, code: ErrorCode) {
        self.replied_error.inc();
        let slot = ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .unwrap_or(ERROR_SLOTS - 1)
            .min(ERROR_SLOTS - 1);
        self.errors[slot].inc();
    }

    /// Error replies sent with `code` so far.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.errors[i.min(ERROR_SLOTS - 1)].get())
    }

    /// A copy of the main counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            received: self.received.get(),
            replied_ok: self.replied_ok.get(),
            replied_error: self.replied_error.get(),
            expired: self.expired.get(),
            dead_lettered: self.dead_lettered.get(),
            argon2_runs: self.argon2_runs.get(),
            argon2_background_runs: self.argon2_background_runs.get(),
            argon2_rescued: self.argon2_rescued.get(),
            store_writes: self.store_writes.get(),
            replayed: self.replayed.get(),
            requeued: self.requeued.get(),
            reconnects: self.reconnects.get(),
            stages: self.stages.snapshot(),
        }
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// See [`Metrics::received`].
    pub received: u64,
    /// See [`Metrics::replied_ok`].
    pub replied_ok: u64,
    /// See [`Metrics::replied_error`].
    pub replied_error: u64,
    /// See [`Metrics::expired`].
    pub expired: u64,
    /// See [`Metrics::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Metrics::argon2_runs`].
    pub argon2_runs: u64,
    /// See [`Metrics::argon2_background_runs`].
    pub argon2_background_runs: u64,
    /// See [`Metrics::argon2_rescued`].
    pub argon2_rescued: u64,
    /// See [`Metrics::store_writes`].
    pub store_writes: u64,
    /// See [`Metrics::replayed`].
    pub replayed: u64,
    /// See [`Metrics::requeued`].
    pub requeued: u64,
    /// See [`Metrics::reconnects`].
    pub reconnects: u64,
    /// See [`Metrics::stages`].
    pub stages: StagesSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_slot() {
        assert!(ErrorCode::ALL.len() < ERROR_SLOTS);
        let m = Metrics::default();
        m.count_error(ErrorCode::SessionInvalid);
        m.count_error(ErrorCode::SessionInvalid);
        m.count_error(ErrorCode::Internal);
        assert_eq!(m.errors(ErrorCode::SessionInvalid), 2);
        assert_eq!(m.errors(ErrorCode::Internal), 1);
        assert_eq!(m.errors(ErrorCode::BadRequest), 0);
        assert_eq!(m.snapshot().replied_error, 3);
    }
}
