//! The worker's metrics: one Prometheus registry ([`prometheus_client`]) that the live
//! endpoint (`--metrics-addr`, `crate::observe`), `--metrics-file` and `authq bench` all read,
//! so there is one source of truth.
//!
//! Names follow Prometheus conventions (`authq_…_total` counters, `_seconds` in base units).
//! Every label set is bounded: `operation` is a known operation or `unknown`, `outcome` is `ok`
//! or an error code, `reason` a dead-letter reason, `tube` a tube name, `stage` a hot-path
//! stage. No email, user id, session or caller ever becomes a label.
//!
//! The hot path never takes a lock here: each operation's `ok` counter and duration histogram
//! are made at start-up and indexed by the operation.

use authq_protocol::names::DeadLetterReason;
use authq_protocol::{ErrorCode, Operation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

mod stages;
pub use stages::{StageSnapshot, StageTimer, Stages, StagesSnapshot};

/// A monotonically increasing counter (`inc`, `get`), registered in the worker's registry.
pub type Counter = prometheus_client::metrics::counter::Counter;

/// A counter of seconds.
pub(crate) type Seconds = prometheus_client::metrics::counter::Counter<f64, AtomicU64>;

/// The worker's metrics. Shared by every consumer of a worker; read with [`Metrics::snapshot`]
/// or [`Metrics::encode`].
#[derive(Debug)]
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
    /// argon2 runs waiting for a hashing thread.
    pub argon2_queue_depth: Gauge,
    /// How long argon2 runs waited for a hashing thread.
    pub argon2_wait: Histogram,
    /// Store transactions that wrote.
    pub store_writes: Counter,
    /// Store calls that failed.
    pub store_errors: Counter,
    /// Store calls as handlers await them (blocking-pool hand-off and permit included).
    pub store_calls: Histogram,
    /// Mutating requests answered from their first outcome (a redelivery or a retry with the
    /// same `message_id`) instead of being done again.
    pub replayed: Counter,
    /// Prefetched requests returned to their queue (nack with requeue) at shutdown.
    pub requeued: Counter,
    /// Times the worker reconnected to the broker after losing its connection.
    pub reconnects: Counter,
    /// Deliveries being processed now.
    pub in_flight: Gauge,
    /// Events in the outbox not yet relayed (read by `crate::observe`).
    pub outbox_backlog: Gauge,
    /// Age of the oldest event not yet relayed, in seconds (read by `crate::observe`).
    pub outbox_lag: Gauge<f64, AtomicU64>,
    /// Messages waiting in each tube (read from the broker by `crate::observe`).
    pub tube_messages: Family<TubeLabel, Gauge>,
    /// Consumers attached to each tube (read from the broker by `crate::observe`).
    pub tube_consumers: Family<TubeLabel, Gauge>,
    /// 1 while the worker is ready (broker connected, consumers attached, store answering).
    pub ready: Gauge,
    /// Where the time goes: cumulative time per stage of the hot path.
    pub stages: Stages,
    requests: Family<RequestLabels, Counter>,
    /// `ok` requests per operation, indexed like [`Operation::ALL`] (then `unknown`).
    requests_ok: Vec<Counter>,
    durations: Family<OperationLabel, Histogram, fn() -> Histogram>,
    /// Duration histograms, indexed like `requests_ok`.
    duration_of: Vec<Histogram>,
    dead_letters: Family<ReasonLabel, Counter>,
    registry: Registry,
}

/// `operation` and `outcome` (`ok` or an error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A known operation's name, or `unknown`.
    pub operation: &'static str,
    /// `ok`, the error code replied, or `replayed` (answered from the request's first outcome).
    pub outcome: &'static str,
}

/// `operation`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// A known operation's name, or `unknown`.
    pub operation: &'static str,
}

/// `reason`: why a message was dead-lettered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A [`DeadLetterReason`]'s name.
    pub reason: &'static str,
}

/// `tube`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TubeLabel {
    /// The tube's name without the namespace (`session`, `password`, …).
    pub tube: &'static str,
}

/// Request durations: 0.5 ms to about 16 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The label of `op` (`None`: an unknown operation) and its index in the per-operation tables.
fn operation_slot(op: Option<Operation>) -> (&'static str, usize) {
    match op.and_then(|op| {
        Operation::ALL
            .iter()
            .position(|o| *o == op)
            .map(|i| (op, i))
    }) {
        Some((op, i)) => (op.as_str(), i),
        None => ("unknown", Operation::ALL.len()),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authq");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<OperationLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_buckets);
        let slots = (0..=Operation::ALL.len()).map(|i| {
            let op = Operation::ALL.get(i).map_or("unknown", |op| op.as_str());
            (op, i)
        });
        let (mut requests_ok, mut duration_of) = (Vec::new(), Vec::new());
        for (operation, _) in slots {
            requests_ok.push(requests.get_or_create_owned(&RequestLabels {
                operation,
                outcome: "ok",
            }));
            duration_of.push(durations.get_or_create_owned(&OperationLabel { operation }));
        }
        let m = Self {
            received: Counter::default(),
            replied_ok: Counter::default(),
            replied_error: Counter::default(),
            expired: Counter::default(),
            dead_lettered: Counter::default(),
            argon2_runs: Counter::default(),
            argon2_background_runs: Counter::default(),
            argon2_rescued: Counter::default(),
            argon2_queue_depth: Gauge::default(),
            argon2_wait: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            store_writes: Counter::default(),
            store_errors: Counter::default(),
            store_calls: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            replayed: Counter::default(),
            requeued: Counter::default(),
            reconnects: Counter::default(),
            in_flight: Gauge::default(),
            outbox_backlog: Gauge::default(),
            outbox_lag: Gauge::default(),
            tube_messages: Family::default(),
            tube_consumers: Family::default(),
            ready: Gauge::default(),
            stages: Stages::default(),
            requests,
            requests_ok,
            durations,
            duration_of,
            dead_letters: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Requests answered, by operation and outcome (ok or the error code)",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from delivery to acknowledgement, by operation",
            Unit::Seconds,
            m.durations.clone(),
        );
        r.register(
            "requests_in_flight",
            "Deliveries being processed",
            m.in_flight.clone(),
        );
        r.register(
            "requests_expired",
            "Requests dropped because their deadline had passed",
            m.expired.clone(),
        );
        r.register(
            "dead_letters",
            "Messages sent to the dead-letter queue, by reason",
            m.dead_letters.clone(),
        );
        r.register(
            "deliveries",
            "Deliveries taken from any queue",
            m.received.clone(),
        );
        r.register(
            "replayed",
            "Mutating requests answered from their first outcome",
            m.replayed.clone(),
        );
        r.register(
            "requeued",
            "Prefetched requests returned to their tube at shutdown",
            m.requeued.clone(),
        );
        r.register(
            "argon2_runs",
            "argon2 hashes and verifications (dummy ones included)",
            m.argon2_runs.clone(),
        );
        r.register(
            "argon2_background_runs",
            "argon2 runs taken by an idle-class thread",
            m.argon2_background_runs.clone(),
        );
        r.register(
            "argon2_rescued",
            "argon2 runs a normal-class thread took from starved idle-class threads",
            m.argon2_rescued.clone(),
        );
        r.register(
            "argon2_queue_depth",
            "argon2 runs waiting for a hashing thread",
            m.argon2_queue_depth.clone(),
        );
        r.register_with_unit(
            "argon2_wait",
            "Time argon2 runs waited for a hashing thread",
            Unit::Seconds,
            m.argon2_wait.clone(),
        );
        r.register(
            "store_writes",
            "Store transactions that wrote",
            m.store_writes.clone(),
        );
        r.register(
            "store_errors",
            "Store calls that failed",
            m.store_errors.clone(),
        );
        r.register_with_unit(
            "store_call_duration",
            "Store calls as handlers await them",
            Unit::Seconds,
            m.store_calls.clone(),
        );
        r.register(
            "broker_reconnects",
            "Reconnections to the broker after a lost connection",
            m.reconnects.clone(),
        );
        r.register(
            "outbox_backlog",
            "Events in the outbox not yet relayed",
            m.outbox_backlog.clone(),
        );
        r.register_with_unit(
            "outbox_relay_lag",
            "Age of the oldest event not yet relayed",
            Unit::Seconds,
            m.outbox_lag.clone(),
        );
        r.register(
            "tube_messages",
            "Messages waiting in each tube",
            m.tube_messages.clone(),
        );
        r.register(
            "tube_consumers",
            "Consumers attached to each tube",
            m.tube_consumers.clone(),
        );
        r.register(
            "ready",
            "1 while the worker is ready: broker connected, consumers attached, store answering",
            m.ready.clone(),
        );
        m.stages.register(r);
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts a request answered: `outcome` is `Ok` or the error code replied; `op` is `None`
    /// for an operation nobody serves.
    pub fn answered(&self, op: Option<Operation>, outcome: Result<(), ErrorCode>) {
        let (operation, slot) = operation_slot(op);
        match outcome {
            Ok(()) => {
                self.replied_ok.inc();
                self.requests_ok[slot].inc();
            }
            Err(code) => {
                self.replied_error.inc();
                self.requests
                    .get_or_create(&RequestLabels {
                        operation,
                        outcome: code.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// Counts a mutating request answered from its first outcome (outcome `replayed`).
    pub fn replayed(&self, op: Option<Operation>) {
        self.replayed.inc();
        let (operation, _) = operation_slot(op);
        self.requests
            .get_or_create(&RequestLabels {
                operation,
                outcome: "replayed",
            })
            .inc();
    }

    /// Error replies sent with `code` for `op` so far.
    pub fn errors(&self, op: Option<Operation>, code: ErrorCode) -> u64 {
        let (operation, _) = operation_slot(op);
        self.requests
            .get_or_create(&RequestLabels {
                operation,
                outcome: code.as_str(),
            })
            .get()
    }

    /// Records a delivery's time from its start to its acknowledgement.
    pub fn request_took(&self, op: Option<Operation>, elapsed: Duration) {
        self.duration_of[operation_slot(op).1].observe(elapsed.as_secs_f64());
        self.stages.total.add(elapsed);
    }

    /// Counts a message sent to the dead-letter queue.
    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered.inc();
        self.dead_letters
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The registry in the Prometheus text format (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail; a metric that refuses to encode is left out.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
    fn outcomes_are_counted_by_operation_and_code_and_exposed() {
        let m = Metrics::default();
        m.answered(Some(Operation::Check), Err(ErrorCode::SessionInvalid));
        m.answered(Some(Operation::Check), Err(ErrorCode::SessionInvalid));
        m.answered(Some(Operation::Check), Ok(()));
        m.answered(None, Err(ErrorCode::UnknownOperation));
        m.request_took(Some(Operation::Check), Duration::from_millis(3));
        m.dead_lettered(DeadLetterReason::Malformed);
        assert_eq!(
            m.errors(Some(Operation::Check), ErrorCode::SessionInvalid),
            2
        );
        assert_eq!(m.errors(None, ErrorCode::UnknownOperation), 1);
        assert_eq!(m.snapshot().replied_error, 3);
        assert_eq!(m.snapshot().replied_ok, 1);
        let text = m.encode();
        for line in [
            r#"authq_requests_total{operation="check",outcome="session_invalid"} 2"#,
            r#"authq_requests_total{operation="check",outcome="ok"} 1"#,
            r#"authq_requests_total{operation="unknown",outcome="unknown_operation"} 1"#,
            r#"authq_request_duration_seconds_count{operation="check"} 1"#,
            r#"authq_dead_letters_total{reason="malformed"} 1"#,
            r#"authq_stage_runs_total{stage="total"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
