//! The fault-injection checkpoints on a request's path ([`crate::delivery`]): one line each
//! there, and nothing at all in a build without the `fault-injection` feature (each function
//! is then an empty `#[inline(always)]` body the compiler removes).
//!
//! With the feature (test builds only), each asks [`crate::faults::Faults`] whether the tests
//! armed it for this request's operation.

use crate::delivery::{Shared, Source};
use authq_protocol::Operation;
use lapin::Channel;
use lapin::message::Delivery;

/// Where on the path a checkpoint "crashes" the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crash {
    /// The handler has committed its effect (and outcome); the reply is not yet published.
    AfterCommit,
    /// The reply is published; the request is not yet acknowledged.
    AfterReply,
}

/// Waits while the tests hold request processing (the consumers' prefetch fills meanwhile).
/// The quarantine is never held: it is where a full tube's refusals are answered.
#[cfg_attr(not(feature = "fault-injection"), inline(always))]
#[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
pub(crate) async fn held(shared: &Shared, source: Source) {
    #[cfg(feature = "fault-injection")]
    while source != Source::Quarantine && shared.faults.deliveries_held() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Panics when the tests armed a handler panic for `op`.
#[cfg_attr(not(feature = "fault-injection"), inline(always))]
#[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
pub(crate) fn panic_if_armed(shared: &Shared, op: Operation) {
    #[cfg(feature = "fault-injection")]
    if shared.faults.fire(crate::faults::FaultPoint::Panic, op) {
        panic!("injected fault: a handler panics");
    }
}

/// When `point` is armed for this request's operation, "crashes" there: closes the delivery's
/// channel with the request unacknowledged, as if the process had died, and says so (the
/// caller then stops processing the request).
#[cfg_attr(not(feature = "fault-injection"), inline(always))]
#[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
pub(crate) async fn crashed(
    shared: &Shared,
    channel: &Channel,
    source: Source,
    delivery: &Delivery,
    point: Crash,
) -> bool {
    #[cfg(feature = "fault-injection")]
    {
        use crate::faults::FaultPoint;
        let op = match source {
            Source::Tube(_) => Operation::parse(delivery.routing_key.as_str()),
            Source::Unrouted | Source::Quarantine => None,
        };
        let point = match point {
            Crash::AfterCommit => FaultPoint::AfterCommit,
            Crash::AfterReply => FaultPoint::AfterReply,
        };
        if let Some(op) = op
            && shared.faults.fire(point, op)
        {
            tracing::warn!(
                ?point,
                "injected fault: crashing before the acknowledgement"
            );
            let _ = channel.close(320, "injected crash".into()).await;
            return true;
        }
    }
    false
}
