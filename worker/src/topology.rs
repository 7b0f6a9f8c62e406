//! Declaring authq's exchanges, queues and bindings on the broker.
//!
//! Declarations are idempotent, so every worker declares the whole topology at start-up and
//! any number of workers (on any host) can start in any order.
//!
//! # Why it is shaped this way
//! - **Tubes by cost class** (session, password, account): a login flood fills the password
//!   tube, which has its own consumers and a prefetch sized to the argon2 pool, so it never
//!   stands in front of the session checks. Callers address operations, never tubes; an
//!   operator re-routes one with `--route op=tube`, and the worker binds it there and unbinds
//!   it from the other tubes at start-up.
//! - **Each tube's queue type follows what its requests must survive** (`tube_args`;
//!   [`QueueType`] states each type's failure modes). The password and account tubes are quorum
//!   queues: replicated and on disk before the broker confirms a publish, so a confirmed
//!   registration, login or reset survives a broker restart and the loss of a minority of
//!   nodes. The session tube is a *transient* classic queue (not durable, in memory): its
//!   operations are reads (`check`, `get_profile`, `ping`) and session ends a caller can repeat,
//!   and quorum's write-and-fsync before delivery was most of a `check`'s latency with one call
//!   in flight (BENCHMARKS.md, "The session tube's type"). A transient tube vanishes with its
//!   node (a restart, or the node leaving a cluster); every worker re-declares it when it
//!   reconnects, and what callers publish before that goes to the unrouted queue, which the
//!   workers serve as if it had come through the tube (`crate::delivery`, step 4). A durable
//!   classic queue is not the default for any tube: in a cluster it is unusable, and cannot be
//!   re-declared, while its node is down. `--tube-type TUBE=TYPE` chooses per tube; queue
//!   arguments cannot change, so switching a tube's type means deleting it first.
//! - **Every tube is bounded** (`x-max-length` with `reject-publish`), so a full tube nacks at
//!   once and the client answers `overloaded` instead of timing out. A classic or transient
//!   tube uses `reject-publish-dlx`: it also dead-letters the refused request to the
//!   quarantine, where a worker answers it `authq.refused`, so callers may publish reads to it
//!   without confirms (PROTOCOL.md §2, "Reads without confirms"); quorum tubes have
//!   `x-delivery-limit` 5, because RabbitMQ 3.10 sets none and a request that kills every
//!   worker would loop forever. Classic queues in 3.10 count no deliveries: on a classic or
//!   transient tube the handlers' caught panics are answered `internal`, but a request that
//!   kills the worker process is redelivered until the queue goes.
//! - **The broker's own dead letters go through the worker**: what RabbitMQ dead-letters by
//!   itself (an expired request, one past the delivery limit) is the request as published,
//!   password included. So the tubes dead-letter to `{ns}.quarantine`, which only the worker
//!   user may read; the worker relays a redacted copy (`crate::redact`) to `{ns}.dead-letter`
//!   with the broker's reason, and never processes it. Both queues are bounded.
//! - **Unknown operations** go to the request exchange's alternate exchange, whose queue
//!   (`{ns}.unrouted`) the worker consumes, so a misspelt operation gets `unknown_operation`
//!   instead of vanishing (a `mandatory` publish tells only callers that listen for returns).
//! - **The unrouted, quarantine and dead-letter queues are quorum queues too**: in a cluster a
//!   classic durable queue lives on one node, and while that node is down a worker can neither
//!   use nor re-declare it, so it could not reconnect to the surviving nodes
//!   (`tests/it/cluster.rs` found this).

use crate::config::{Config, QueuePolicy, QueueType};
use crate::error::WorkerError;
use authq_protocol::notice::{TUBE_DECLARED, TubeDeclared};
use authq_protocol::{Names, Operation, Tube};
use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

/// The most messages the public dead-letter queue keeps; past it the oldest are dropped.
pub const DEAD_LETTER_MAX_LENGTH: i64 = 10_000;

/// The most bytes (of bodies) the public dead-letter queue keeps; past it the oldest are
/// dropped.
pub const DEAD_LETTER_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// Declares the topology of `names` on `channel`:
///
/// - the dead-letter exchange (fanout) and its queue, bounded ([`DEAD_LETTER_MAX_LENGTH`],
///   [`DEAD_LETTER_MAX_BYTES`], oldest dropped first);
/// - the quarantine exchange (fanout) and its queue, bounded alike: the tubes' and the unrouted
///   queue's dead-letter exchange. What the broker dead-letters on its own (expired in a tube,
///   past the delivery limit) still holds its secrets; only the worker reads the quarantine
///   and relays a redacted copy to the dead-letter exchange (`crate::delivery`);
/// - the unrouted exchange (fanout) and its queue, which the worker consumes to answer
///   `unknown_operation`;
/// - the request exchange (direct, with the unrouted exchange as its alternate exchange);
/// - one durable queue per tube (quorum by default, see `tube_args`), dead-lettering to the
///   dead-letter exchange;
/// - one binding per operation from the request exchange to the tube that serves it, and no
///   binding to the other tubes (so an operator's re-routing removes the old binding).
///
/// Returns the tubes that did not exist before (a transient tube lost with its node, or a new
/// deployment): the caller tells the callers ([`announce`]).
pub async fn declare(
    connection: &Connection,
    channel: &Channel,
    names: &Names,
    config: &Config,
) -> Result<Vec<Tube>, WorkerError> {
    // Test deployments (queue_expires set) clean up after themselves: queues expire when
    // unused, and exchanges go with their last binding.
    let ephemeral = config.queue_expires.is_some();
    let exchange_options = ExchangeDeclareOptions {
        durable: true,
        auto_delete: ephemeral,
        ..ExchangeDeclareOptions::default()
    };
    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut base_args = FieldTable::default();
    if let Some(expires) = config.queue_expires {
        let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
        base_args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    }
    let mut dead_lettering_args = base_args.clone();
    dead_lettering_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(names.quarantine())),
    );
    let mut bounded_args = base_args.clone();
    bounded_args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
    );
    bounded_args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_BYTES),
    );

    let fanout = |name, queue_args| {
        declare_fanout_queue(channel, name, exchange_options, queue_options, queue_args)
    };
    fanout(names.dead_letter(), bounded_args.clone())
        .await
        .map_err(WorkerError::broker(
            "declaring the dead-letter exchange and queue (one declared by an older authq, \
             unbounded, must be drained and deleted first)",
        ))?;
    fanout(names.quarantine(), bounded_args)
        .await
        .map_err(WorkerError::broker(
            "declaring the quarantine exchange and queue",
        ))?;
    let unrouted = names.unrouted();
    fanout(unrouted, dead_lettering_args.clone())
        .await
        .map_err(WorkerError::broker(
            "declaring the unrouted exchange and queue",
        ))?;

    let mut request_args = FieldTable::default();
    request_args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(unrouted)),
    );
    let requests = names.request_exchange();
    channel
        .exchange_declare(
            requests.into(),
            ExchangeKind::Direct,
            exchange_options,
            request_args,
        )
        .await
        .map_err(WorkerError::broker("declaring the request exchange"))?;

    channel
        .exchange_declare(
            names.events_exchange().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(WorkerError::broker("declaring the events exchange"))?;

    channel
        .exchange_declare(
            names.notices().into(),
            ExchangeKind::Fanout,
            exchange_options,
            FieldTable::default(),
        )
        .await
        .map_err(WorkerError::broker("declaring the notices exchange"))?;

    let mut missing = Vec::new();
    for tube in Tube::ALL {
        if !exists(connection, names.tube(tube)).await {
            missing.push(tube);
        }
        let tube_options = QueueDeclareOptions {
            durable: config.queues.queue_type(tube).durable(),
            ..queue_options
        };
        channel
            .queue_declare(
                names.tube(tube).into(),
                tube_options,
                tube_args(&dead_lettering_args, &config.queues, tube),
            )
            .await
            .map_err(WorkerError::broker(
                "declaring a tube (a tube declared earlier with another type or other arguments, \
                 e.g. the quorum session tube an earlier authq declared, must be deleted first, or \
                 keep its type with --tube-type)",
            ))?;
    }
    for &op in Operation::ALL {
        let serving = config.tube_of(op);
        for tube in Tube::ALL {
            if tube == serving {
                channel
                    .queue_bind(
                        names.tube(tube).into(),
                        requests.into(),
                        op.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(WorkerError::broker("binding an operation to its tube"))?;
            } else {
                channel
                    .queue_unbind(
                        names.tube(tube).into(),
                        requests.into(),
                        op.as_str().into(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(WorkerError::broker(
                        "unbinding an operation from another tube",
                    ))?;
            }
        }
    }
    Ok(missing)
}

/// Whether `queue` exists: a passive declare on a channel of its own (a missing queue closes
/// the channel it was asked on). Any other failure counts as "exists"; declaring it reports
/// the real problem.
async fn exists(connection: &Connection, queue: &str) -> bool {
    let Ok(probe) = connection.create_channel().await else {
        return true;
    };
    let declared = probe
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(_) => {
            let _ = probe.close(200, "probed".into()).await;
            true
        }
        Err(e) => !is_not_found(&e),
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

/// Tells every caller that `tube` was declared anew ([`authq_protocol::notice::TubeDeclared`]
/// on [`Names::notices`]), naming the operations it serves: their calls in flight were lost
/// with the old tube and end at once instead of at their timeout. Sent after the bindings, so
/// a call sent again reaches the new tube.
pub async fn announce(
    channel: &Channel,
    names: &Names,
    config: &Config,
    tube: Tube,
) -> Result<(), WorkerError> {
    let notice = TubeDeclared {
        tube: tube.as_str().to_owned(),
        operations: Operation::ALL
            .iter()
            .filter(|&&op| config.tube_of(op) == tube)
            .map(|op| op.as_str().to_owned())
            .collect(),
    };
    // Strings only: serializing cannot fail.
    let body = serde_json::to_vec(&notice).unwrap_or_default();
    channel
        .basic_publish(
            names.notices().into(),
            "".into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_type(TUBE_DECLARED.into())
                .with_content_type(authq_protocol::CONTENT_TYPE.into()),
        )
        .await
        .map_err(WorkerError::broker("publishing a notice"))?;
    Ok(())
}

/// The arguments of a tube: dead-lettering, the queue type, a bound length that refuses
/// publishes past it (a publisher with confirms gets a nack at once; a classic or transient
/// tube also dead-letters the refused request, which a worker answers `authq.refused`)
/// and, for quorum queues, a small delivery limit (RabbitMQ 3.10 has no default one).
fn tube_args(dead_lettering: &FieldTable, policy: &QueuePolicy, tube: Tube) -> FieldTable {
    let mut args = dead_lettering.clone();
    let queue_type = policy.queue_type(tube);
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(queue_type.as_str())),
    );
    // A classic queue can dead-letter what it refuses, to the quarantine, where a worker
    // answers it (`crate::delivery`, step 0); quorum queues in 3.10 cannot.
    let overflow = if queue_type.returns_refusals() {
        "reject-publish-dlx"
    } else {
        "reject-publish"
    };
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from(overflow)),
    );
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(policy.max_length)),
    );
    if queue_type == QueueType::Quorum {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(policy.delivery_limit)),
        );
    }
    args
}

/// Declares a fanout exchange and a quorum queue of the same name bound to it. Quorum, like the
/// tubes: in a cluster a classic durable queue lives on one node, and while that node is down
/// it can be neither used nor declared again, so a worker could not reconnect to the survivors.
async fn declare_fanout_queue(
    channel: &Channel,
    name: &str,
    exchange_options: ExchangeDeclareOptions,
    queue_options: QueueDeclareOptions,
    mut queue_args: FieldTable,
) -> lapin::Result<()> {
    queue_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(QueueType::Quorum.as_str())),
    );
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            exchange_options,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(name.into(), queue_options, queue_args)
        .await?;
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
