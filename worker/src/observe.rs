//! What an operator sees of a running worker, on the address `--metrics-addr` names (off by
//! default):
//! - `GET /metrics`: the registry of [`crate::metrics`] in the Prometheus text format;
//! - `GET /livez`: 200 while the process serves HTTP at all;
//! - `GET /readyz`: 200 when the broker connection is up with its consumers attached and the
//!   store answered its last check; otherwise 503 with the reason in the body. It reads state
//!   kept up to date elsewhere, so it answers at once even while the broker is down.
//!
//! A refresher fills, every [`REFRESH`], the gauges that are not counted on the hot path: each
//! tube's depth and consumers (passive declares on a channel of the worker's connection: three
//! small broker calls per interval, whatever the request rate), the outbox's backlog and lag
//! (one store query, which doubles as the store's readiness check), and `authq_ready`.

use crate::metrics::{Metrics, TubeLabel};
use crate::store::{Store, StoreError};
use authq_protocol::{Names, Tube};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the refresher reads the broker's and the store's figures.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long the store check may take before the store counts as not answering.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The worker's state as readiness sees it, updated by the pool and the refresher.
#[derive(Debug, Default)]
pub struct Health {
    /// A channel on the current broker connection (for the refresher's passive declares);
    /// `None` while the worker is not connected.
    broker: Mutex<Option<Channel>>,
    /// Consumers attached on the current connection.
    consumers: AtomicUsize,
    /// The last store check's failure; `None` when it answered.
    store_failure: Mutex<Option<String>>,
    /// Whether the store has been checked at all.
    store_checked: AtomicBool,
    /// Set once shutdown began: the worker takes no new requests.
    stopping: AtomicBool,
}

impl Health {
    /// The worker is consuming on a new connection, with `consumers` consumers; `channel` is a
    /// spare channel on it.
    pub fn connected(&self, channel: Channel, consumers: usize) {
        *lock(&self.broker) = Some(channel);
        self.consumers.store(consumers, Ordering::Release);
    }

    /// The broker connection is lost (the pool reconnects).
    pub fn disconnected(&self) {
        *lock(&self.broker) = None;
        self.consumers.store(0, Ordering::Release);
    }

    /// Shutdown began.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        if lock(&self.broker).is_none() {
            return Err("not connected to the broker".into());
        }
        if self.consumers.load(Ordering::Acquire) == 0 {
            return Err("no consumer attached".into());
        }
        if !self.store_checked.load(Ordering::Acquire) {
            return Err("the store has not been checked yet".into());
        }
        match &*lock(&self.store_failure) {
            Some(failure) => Err(format!("the store is not answering: {failure}")),
            None => Ok(()),
        }
    }

    fn store_checked(&self, failure: Option<String>) {
        *lock(&self.store_failure) = failure;
        self.store_checked.store(true, Ordering::Release);
    }

    fn channel(&self) -> Option<Channel> {
        lock(&self.broker).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the HTTP handlers read.
#[derive(Clone)]
struct Observed {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/livez` and `/readyz` on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Observed { metrics, health });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

async fn metrics_page(State(o): State<Observed>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        o.metrics.encode(),
    )
}

async fn readyz(State(o): State<Observed>) -> (StatusCode, String) {
    match o.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// What the refresher reads from.
#[derive(Debug)]
pub struct Sources {
    /// The worker's metrics (the gauges it sets).
    pub metrics: Arc<Metrics>,
    /// Readiness state (the store check it records).
    pub health: Arc<Health>,
    /// The store (the outbox query).
    pub store: Arc<Store>,
    /// Queue names.
    pub names: Names,
    /// The worker's clock (Unix ms), for the outbox's lag.
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Every [`REFRESH`] until `cancel`: tube figures, outbox figures, the store check, `ready`.
pub async fn refresh(sources: Sources, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        refresh_once(&sources).await;
    }
}

async fn refresh_once(s: &Sources) {
    if let Some(channel) = s.health.channel() {
        for tube in Tube::ALL {
            let queue = s.names.tube(tube).to_owned();
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            let label = TubeLabel {
                tube: tube.as_str(),
            };
            match declared {
                Ok(q) => {
                    s.metrics
                        .tube_messages
                        .get_or_create(&label)
                        .set(i64::from(q.message_count()));
                    s.metrics
                        .tube_consumers
                        .get_or_create(&label)
                        .set(i64::from(q.consumer_count()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, queue, "tube figures unavailable");
                    break;
                }
            }
        }
    }
    let store = Arc::clone(&s.store);
    let checked = tokio::time::timeout(
        STORE_CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || store.read(|tx| tx.outbox_figures())),
    )
    .await;
    let failure = match checked {
        Ok(Ok(Ok((backlog, oldest)))) => {
            s.metrics.outbox_backlog.set(backlog);
            let lag_ms = oldest.map_or(0, |t| s.clock.now_ms().saturating_sub(t).max(0));
            s.metrics.outbox_lag.set(lag_ms as f64 / 1000.0);
            None
        }
        Ok(Ok(Err(e))) => Some(store_error(&e)),
        Ok(Err(e)) => Some(format!("the check panicked: {e}")),
        Err(_) => Some(format!("no answer within {STORE_CHECK_TIMEOUT:?}")),
    };
    s.health.store_checked(failure);
    s.metrics.ready.set(i64::from(s.health.readiness().is_ok()));
}

/// A store error as readiness reports it (no URL, no secret: the error's own text).
fn store_error(e: &StoreError) -> String {
    e.to_string()
}
