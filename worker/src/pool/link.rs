//! [`Link`]: one broker connection with the topology declared and a consumer per queue, each
//! on its own channel with its own prefetch, spawning a task per delivery; and how a consumer
//! hands back what it was sent but never started when it stops.

use crate::delivery::{self, Shared, Source};
use crate::error::WorkerError;
use crate::topology;
use authq_protocol::Tube;
use authq_protocol::redact_url;
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

/// How long one reconnection attempt (connect, declare the topology, start the consumers) may
/// take before it is abandoned and tried again.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// One broker connection with the topology declared and every consumer running.
pub(super) struct Link {
    pub(super) connection: Connection,
    pub(super) consumers: Vec<JoinHandle<Result<Channel, WorkerError>>>,
    /// Cancelled when any consumer of this connection fails (the connection is lost), or with
    /// the worker's own token.
    pub(super) lost: CancellationToken,
}

impl Link {
    /// Connects, declares the topology and starts the consumers of every queue, within
    /// [`OPEN_TIMEOUT`]: a broker that is still starting can accept the TCP connection and then
    /// stall the handshake or a declaration, and an attempt that hangs would hold the worker
    /// (at start-up, or reconnecting) for good. The consumers a half-done attempt had started
    /// stop with it.
    pub(super) async fn open(
        shared: &Arc<Shared>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, WorkerError> {
        tokio::time::timeout(OPEN_TIMEOUT, Self::open_unbounded(shared, cancel, tracker))
            .await
            .unwrap_or_else(|_| {
                Err(WorkerError::Connect {
                    url: redact_url(&shared.ctx.config.amqp_url),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection and topology within {OPEN_TIMEOUT:?}"),
                    )
                    .into(),
                })
            })
    }

    async fn open_unbounded(
        shared: &Arc<Shared>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, WorkerError> {
        let config = &shared.ctx.config;
        let names = &shared.names;
        let (connection, url) = shared
            .nodes
            .connect(
                || ConnectionProperties::default().with_connection_name("authq-worker".into()),
                with_heartbeat,
            )
            .await
            .map_err(|(source, url)| WorkerError::Connect { url, source })?;
        info!(url = %url, namespace = names.namespace(), "connected to the broker");

        let setup = connection
            .create_channel()
            .await
            .map_err(WorkerError::broker("opening a channel"))?;
        let missing = topology::declare(&connection, &setup, names, config).await?;
        if !missing.is_empty() {
            // On a channel of their own: a refused notice closes its channel, not `setup`.
            let notices = connection
                .create_channel()
                .await
                .map_err(WorkerError::broker("opening a channel"))?;
            for tube in missing {
                info!(
                    tube = tube.as_str(),
                    "tube declared anew: telling the callers"
                );
                match topology::announce(&notices, names, config, tube).await {
                    Ok(()) => {}
                    // An ephemeral deployment's notices exchange (`queue_expires`) is deleted
                    // with its last binding, which may go between its declaration and this
                    // publish: then no caller listens, and there is nobody to tell.
                    Err(e) if config.queue_expires.is_some() => {
                        tracing::warn!(error = %e, "no tube_declared notice: no caller listens");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let _ = notices.close(200, "notices sent".into()).await;
        }
        shared
            .ctx
            .policy
            .connect(&connection)
            .await
            .map_err(WorkerError::broker("opening the policy hook's reply queue"))?;
        let _ = setup.close(200, "topology declared".into()).await;

        let lost = cancel.child_token();
        // If this future is dropped half-way (the attempt timed out), the consumers it already
        // started stop with it.
        let abandoned = lost.clone().drop_guard();
        let mut consumers = Vec::new();
        let sources = Tube::ALL
            .into_iter()
            .map(|t| (Source::Tube(t), names.tube(t), config.tube(t)))
            .chain([
                (Source::Unrouted, names.unrouted(), config.unrouted),
                (Source::Quarantine, names.quarantine(), config.unrouted),
            ]);
        for (source, queue, settings) in sources {
            for i in 0..settings.consumers {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(WorkerError::broker("opening a consumer channel"))?;
                channel
                    .basic_qos(settings.prefetch, BasicQosOptions::default())
                    .await
                    .map_err(WorkerError::broker("setting the prefetch"))?;
                let consumer = channel
                    .basic_consume(
                        queue.into(),
                        format!("authq-{}-{}-{i}", queue, std::process::id()).into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(WorkerError::broker("starting a consumer"))?;
                consumers.push(tokio::spawn(
                    consume(
                        Arc::clone(shared),
                        channel,
                        source,
                        consumer,
                        lost.clone(),
                        tracker.clone(),
                    )
                    .instrument(info_span!("consumer", queue = queue, n = i)),
                ));
            }
        }
        info!(
            consumers = consumers.len(),
            hash_threads = config.hashing.threads,
            "worker consuming"
        );
        // A spare channel for the observer's passive declares (`crate::observe`).
        let spare = connection
            .create_channel()
            .await
            .map_err(WorkerError::broker("opening a channel"))?;
        shared.health.connected(spare, consumers.len());
        abandoned.disarm();
        Ok(Self {
            connection,
            consumers,
            lost,
        })
    }

    /// Waits for every consumer to stop; returns their channels (those still open) and the
    /// first failure.
    pub(super) async fn stop_consumers(&mut self) -> (Vec<Channel>, Option<WorkerError>) {
        let mut channels = Vec::new();
        let mut failure = None;
        for consumer in self.consumers.drain(..) {
            match consumer.await {
                Ok(Ok(channel)) => channels.push(channel),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => error!(error = %e, "consumer task failed"),
            }
        }
        (channels, failure)
    }
}

/// Asks the broker for heartbeats every 10 s unless the URL chooses (`?heartbeat=N`), so a dead
/// connection is noticed within seconds. argon2 runs on its own threads and never delays them.
fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&heartbeat=10")
    } else {
        format!("{url}?heartbeat=10")
    }
}

/// Takes deliveries from one consumer until cancelled, spawning a task for each. On
/// cancellation it stops the broker from sending more and returns what was prefetched but
/// never started to the queue (nack with requeue).
async fn consume(
    shared: Arc<Shared>,
    channel: Channel,
    source: Source,
    mut consumer: Consumer,
    lost: CancellationToken,
    tracker: TaskTracker,
) -> Result<Channel, WorkerError> {
    let outcome = loop {
        tokio::select! {
            biased;
            () = lost.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    if source == Source::Tube(Tube::Session) {
                        // The argon2 pool's scheduling hint: checks are flowing (`hashing`).
                        shared.ctx.hasher.note_session_traffic(Instant::now());
                    }
                    tracker.spawn(delivery::process(Arc::clone(&shared), channel.clone(), source, delivery));
                }
                Some(Err(e)) => break Err(WorkerError::Broker { context: "consuming", source: e }),
                None => break Err(WorkerError::Broker {
                    context: "consuming",
                    source: lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed, "consumer cancelled by the broker",
                    )),
                }),
            },
        }
    };
    match outcome {
        Ok(()) => {
            // Stop the broker from sending more, then hand back what it already sent.
            let _ = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await;
            requeue_prefetched(&shared, &mut consumer).await;
            Ok(channel)
        }
        Err(e) => {
            // The connection is gone: every consumer of it stops, the supervisor reconnects.
            warn!(error = %e, "consumer lost its channel");
            lost.cancel();
            Err(e)
        }
    }
}

/// Nacks (with requeue) every delivery still buffered in a cancelled consumer.
async fn requeue_prefetched(shared: &Shared, consumer: &mut Consumer) {
    let nack = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    // The broker confirms the cancel after its last delivery, which ends the stream; the
    // bound only guards against a connection dying meanwhile.
    let drain = async {
        while let Some(Ok(delivery)) = consumer.next().await {
            if delivery.acker.nack(nack).await.is_ok() {
                shared.ctx.metrics.requeued.inc();
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}
