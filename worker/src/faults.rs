//! Fault hooks for tests (cargo feature `fault-injection`, which only the test build enables):
//! make the worker "crash" at a chosen point of one request's path, so the tests can prove what
//! a real crash there does.
//!
//! A crash here closes the delivery's channel without acknowledging it (and without replying,
//! for [`FaultPoint::AfterCommit`]): exactly what the broker sees when a worker process dies.
//! The broker returns the request to its queue, the worker's supervisor reconnects, and the
//! request is delivered again.

use authq_protocol::Operation;
use std::sync::Mutex;

/// Where on a request's path the worker crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the handler committed its effect (and outcome), before the reply is published.
    AfterCommit,
    /// After the reply was published, before the request is acknowledged.
    AfterReply,
    /// Inside the handler: it panics.
    Panic,
}

/// Armed faults: each fires once, on the next request of its operation.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Vec<(FaultPoint, Operation)>>,
    relay_held: std::sync::atomic::AtomicBool,
    deliveries_held: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// Holds (or releases) the event relay: while held it publishes nothing.
    pub fn hold_relay(&self, held: bool) {
        self.relay_held
            .store(held, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the relay is held.
    pub fn relay_held(&self) -> bool {
        self.relay_held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds (or releases) request processing: while held, each delivery waits before it is
    /// looked at, so the consumers' prefetch fills and the rest stays queued in the broker.
    pub fn hold_deliveries(&self, held: bool) {
        self.deliveries_held
            .store(held, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether request processing is held.
    pub fn deliveries_held(&self) -> bool {
        self.deliveries_held
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Arms `point` for the next request of `op`.
    pub fn arm(&self, point: FaultPoint, op: Operation) {
        self.lock().push((point, op));
    }

    /// Whether `point` is armed for `op`; disarms it if so.
    pub fn fire(&self, point: FaultPoint, op: Operation) -> bool {
        let mut armed = self.lock();
        match armed.iter().position(|a| *a == (point, op)) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(FaultPoint, Operation)>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }
}
