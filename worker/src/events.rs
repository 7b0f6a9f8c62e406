//! Auth events through a transactional outbox.
//!
//! A handler records its events with [`EventSink::record`] inside the same store transaction as
//! the change they report ([`crate::handlers::Call::commit`]): the change and its events commit
//! together or not at all, whether or not the broker is reachable. The relay ([`relay`]) takes
//! the oldest outbox rows (one relay at a time across every worker on the database, so events go
//! out in commit order), publishes them to `{ns}.events` with publisher confirms, and deletes
//! them only once every one was confirmed. A relay that dies mid-batch leaves its claim to expire
//! and the next one publishes the batch again: delivery is at-least-once, consumers deduplicate
//! by the event's `id`.
//!
//! Outbox rows are sealed (ChaCha20-Poly1305, a random nonce, a key derived from the server key)
//! because two events carry a confirmation code or a reset token for the mailer.
//!
//! The relay publishes on a connection of its own, so the events path never delays replies; on
//! shutdown it stops after the last in-flight request finished, so their events go out too.
//! Riding on the outbox:
//! - **the deletion cascade** (`crate::handlers::deletion`): `delete_user` records the cascade
//!   in the transaction of the deletion and its `user.deleted` event; the last `deletion_done`,
//!   or the purge loop after the deadline, records `user.deletion_completed`;
//! - **the session epoch**: `users.session_epoch` grows in the transaction that ends all of a
//!   user's sessions, and `check` replies and those events carry it, so a gateway caching
//!   checks can evict the user's entries at once;
//! - **the Redis set of suspended users** (`--redis-url`, [`crate::suspended_set`]): updated
//!   from the events the relay publishes, rebuilt from the store on every (re)connect and every
//!   five minutes.

use crate::clock::Clock;
use crate::keys::ServerKey;
use crate::sealing::Sealer;
use crate::store::{Store, StoreError, Tx};
use crate::suspended_set::SuspendedSet;
use authq_protocol::Names;
use authq_protocol::events::{EVENT_VERSION, Event, EventBody};
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long a relay's claim on a batch lasts before another relay may publish it again.
const LEASE_MS: i64 = 10_000;

/// How often the Redis set of suspended users is rebuilt from the store (besides on connect).
const REBUILD_EVERY: Duration = Duration::from_secs(300);

/// Events published per batch.
const BATCH: u32 = 256;

/// Records events into the outbox and wakes the relay.
pub struct EventSink {
    sealer: Sealer,
    /// Opens rows sealed before the one sealing primitive (`sealing::legacy_v1`).
    legacy: zeroize::Zeroizing<[u8; 32]>,
    wake: Notify,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// An outbox row that cannot be opened (the key file changed).
#[derive(Debug, thiserror::Error)]
#[error("an outbox event cannot be opened (was the key file replaced?)")]
pub struct UnsealError;

impl EventSink {
    /// A sink whose rows are sealed with a key derived from `server`.
    pub fn new(server: &ServerKey) -> Self {
        Self {
            sealer: Sealer::derived(server, "authq outbox v2"),
            legacy: server.derive("authq outbox v1"),
            wake: Notify::new(),
        }
    }

    /// Writes an event to the outbox, in the caller's transaction `tx`.
    pub fn record(&self, tx: &mut Tx<'_>, body: EventBody, now: i64) -> Result<(), StoreError> {
        let kind = body.kind();
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            version: EVENT_VERSION,
            time: now,
            body,
        };
        let json = serde_json::to_vec(&event).map_err(|source| StoreError::Json {
            what: "cannot encode an event",
            source,
        })?;
        tx.enqueue_event(&kind.routing_key(), &self.seal(&json)?, now)
    }

    /// Tells the relay that events were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn seal(&self, json: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.sealer.seal(json, OUTBOX_AAD)?)
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        self.sealer
            .open(sealed, OUTBOX_AAD)
            .or_else(|_| crate::sealing::legacy_v1::open_outbox(&self.legacy, sealed))
            .map_err(|_| UnsealError)
    }
}

/// The associated data of outbox rows (they have no other place to be bound to).
const OUTBOX_AAD: &[u8] = b"authq outbox";

/// What the relay needs.
#[derive(Debug)]
pub struct Relay {
    /// The outbox.
    pub store: Arc<Store>,
    /// The sink (for opening rows and being woken).
    pub sink: Arc<EventSink>,
    /// Time for claims.
    pub clock: Arc<dyn Clock>,
    /// Where events go.
    pub names: Names,
    /// The broker.
    pub amqp_url: String,
    /// The Redis set of suspended users to keep up to date, if configured.
    pub suspended: Option<Arc<SuspendedSet>>,
    /// Tests hold the relay here to model a broker that goes down before it publishes.
    #[cfg(feature = "fault-injection")]
    pub faults: Arc<crate::faults::Faults>,
}

/// Publishes the outbox until `cancel`: connects (and reconnects, with backoff) on its own
/// connection, so a slow events path never delays replies.
pub async fn relay(relay: Relay, cancel: CancellationToken) {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match publish_until_failure(&relay, &cancel).await {
            Ok(()) => return,
            Err(e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                warn!(error = %e, retry_in = ?delay, "event relay: broker unavailable");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Rebuilds the Redis set of suspended users from the store (best effort: logged on failure).
pub async fn rebuild_suspended_set(relay: &Relay) {
    let Some(set) = &relay.suspended else {
        return;
    };
    let store = Arc::clone(&relay.store);
    let ids = match tokio::task::spawn_blocking(move || store.read(|tx| tx.suspended_users())).await
    {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => return warn!(error = %e, "cannot list suspended users"),
        Err(e) => return warn!(error = %e, "cannot list suspended users"),
    };
    match set.rebuild(&ids).await {
        Ok(()) => debug!(
            suspended = ids.len(),
            key = set.key(),
            "Redis set of suspended users rebuilt"
        ),
        Err(e) => warn!(error = %e, "cannot rebuild the Redis set of suspended users"),
    }
}

/// Why a relay round stopped.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker did not confirm an event")]
    Nacked,
    #[error("a blocking task failed")]
    Join,
}

async fn publish_until_failure(
    relay: &Relay,
    cancel: &CancellationToken,
) -> Result<(), RelayError> {
    let (connection, _) = authq_amqp::BrokerNodes::new(&relay.amqp_url)
        .connect(
            || ConnectionProperties::default().with_connection_name("authq-event-relay".into()),
            str::to_owned,
        )
        .await
        .map_err(|(e, _)| e)?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    info!("event relay connected");
    rebuild_suspended_set(relay).await;
    let mut rebuilt = std::time::Instant::now();
    loop {
        if rebuilt.elapsed() > REBUILD_EVERY {
            rebuild_suspended_set(relay).await;
            rebuilt = std::time::Instant::now();
        }
        #[cfg(feature = "fault-injection")]
        while relay.faults.relay_held() {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let (store, now) = (Arc::clone(&relay.store), relay.clock.now_ms());
        let batch = tokio::task::spawn_blocking(move || {
            store.write(|tx| tx.claim_events(now, LEASE_MS, BATCH))
        })
        .await
        .map_err(|_| RelayError::Join)??;
        let Some(last) = batch.last().map(|e| e.seq) else {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = relay.sink.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        let mut confirms = Vec::with_capacity(batch.len());
        let mut suspensions = Vec::new();
        for row in &batch {
            let Ok(json) = relay.sink.open(&row.sealed) else {
                warn!(
                    seq = row.seq,
                    "event relay: an outbox row cannot be opened; dropped"
                );
                continue;
            };
            let (id, kind, user) = match serde_json::from_slice::<Event>(&json) {
                Ok(e) => (
                    e.id,
                    Some(e.body.kind()),
                    e.body.user_id().map(str::to_owned),
                ),
                Err(_) => (String::new(), None, None),
            };
            if let (Some(kind), Some(user)) = (kind, user) {
                suspensions.push((kind, user));
            }
            let properties = BasicProperties::default()
                .with_content_type(authq_protocol::CONTENT_TYPE.into())
                .with_delivery_mode(2)
                .with_message_id(id.into());
            confirms.push(
                channel
                    .basic_publish(
                        relay.names.events_exchange().into(),
                        row.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &json,
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            if !confirm.await?.is_ack() {
                return Err(RelayError::Nacked);
            }
        }
        if let Some(set) = &relay.suspended {
            for (kind, user) in &suspensions {
                if let Err(e) = set.apply(*kind, user).await {
                    // The next rebuild (reconnect or purge round) catches up.
                    warn!(error = %e, "cannot update the Redis set of suspended users");
                    break;
                }
            }
        }
        let store = Arc::clone(&relay.store);
        tokio::task::spawn_blocking(move || store.read(|tx| tx.delete_events(last)))
            .await
            .map_err(|_| RelayError::Join)??;
        debug!(published = batch.len(), "event relay: batch confirmed");
    }
}
