//! The hot path's per-stage timers (`authq_stage_seconds_total`, `authq_stage_runs_total`):
//! what `authq bench --spawn` shows as "where the time goes". Two atomic adds per stage per
//! request.

use super::{Counter, Seconds};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use std::time::{Duration, Instant};

/// `stage`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// Cumulative time and count of one stage of the hot path: `authq_stage_seconds_total` and
/// `authq_stage_runs_total` with its `stage` label.
#[derive(Debug, Default)]
pub struct StageTimer {
    seconds: Seconds,
    count: Counter,
}

impl StageTimer {
    /// Adds the time elapsed since `start`.
    pub fn since(&self, start: Instant) {
        self.add(start.elapsed());
    }

    /// Adds `elapsed`.
    pub fn add(&self, elapsed: Duration) {
        self.seconds.inc_by(elapsed.as_secs_f64());
        self.count.inc();
    }

    /// Total time and count so far.
    pub fn snapshot(&self) -> StageSnapshot {
        StageSnapshot {
            nanos: (self.seconds.get() * 1e9) as u64,
            count: self.count.get(),
        }
    }
}

/// Per-stage timers of the hot path, for `authq bench`'s "where the time goes".
///
/// Stages overlap by design: `store` and `hash` are awaited inside the handler, and `total`
/// spans a delivery from the start of its task to its acknowledgement.
#[derive(Debug)]
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
    seconds: Family<StageLabel, Seconds>,
    runs: Family<StageLabel, Counter>,
}

impl Default for Stages {
    fn default() -> Self {
        let (seconds, runs) = (Family::default(), Family::default());
        let timer = |stage| StageTimer {
            seconds: seconds.get_or_create_owned(&StageLabel { stage }),
            count: runs.get_or_create_owned(&StageLabel { stage }),
        };
        Self {
            decode: timer("decode"),
            store: timer("store"),
            hash: timer("hash"),
            encode: timer("encode"),
            publish: timer("publish"),
            ack: timer("ack"),
            total: timer("total"),
            seconds,
            runs,
        }
    }
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
    pub(super) fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "stage",
            "Cumulative time per stage of the hot path (stages overlap)",
            Unit::Seconds,
            self.seconds.clone(),
        );
        r.register(
            "stage_runs",
            "Times each stage of the hot path ran",
            self.runs.clone(),
        );
    }

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
