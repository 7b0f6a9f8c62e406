//! One delivery's life, top to bottom: the worker's hot path. [`process`] and its numbered
//! steps are the whole story; the handlers, the store and the reply encoding are one call each.
//!
//! ```text
//! 0. from the quarantine? ─────── yes ─▶ refused by a full tube: answer `authq.refused`, ack;
//!                                        else dead-letter redacted, ack
//! 1. deadline passed? ─────────── yes ─▶ ack, count, done (no side effect)
//! 2. no reply_to? ─────────────── yes ─▶ dead-letter with the reason, ack
//! 3. reply_to not the caller's? ─ yes ─▶ dead-letter, ack
//! 4. no correlation_id, too large, unknown operation, caller lacks the role?
//!                                 yes ─▶ error reply (nothing done)
//!    (a known operation from the unrouted queue is served: its transient tube was missing
//!    when it was published)
//! 5. seen before (same caller and message_id)? ─ yes ─▶ replay the recorded reply
//! 6. handler: decode → store / argon2 → outcome recorded with the effect (panics caught:
//!    dead-letter, reply internal)
//! 7. count and log by outcome (reply, replayed, failed, panicked)
//! 8. publish the reply to reply_to (same correlation_id), then ack on the same channel
//! ```
//!
//! - **Reply, then ack, on the same channel.** The ack is sent only once lapin has written the
//!   reply's frames: lapin's writer sends method frames (an ack) ahead of queued publish
//!   frames, so issuing both at once could put the ack first, and a crash then would lose a
//!   request whose reply never left. A crash between the two redelivers the request
//!   (at-least-once; step 5 answers it from its outcome). The ack goes straight to the channel
//!   (`Channel::basic_ack`): `Acker::ack` would route it through lapin's internal RPC task, one
//!   more task wake-up per request.
//! - **Deadlines are checked here too**: RabbitMQ enforces `expiration` only at a queue's head.
//! - **No `reply_to`, no processing**: an effect nobody can be told about is a surprise; the
//!   dead-letter queue keeps the request (redacted) for inspection.
//!
//! Test builds put fault checkpoints between the steps (`crate::checkpoints`: one line each,
//! nothing without the `fault-injection` feature).

use crate::caller;
use crate::checkpoints::{self, Crash};
use crate::error::{HandlerError, InternalError};
use crate::handlers::{self, Ctx};
use crate::idempotency::OutcomeScope;
use crate::reply;
use authq_protocol::names::DeadLetterReason;
use authq_protocol::{ErrorCode, Names, Operation, Tube, encode_error};
use futures_util::FutureExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tracing::{Instrument, debug, error, field, info_span, warn};

/// Where a delivery came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A tube: the routing key names the operation.
    Tube(Tube),
    /// The unrouted queue: nobody binds the routing key.
    Unrouted,
    /// The quarantine queue: what the broker dead-lettered from a tube, to relay redacted.
    Quarantine,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tube(t) => t.as_str(),
            Self::Unrouted => "unrouted",
            Self::Quarantine => "quarantine",
        }
    }
}

/// What every delivery task shares.
#[derive(Debug)]
pub struct Shared {
    /// The handlers' context.
    pub ctx: Ctx,
    /// Broker names.
    pub names: Names,
    /// The broker's nodes (one, or several of a cluster), for (re)connecting.
    pub nodes: authq_amqp::BrokerNodes,
    /// Readiness, as `/readyz` reports it.
    pub health: Arc<crate::observe::Health>,
    /// The clock callers' deadlines are compared with (the system clock outside tests).
    pub deadline_clock: Arc<dyn crate::clock::Clock>,
    /// Armed fault hooks (tests only).
    #[cfg(feature = "fault-injection")]
    pub faults: Arc<crate::faults::Faults>,
}

/// How a request's handling ended, before anything goes back on the wire.
#[derive(Debug)]
enum Outcome {
    /// The handler answered: this `ok` reply body.
    Reply(Vec<u8>),
    /// Answered before (same caller, same `message_id`): the first reply, replayed.
    Replayed(Vec<u8>),
    /// Refused or failed: answered with this error.
    Failed(HandlerError),
    /// The handler panicked: the request is dead-lettered and answered `internal`.
    Panicked,
}

/// Processes one delivery to the end: reply (or dead-letter, or drop) and acknowledgement.
pub async fn process(shared: Arc<Shared>, channel: Channel, source: Source, delivery: Delivery) {
    let props = &delivery.properties;
    // Every log line of a request carries an id: its `message_id`, or one made here.
    let made_id;
    let request_id = match props.message_id() {
        Some(id) => id.as_str(),
        None => {
            made_id = format!("authq-{}", uuid::Uuid::now_v7().simple());
            made_id.as_str()
        }
    };
    let span = info_span!(
        "request",
        op = %delivery.routing_key,
        request_id,
        correlation_id = props.correlation_id().as_ref().map(|s| s.as_str()),
        tube = source.as_str(),
        user_id = field::Empty,
    );
    checkpoints::held(&shared, source).await;
    let start = Instant::now();
    // The operation as a metrics label: a known one, else `unknown` (never the raw key).
    let op = match source {
        Source::Tube(_) | Source::Unrouted => Operation::parse(delivery.routing_key.as_str()),
        Source::Quarantine => None,
    };
    let metrics = &shared.ctx.metrics;
    metrics.in_flight.inc();
    run(&shared, &channel, source, &delivery, op)
        .instrument(span)
        .await;
    metrics.in_flight.dec();
    metrics.request_took(op, start.elapsed());
}

/// The steps, numbered; each early `return` has acknowledged (or deliberately not) already.
async fn run(
    shared: &Shared,
    channel: &Channel,
    source: Source,
    delivery: &Delivery,
    label: Option<Operation>,
) {
    let metrics = &shared.ctx.metrics;
    if source == Source::Quarantine {
        // 0. What a full tube refused: never processed, its caller told at once.
        if reply::refused_by_full_tube(delivery.properties.headers().as_ref()) {
            answer_refusal(shared, channel, delivery).await;
            return;
        }
        // 0. The broker's own dead letter of a tube: never processed, relayed redacted.
        let reason = reply::broker_death_reason(delivery.properties.headers().as_ref());
        warn!(
            reason = reason.as_str(),
            "dead-lettered by the broker: relayed redacted"
        );
        dead_letter_and_ack(shared, channel, delivery, reason).await;
        return;
    }
    metrics.received.inc();
    let props = &delivery.properties;

    // 1. A request whose caller has given up is dropped before any side effect.
    if let Some(deadline) = reply::deadline(props.headers().as_ref())
        && shared.deadline_clock.now_ms() > deadline
    {
        metrics.expired.inc();
        debug!(deadline, "deadline passed: dropped");
        ack(channel, delivery).await;
        return;
    }

    // 2. Nobody to answer: dead-letter, saying why.
    let Some(reply_to) = props.reply_to().as_ref().filter(|r| !r.as_str().is_empty()) else {
        let reason = unanswerable_reason(shared, source, delivery);
        warn!(reason = reason.as_str(), "no reply_to: dead-lettered");
        dead_letter_and_ack(shared, channel, delivery, reason).await;
        return;
    };
    // 3. A reply_to that is not the caller's own (a tube, another service's queue): never
    // answered, never processed (`crate::caller`).
    let user_id = props.user_id().as_ref().map(|u| u.as_str());
    if !caller::reply_to_allowed(&shared.names, reply_to.as_str(), user_id) {
        warn!("reply_to is not the caller's own: dead-lettered");
        dead_letter_and_ack(
            shared,
            channel,
            delivery,
            DeadLetterReason::ForbiddenReplyTo,
        )
        .await;
        return;
    }

    // 4. Refused before any effect: no correlation_id, too large, unknown operation, a caller
    // without the operation's role. Else 5 and 6, seen before? and the handler.
    let (admins, resets) = (
        &shared.ctx.config.admin_callers,
        &shared.ctx.config.reset_callers,
    );
    let outcome = match correlated(delivery)
        .and_then(|()| operation(source, delivery, shared.ctx.config.max_body_bytes))
        .and_then(|op| caller::authorize(op, user_id, admins, resets).map(|()| op))
    {
        Err(e) => Outcome::Failed(e),
        Ok(op) => handle(shared, op, delivery).await,
    };
    if checkpoints::crashed(shared, channel, source, delivery, Crash::AfterCommit).await {
        return;
    }

    // 7. The reply body, counted and logged by outcome.
    let body = match outcome {
        Outcome::Replayed(body) => {
            metrics.replayed(label);
            debug!("answered before: replaying the first outcome");
            body
        }
        Outcome::Reply(body) => {
            metrics.answered(label, Ok(()));
            debug!("ok");
            body
        }
        Outcome::Failed(e) => {
            let code = e.code();
            metrics.answered(label, Err(code));
            if let HandlerError::Internal(cause) = &e {
                error!(error = %cause, error_debug = ?cause, "internal error");
            } else if let HandlerError::Unavailable(cause) = &e {
                warn!(error = %cause, "the store is busy: answered unavailable");
            } else {
                debug!(code = code.as_str(), "error reply");
            }
            e.encode_reply()
        }
        Outcome::Panicked => {
            error!("handler panicked: dead-lettering the request");
            metrics.answered(label, Err(ErrorCode::Internal));
            if reply::dead_letter(
                channel,
                &shared.names,
                delivery,
                DeadLetterReason::HandlerPanicked,
            )
            .await
            .is_ok()
            {
                metrics.dead_lettered(DeadLetterReason::HandlerPanicked);
            }
            encode_error(ErrorCode::Internal, ErrorCode::Internal.default_message())
        }
    };

    // 8. Reply, then acknowledge on the same channel.
    let start = Instant::now();
    let returns = label.is_some_and(|op| shared.ctx.config.refusals_returned(op));
    let published = reply::publish_reply(
        channel,
        reply_to,
        props.correlation_id().as_ref(),
        &body,
        returns,
    )
    .await;
    metrics.stages.publish.since(start);
    if let Err(e) = published {
        error!(error = %e, "cannot publish the reply; the request will be redelivered");
        return;
    }
    if checkpoints::crashed(shared, channel, source, delivery, Crash::AfterReply).await {
        return;
    }
    let start = Instant::now();
    ack(channel, delivery).await;
    metrics.stages.ack.since(start);
}

/// Steps 5 and 6 of an admitted request. A panic in either is caught here, for this message
/// only.
async fn handle(shared: &Shared, op: Operation, delivery: &Delivery) -> Outcome {
    let ctx = &shared.ctx;
    let scope = outcome_scope(shared, op, delivery);
    let identity = identity(op, delivery);
    let handled = async {
        // 5. Seen before? A mutating request whose outcome is recorded is answered from it.
        if let Some(scope) = &scope {
            match recorded_outcome(ctx, scope).await {
                Ok(Some(first)) => return Outcome::Replayed(first),
                Ok(None) => {}
                Err(e) => return Outcome::Failed(e),
            }
        }
        // 6. The handler: decode, the store, argon2; its outcome recorded with its effect.
        checkpoints::panic_if_armed(shared, op);
        match handlers::dispatch(ctx, op, &delivery.data, scope, identity).await {
            Ok(body) => Outcome::Reply(body),
            // Recorded by a concurrent delivery of the same request meanwhile.
            Err(HandlerError::Replayed(first)) => Outcome::Replayed(first),
            Err(e) => Outcome::Failed(e),
        }
    };
    AssertUnwindSafe(handled)
        .catch_unwind()
        .await
        .unwrap_or(Outcome::Panicked)
}

/// Where a mutating request's outcome is recorded: the caller's validated `user-id` (or
/// nothing) and the `message_id`. Requests without a `message_id` cannot be recognised when
/// they come again, so they are simply done.
fn outcome_scope(shared: &Shared, op: Operation, delivery: &Delivery) -> Option<OutcomeScope> {
    if !op.is_mutating() {
        return None;
    }
    let props = &delivery.properties;
    let message_id = props
        .message_id()
        .as_ref()
        .filter(|id| !id.as_str().is_empty())?;
    let caller = props.user_id().as_ref().map_or("", |u| u.as_str());
    Some(
        shared
            .ctx
            .sealing
            .scope(caller, message_id.as_str(), op, &delivery.data),
    )
}

/// A login's identity across its deliveries and retries (its attempt claims are keyed by it);
/// other operations need none.
fn identity(op: Operation, delivery: &Delivery) -> Option<crate::crypto::Digest> {
    if op != Operation::Login {
        return None;
    }
    let props = &delivery.properties;
    let message_id = props
        .message_id()
        .as_ref()
        .map(|id| id.as_str())
        .filter(|id| !id.is_empty());
    let correlation_id = props.correlation_id().as_ref().map_or("", |c| c.as_str());
    let caller = props.user_id().as_ref().map_or("", |u| u.as_str());
    Some(crate::idempotency::request_identity(
        caller,
        message_id,
        correlation_id,
        op,
        &delivery.data,
    ))
}

/// The first reply to this request if its outcome is recorded (within the idempotency
/// window); `idempotency_conflict` if the same `message_id` came with another body.
async fn recorded_outcome(
    ctx: &Ctx,
    scope: &OutcomeScope,
) -> Result<Option<Vec<u8>>, HandlerError> {
    let (caller, id) = (scope.key.caller.clone(), scope.key.message_id.clone());
    let since = ctx.outcomes_since();
    let Some(first) = ctx
        .read(move |s| s.find_outcome(&caller, &id, since))
        .await?
    else {
        return Ok(None);
    };
    if first.request_digest != scope.key.request_digest {
        return Err(HandlerError::IdempotencyConflict);
    }
    let reply = scope.open(&first.sealed).map_err(InternalError::from)?;
    Ok(Some(reply))
}

/// Refuses a request without a `correlation_id` before any effect: its caller could not tell
/// which call a reply answers (and would retry, doing the effect twice). The `bad_request`
/// reply goes to its `reply_to` without a `correlation_id`, like the request.
fn correlated(delivery: &Delivery) -> Result<(), HandlerError> {
    match delivery.properties.correlation_id() {
        Some(id) if !id.as_str().is_empty() => Ok(()),
        _ => Err(HandlerError::BadRequest(
            "the request has no correlation_id; nothing was done".into(),
        )),
    }
}

/// The operation a delivery asks for, or why it cannot be handled at all.
fn operation(
    source: Source,
    delivery: &Delivery,
    max_body: usize,
) -> Result<Operation, HandlerError> {
    if delivery.data.len() > max_body {
        return Err(HandlerError::PayloadTooLarge);
    }
    match source {
        Source::Quarantine => Err(HandlerError::UnknownOperation),
        // A known operation in the unrouted queue was published while its tube was missing
        // (a transient tube gone with its broker node, before a worker declared it again): it
        // is served here, as its tube would have served it.
        Source::Tube(_) | Source::Unrouted => {
            Operation::parse(delivery.routing_key.as_str()).ok_or(HandlerError::UnknownOperation)
        }
    }
}

/// The most precise reason to dead-letter a request without a `reply_to`. Parsing into a
/// `Value` is costly but rare here, and applies the same UTF-8 and nesting rules as decoding.
fn unanswerable_reason(shared: &Shared, source: Source, delivery: &Delivery) -> DeadLetterReason {
    match operation(source, delivery, shared.ctx.config.max_body_bytes) {
        Err(HandlerError::UnknownOperation) => DeadLetterReason::UnknownOperation,
        Err(_) => DeadLetterReason::Malformed,
        Ok(_)
            if std::str::from_utf8(&delivery.data).is_err()
                || serde_json::from_slice::<serde_json::Value>(&delivery.data).is_err() =>
        {
            DeadLetterReason::Malformed
        }
        Ok(_) => DeadLetterReason::MissingReplyTo,
    }
}

/// Answers a request that a full tube refused and dead-lettered (`x-overflow`
/// `reject-publish-dlx`) with an `authq.refused` reply, then acknowledges it. Nothing was done,
/// so nothing is kept: a request without a usable `reply_to` or `correlation_id`, or whose
/// `reply_to` is not its caller's, is dropped, as a full quorum tube drops what it refuses.
/// A caller that waited for its publish's confirm had a nack already and drops this answer.
async fn answer_refusal(shared: &Shared, channel: &Channel, delivery: &Delivery) {
    let props = &delivery.properties;
    let user_id = props.user_id().as_ref().map(|u| u.as_str());
    let reply_to = props
        .reply_to()
        .as_ref()
        .filter(|r| caller::reply_to_allowed(&shared.names, r.as_str(), user_id));
    match (reply_to, props.correlation_id()) {
        (Some(reply_to), Some(correlation_id)) => {
            debug!("refused by a full tube: answered");
            if let Err(e) = reply::publish_refusal(channel, reply_to, correlation_id).await {
                error!(error = %e, "cannot answer a refusal; it will be redelivered");
                return;
            }
        }
        _ => debug!("refused by a full tube, nobody to tell: dropped"),
    }
    ack(channel, delivery).await;
}

async fn dead_letter_and_ack(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    reason: DeadLetterReason,
) {
    match reply::dead_letter(channel, &shared.names, delivery, reason).await {
        Ok(()) => {
            shared.ctx.metrics.dead_lettered(reason);
            ack(channel, delivery).await;
        }
        Err(e) => error!(error = %e, "cannot dead-letter; leaving the message unacknowledged"),
    }
}

/// Acknowledges `delivery` on its own channel, directly: `Acker::ack` would hand the ack to
/// lapin's internal RPC task first, one more task wake-up per request for the same frame.
async fn ack(channel: &Channel, delivery: &Delivery) {
    let acked = channel
        .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
        .await;
    if let Err(e) = acked {
        error!(error = %e, "cannot acknowledge; the request will be redelivered");
    }
}
