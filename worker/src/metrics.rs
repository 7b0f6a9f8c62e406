//! Counters the worker keeps about itself, for tests, benchmarks and operators.

use authq_protocol::ErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Store transactions that wrote.
    pub store_writes: Counter,
    /// Mutating requests answered from their first outcome (a redelivery or a retry with the
    /// same `message_id`) instead of being done again.
    pub replayed: Counter,
    /// Prefetched requests returned to their queue (nack with requeue) at shutdown.
    pub requeued: Counter,
    /// Times the worker reconnected to the broker after losing its connection.
    pub reconnects: Counter,
    errors: [Counter; ERROR_SLOTS],
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
            store_writes: self.store_writes.get(),
            replayed: self.replayed.get(),
            requeued: self.requeued.get(),
            reconnects: self.reconnects.get(),
        }
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// See [`Metrics::store_writes`].
    pub store_writes: u64,
    /// See [`Metrics::replayed`].
    pub replayed: u64,
    /// See [`Metrics::requeued`].
    pub requeued: u64,
    /// See [`Metrics::reconnects`].
    pub reconnects: u64,
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
