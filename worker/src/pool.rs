//! The consumer pool: connects, declares the topology, runs the consumers of every tube, and
//! shuts down cleanly.
//!
//! Each consumer owns a channel with its own prefetch (`basic.qos`), and every delivery it
//! takes runs as its own task, so a consumer holds at most `prefetch` requests in flight and
//! the rest waits in the broker. Replies and acknowledgements go out on the delivery's channel.
//!
//! Shutdown (SIGINT/SIGTERM in the binary, [`WorkerHandle::shutdown`] in tests): consumers stop
//! taking deliveries and cancel their consumers; requests already started finish (reply, ack)
//! within the grace period; then the channels close, which returns whatever was prefetched but
//! not started to the queue for another worker. (`authq serve` installs its signal handlers
//! before it starts the pool, so an early SIGTERM is never the default action, death.)
//!
//! **A lost broker connection does not stop the worker** (`supervise`). The first connection
//! must succeed (a wrong URL or password is an operator's mistake, reported at once); after
//! that, when any consumer's channel fails, every consumer of the connection stops and the
//! supervisor reconnects with capped exponential backoff and jitter (`backon`, 100 ms doubling
//! to 5 s plus up to as much jitter, so a broker that comes back is found within 10 s),
//! declares the topology again and resumes. Every attempt is bounded (30 s): a broker still
//! starting can accept the TCP connection and stall the handshake. Requests in flight on the
//! dead connection are redelivered by the broker and answered from their recorded outcomes.
//! lapin's own `enable_auto_recover` is not used: it replays consumers whose unacknowledged
//! deliveries it cannot settle, and a worker that re-opens everything itself is easier to
//! reason about. Heartbeats are on (10 s unless the URL sets `heartbeat=`); argon2 runs on its
//! own threads, so a login flood never starves them.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::{self, Shared, Source};
use crate::error::WorkerError;
use crate::events::Relay;
use crate::metrics::Metrics;
use crate::topology;
use authq_protocol::redact_url;
use authq_protocol::{Names, Tube};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

/// Runs a worker until `shutdown` completes (or the broker connection fails).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    WorkerHandle::start(config).await?.run_until(shutdown).await
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    cancel: CancellationToken,
    observed_at: Option<std::net::SocketAddr>,
    task: Option<JoinHandle<Result<(), WorkerError>>>,
    metrics: Arc<Metrics>,
    names: Names,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::faults::Faults>,
}

impl WorkerHandle {
    /// Starts a worker with the system clock.
    pub async fn start(config: Config) -> Result<Self, WorkerError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts a worker: opens the store, starts the argon2 pool, connects to the broker,
    /// declares the topology and starts every consumer. Returns once the worker is consuming.
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WorkerError> {
        Self::start_with_clocks(config, clock, Arc::new(SystemClock)).await
    }

    /// Like [`WorkerHandle::start_with_clock`], with a separate clock for callers' deadlines.
    /// Deadlines are absolute times on the callers' clocks, so in production this is the system
    /// clock whatever `clock` is; tests move it to expire queued requests without sleeping.
    pub async fn start_with_clocks(
        config: Config,
        clock: Arc<dyn Clock>,
        deadline_clock: Arc<dyn Clock>,
    ) -> Result<Self, WorkerError> {
        let names = config.validate()?;
        #[cfg(feature = "fault-injection")]
        let faults = Arc::new(crate::faults::Faults::default());
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let opened = crate::startup::open(&config, &metrics).await?;
        let ctx = crate::startup::context(
            Arc::clone(&config),
            opened.store,
            &opened.server_key,
            opened.hasher,
            clock,
            Arc::clone(&metrics),
        )?;

        let shared = Arc::new(Shared {
            ctx,
            names: names.clone(),
            nodes: authq_amqp::BrokerNodes::new(&config.amqp_url),
            health: Arc::default(),
            deadline_clock,
            #[cfg(feature = "fault-injection")]
            faults: Arc::clone(&faults),
        });

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let observer_stop = CancellationToken::new();
        // Bound before connecting: an address in use is reported at once.
        let observer = match config.metrics_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                WorkerError::Config(crate::config::ConfigError::Invalid(format!(
                    "--metrics-addr {addr}: {e}"
                )))
            })?),
            None => None,
        };
        // The first connection must work: a wrong URL or password is an operator's mistake to
        // report at once, not to retry forever. Later losses are retried (see `supervise`).
        let link = Link::open(&shared, &cancel, &tracker).await?;
        let suspended = match &shared.ctx.config.redis_url {
            Some(url) => Some(Arc::new(
                crate::suspended_set::SuspendedSet::new(url, names.namespace()).map_err(|e| {
                    WorkerError::Config(crate::config::ConfigError::Invalid(format!(
                        "the Redis URL: {e}"
                    )))
                })?,
            )),
            None => None,
        };
        let observed_at = observer.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = observer {
            if let Some(addr) = observed_at {
                info!(%addr, "serving /metrics, /livez and /readyz");
            }
            // Both outlive the consumers (readiness turns 503 as shutdown begins) and stop when
            // the worker has stopped.
            tokio::spawn(crate::observe::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&shared.health),
                observer_stop.clone(),
            ));
            tokio::spawn(crate::observe::refresh(
                crate::observe::Sources {
                    metrics: Arc::clone(&metrics),
                    health: Arc::clone(&shared.health),
                    store: Arc::clone(&shared.ctx.store),
                    names: names.clone(),
                    clock: Arc::clone(&shared.ctx.clock),
                },
                observer_stop.clone(),
            ));
        }
        let purge = tokio::spawn(purge_loop(Arc::clone(&shared), cancel.clone()));
        // The relay outlives the consumers: it publishes the events of the requests that finish
        // during shutdown too, then stops.
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(crate::events::relay(
            Relay {
                store: Arc::clone(&shared.ctx.store),
                sink: Arc::clone(&shared.ctx.events),
                clock: Arc::clone(&shared.ctx.clock),
                names: shared.names.clone(),
                amqp_url: shared.ctx.config.amqp_url.clone(),
                suspended: suspended.clone(),
                #[cfg(feature = "fault-injection")]
                faults: Arc::clone(&shared.faults),
            },
            relay_stop.clone(),
        ));
        let task = tokio::spawn(supervise(
            shared,
            link,
            purge,
            (relay, relay_stop),
            tracker,
            (cancel.clone(), observer_stop),
        ));
        Ok(Self {
            cancel,
            observed_at,
            task: Some(task),
            metrics,
            names,
            #[cfg(feature = "fault-injection")]
            faults,
        })
    }

    /// The worker's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics`, `/livez` and `/readyz` are served (`--metrics-addr`, with the port the
    /// system chose if it was 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.observed_at
    }

    /// The worker's fault hooks (tests only).
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    /// The broker names the worker uses.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Runs until `shutdown` completes (then stops gracefully) or the worker stops on its own.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let token = self.cancel.clone();
        tokio::select! {
            () = shutdown => token.cancel(),
            () = token.cancelled() => {}
        }
        self.wait().await
    }

    /// Asks the worker to stop and waits until it has.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the worker stops (after a shutdown request or a broker failure).
    pub async fn wait(mut self) -> Result<(), WorkerError> {
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                error!(error = %e, "the worker's supervisor task failed");
                Ok(())
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // A handle dropped without shutdown (a failing test) still stops its worker.
        self.cancel.cancel();
    }
}

/// One broker connection with the topology declared and every consumer running.
struct Link {
    connection: Connection,
    consumers: Vec<JoinHandle<Result<Channel, WorkerError>>>,
    /// Cancelled when any consumer of this connection fails (the connection is lost), or with
    /// the worker's own token.
    lost: CancellationToken,
}

impl Link {
    /// Connects, declares the topology and starts the consumers of every queue, within
    /// [`OPEN_TIMEOUT`]: a broker that is still starting can accept the TCP connection and then
    /// stall the handshake or a declaration, and an attempt that hangs would hold the worker
    /// (at start-up, or reconnecting) for good. The consumers a half-done attempt had started
    /// stop with it.
    async fn open(
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
        topology::declare(&setup, names, config).await?;
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
    async fn stop_consumers(&mut self) -> (Vec<Channel>, Option<WorkerError>) {
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

/// Runs the worker's connections until shutdown: when a connection is lost, reconnects with
/// capped exponential backoff and jitter, re-declares the topology and resumes consuming, with
/// no process restart. On shutdown, drains in-flight requests and closes everything.
async fn supervise(
    shared: Arc<Shared>,
    mut link: Link,
    purge: JoinHandle<()>,
    (relay, relay_stop): (JoinHandle<()>, CancellationToken),
    tracker: TaskTracker,
    (cancel, observer_stop): (CancellationToken, CancellationToken),
) -> Result<(), WorkerError> {
    let _observer_stop = observer_stop.drop_guard();
    let grace = shared.ctx.config.shutdown_grace;
    let channels = loop {
        link.lost.cancelled().await;
        if cancel.is_cancelled() {
            shared.health.stopping();
        } else {
            shared.health.disconnected();
        }
        let (channels, failure) = link.stop_consumers().await;
        if cancel.is_cancelled() {
            if let Some(e) = failure {
                warn!(error = %e, "a consumer had failed before shutdown");
            }
            break channels;
        }
        // The connection is lost. Requests in flight on it cannot be acknowledged any more;
        // the broker redelivers them, and their first outcome answers the redelivery.
        let _ = link.connection.close(200, "connection lost".into()).await;
        match reconnect(&shared, &cancel, &tracker).await {
            Some(next) => {
                shared.ctx.metrics.reconnects.inc();
                link = next;
            }
            None => break Vec::new(),
        }
    };

    tracker.close();
    let in_flight = tracker.len();
    if in_flight > 0 {
        info!(in_flight, "finishing requests in flight");
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            remaining = tracker.len(),
            "shutdown grace period over; unfinished requests will be redelivered"
        );
    }
    purge.abort();
    relay_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), relay).await;
    for channel in channels {
        let _ = channel.close(200, "worker shutting down".into()).await;
    }
    let _ = link
        .connection
        .close(200, "worker shutting down".into())
        .await;
    info!("worker stopped");
    Ok(())
}

/// How long one reconnection attempt (connect, declare the topology, start the consumers) may
/// take before it is abandoned and tried again.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries to open a new [`Link`] until it works or the worker is shut down (then `None`).
async fn reconnect(
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Option<Link> {
    // `backon`'s jitter adds up to the delay itself: 100 ms doubling to 5 s, so a broker that
    // comes back is found again within 10 s.
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        warn!(retry_in = ?delay, "broker connection lost; reconnecting");
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        match Link::open(shared, cancel, tracker).await {
            Ok(link) => {
                info!("reconnected to the broker");
                return Some(link);
            }
            Err(e) => warn!(error = %e, "reconnecting failed"),
        }
    }
}

/// Now and then: completes deletion cascades past their deadline, deletes expired sessions,
/// codes and outcomes.
async fn purge_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(shared.ctx.config.purge_interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = shared.ctx.now();
        let since = shared.ctx.outcomes_since();
        let store = Arc::clone(&shared.ctx.store);
        let events = Arc::clone(&shared.ctx.events);
        let purge = move || {
            // Deletion cascades past their deadline complete with their events, atomically.
            let completed =
                store.write(|tx| crate::handlers::deletion::complete_overdue(tx, &events, now))?;
            if completed > 0 {
                events.wake();
                info!(completed, "deletion cascades past their deadline completed");
            }
            store.write(|tx| Ok(tx.purge_expired(now)? + tx.purge_outcomes(since)?))
        };
        match tokio::task::spawn_blocking(purge).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(rows = n, "purged expired sessions and codes"),
            Ok(Err(e)) => warn!(error = %e, "purging expired rows failed"),
            Err(e) => warn!(error = %e, "purge task failed"),
        }
    }
}
