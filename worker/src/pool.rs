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
//! not started to the queue for another worker.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::{self, Shared, Source};
use crate::error::WorkerError;
use crate::handlers::Ctx;
use crate::hashing::HashPool;
use crate::metrics::Metrics;
use crate::store::{Renewal, SqliteStore, Store};
use crate::topology;
use authq_protocol::redact_url;
use authq_protocol::{Names, Tube};
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use std::future::Future;
use std::sync::Arc;
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
    task: Option<JoinHandle<Result<(), WorkerError>>>,
    metrics: Arc<Metrics>,
    names: Names,
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
        let names = config.validate()?;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());

        let store = {
            let (path, size) = (config.database.clone(), config.store_pool_size);
            tokio::task::spawn_blocking(move || SqliteStore::open(&path, size))
                .await
                .map_err(|e| {
                    WorkerError::Store(crate::store::StoreError::Corrupt(e.to_string()))
                })??
        };
        let hasher = {
            let (hashing, metrics) = (config.hashing.clone(), Arc::clone(&metrics));
            tokio::task::spawn_blocking(move || HashPool::start(&hashing, metrics))
                .await
                .map_err(|e| {
                    WorkerError::Hash(crate::hashing::HashError::Argon2(e.to_string()))
                })??
        };

        let url = redact_url(&config.amqp_url);
        let connection = Connection::connect(
            &config.amqp_url,
            ConnectionProperties::default().with_connection_name("authq-worker".into()),
        )
        .await
        .map_err(|source| WorkerError::Connect {
            url: url.clone(),
            source,
        })?;
        info!(url = %url, namespace = names.namespace(), "connected to the broker");

        let setup = connection
            .create_channel()
            .await
            .map_err(WorkerError::broker("opening a channel"))?;
        topology::declare(&setup, &names, &config).await?;
        let _ = setup.close(200, "topology declared".into()).await;

        let shared = Arc::new(Shared {
            ctx: Ctx {
                store: Arc::new(store) as Arc<dyn Store>,
                hasher,
                clock,
                metrics: Arc::clone(&metrics),
                renewal: Renewal::from_policy(&config.sessions),
                store_permits: Arc::new(tokio::sync::Semaphore::new(
                    config.store_pool_size as usize,
                )),
                config: Arc::clone(&config),
            },
            names: names.clone(),
        });

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut consumers = Vec::new();
        let sources = Tube::ALL
            .into_iter()
            .map(|t| (Source::Tube(t), names.tube(t), config.tube(t)))
            .chain([(Source::Unrouted, names.unrouted(), config.unrouted)]);
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
                        Arc::clone(&shared),
                        channel,
                        source,
                        consumer,
                        cancel.clone(),
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

        let purge = tokio::spawn(purge_loop(Arc::clone(&shared), cancel.clone()));
        let task = tokio::spawn(supervise(
            connection,
            consumers,
            purge,
            tracker,
            cancel.clone(),
            config.shutdown_grace,
        ));
        Ok(Self {
            cancel,
            task: Some(task),
            metrics,
            names,
        })
    }

    /// The worker's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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

/// Takes deliveries from one consumer until cancelled, spawning a task for each.
async fn consume(
    shared: Arc<Shared>,
    channel: Channel,
    source: Source,
    mut consumer: Consumer,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> Result<Channel, WorkerError> {
    let outcome = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
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
    if outcome.is_ok() {
        // Stop the broker from sending more; what it already sent and nobody started is
        // returned to the queue when the channel closes.
        let _ = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
    } else {
        // One consumer failing (the connection dropped) stops the whole worker.
        cancel.cancel();
    }
    outcome.map(|()| channel)
}

/// Waits for the consumers to stop, drains in-flight requests, closes everything.
async fn supervise(
    connection: Connection,
    consumers: Vec<JoinHandle<Result<Channel, WorkerError>>>,
    purge: JoinHandle<()>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), WorkerError> {
    cancel.cancelled().await;
    let mut channels = Vec::new();
    let mut failure = None;
    for consumer in consumers {
        match consumer.await {
            Ok(Ok(channel)) => channels.push(channel),
            Ok(Err(e)) => {
                error!(error = %e, "consumer failed");
                failure.get_or_insert(e);
            }
            Err(e) => error!(error = %e, "consumer task failed"),
        }
    }
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
    for channel in channels {
        let _ = channel.close(200, "worker shutting down".into()).await;
    }
    let _ = connection.close(200, "worker shutting down".into()).await;
    info!("worker stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Deletes expired sessions and codes now and then.
async fn purge_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(shared.ctx.config.purge_interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = shared.ctx.now();
        let store = Arc::clone(&shared.ctx.store);
        match tokio::task::spawn_blocking(move || store.purge_expired(now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(rows = n, "purged expired sessions and codes"),
            Ok(Err(e)) => warn!(error = %e, "purging expired rows failed"),
            Err(e) => warn!(error = %e, "purge task failed"),
        }
    }
}
