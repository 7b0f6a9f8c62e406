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

mod link;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::Shared;
use crate::error::WorkerError;
use crate::events::Relay;
use crate::metrics::Metrics;
use authq_protocol::Names;
use backon::{BackoffBuilder, ExponentialBuilder};
use link::Link;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

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
        // Access token keys: one active, expired ones gone, the JWKS file up to date.
        crate::handlers::tokens::maintain(&shared.ctx).await;
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
