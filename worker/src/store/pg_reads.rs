//! [`PgReads`]: `check`'s session look-up on PostgreSQL without a blocking thread.
//!
//! The synchronous driver costs each look-up a store permit, a hop to tokio's blocking pool,
//! a pooled connection and a hop back: at 128 look-ups in flight about 26,000 a second on the
//! 2-core machine, against about 115,000 for the same query through the async driver
//! (`tokio-postgres`, the one `postgres` wraps) on the executor (`cargo run --release --example
//! store_drivers`). So the hot read takes the async path; every write stays synchronous.
//!
//! The async connection is driven by a task that answers the look-ups queued for it in
//! batches, one query (`token_digest = ANY($1)`) for everything that queued while the previous
//! query ran: one caller waits one round trip, and under load PostgreSQL's per-statement work
//! is paid once per batch instead of once per check. Through the broker (`authq bench check
//! --spawn --database postgres://…`, alternating with SQLite, two rounds): one query per
//! look-up, pipelined on one connection per core, gave 65–74 % of `check` on SQLite; batched on
//! one connection per core, 73–83 % (a load-dependent figure, 94–102 % in a loaded run); batched
//! on one connection, 87–89 % with one worker process and 77–83 % with four. Larger batches
//! cost PostgreSQL less per check, so a worker keeps one connection (the type allows several).

//! The async path is an optimisation, never a second source of errors: while its connection is
//! being made (in the background, lazily, at most once a second per connection), when its
//! queue is full, or when a query on it fails (the connection is then dropped and made anew),
//! the look-up answers `None` and the caller runs it on the synchronous pool.

use super::StoreError;
use super::query::Row;
#[cfg(doc)]
use super::sessions::CHECK_SESSION;
use super::sessions::LiveSession;
use crate::crypto::Digest;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Statement};

/// After a failed connection attempt, the next one waits this long.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Look-ups one query answers at most.
const MAX_BATCH: usize = 128;

/// Look-ups waiting for one connection at most; past it, the synchronous pool answers.
const QUEUE: usize = 4 * MAX_BATCH;

/// `check`'s look-up for a batch of digests (`$1`, a `bytea[]`) live at `$2` (the batch's
/// earliest `now`; each look-up is then held to its own). [`CHECK_SESSION`]'s columns, then the
/// digest.
const CHECK_SESSIONS: &str = "SELECT u.id, u.email, u.state, u.profile, s.expires_at,
        s.absolute_expires_at, u.session_epoch, s.token_digest
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token_digest = ANY($1) AND s.expires_at > $2 AND s.absolute_expires_at > $2";

/// Async connections for the hot look-up, used round-robin. Each is driven by a task of its
/// own that answers the look-ups queued for it in batches: everything that queued while the
/// previous query ran goes in the next one.
pub struct PgReads {
    config: tokio_postgres::Config,
    slots: Box<[Arc<Slot>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PgReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReads")
            .field("connections", &self.slots.len())
            .finish()
    }
}

/// One connection's queue, once the connection is made.
#[derive(Default)]
struct Slot {
    queue: Mutex<Option<mpsc::Sender<LookUp>>>,
    connecting: AtomicBool,
}

/// The answer to one look-up: `None` sends it to the synchronous pool.
type Answer = Option<Result<Option<LiveSession>, StoreError>>;

/// One queued look-up.
struct LookUp {
    digest: Digest,
    now: i64,
    answer: oneshot::Sender<Answer>,
}

impl Slot {
    /// The connection's queue, if it is made.
    fn queue(&self) -> Option<mpsc::Sender<LookUp>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops `broken`, unless a newer connection already replaced it.
    fn forget(&self, broken: &mpsc::Sender<LookUp>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.as_ref().is_some_and(|q| q.same_channel(broken)) {
            *queue = None;
        }
    }
}

impl PgReads {
    /// Up to `connections` async connections to the database of `config`, none made yet.
    pub fn new(config: tokio_postgres::Config, connections: usize) -> Self {
        Self {
            config,
            slots: (0..connections.max(1))
                .map(|_| Arc::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The live session with this digest at `now`, with its user; `None` when no connection is
    /// ready to ask or the look-up failed on it (the caller then asks on the synchronous pool).
    /// Must run inside a tokio runtime (a missing connection is made by a task spawned on it).
    pub(super) async fn live_session(&self, digest: &Digest, now: i64) -> Answer {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let Some(queue) = slot.queue() else {
            self.connect(Arc::clone(slot));
            return None;
        };
        let (answer, answered) = oneshot::channel();
        let look_up = LookUp {
            digest: *digest,
            now,
            answer,
        };
        match queue.try_send(look_up) {
            Ok(()) => answered.await.ok().flatten(),
            // As many look-ups wait as a few batches hold: the pool takes this one.
            Err(mpsc::error::TrySendError::Full(_)) => None,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                slot.forget(&queue);
                self.connect(Arc::clone(slot));
                None
            }
        }
    }

    /// Makes `slot`'s connection in the background, unless that is already under way.
    fn connect(&self, slot: Arc<Slot>) {
        if slot.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            slot.connecting.store(false, Ordering::Release);
            return;
        };
        let config = self.config.clone();
        runtime.spawn(async move {
            match open(&config).await {
                Ok((client, statement)) => {
                    let (queue, queued) = mpsc::channel(QUEUE);
                    *slot.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue);
                    tokio::spawn(answer_batches(client, statement, queued));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "async store connection failed; retrying");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
            slot.connecting.store(false, Ordering::Release);
        });
    }
}

/// Answers the look-ups queued for one connection, one query per batch, until the store is
/// dropped (the queue closes) or a query fails. A failure (the server restarted, an
/// administrator ended the connection, the statement is no longer known) ends the connection:
/// its batch goes to the synchronous pool, which reports its own error if any, and the next
/// look-up makes a new connection.
async fn answer_batches(client: Client, statement: Statement, mut queued: mpsc::Receiver<LookUp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let digests: Vec<&[u8]> = batch.iter().map(|l| &l.digest[..]).collect();
        let earliest = batch.iter().map(|l| l.now).min().unwrap_or_default();
        match client.query(&statement, &[&digests, &earliest]).await {
            Ok(rows) => {
                for look_up in batch.drain(..) {
                    let answer = answer(&rows, &look_up);
                    let _ = look_up.answer.send(Some(answer));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "async store look-up failed; reconnecting");
                return; // dropping the batch answers `None` to each
            }
        }
    }
}

/// `look_up`'s session among a batch's rows, held to its own `now`.
fn answer(
    rows: &[tokio_postgres::Row],
    look_up: &LookUp,
) -> Result<Option<LiveSession>, StoreError> {
    for row in rows {
        let digest: &[u8] = row.try_get(7)?;
        if digest == look_up.digest {
            let found = LiveSession::from_row(&Row::Postgres(row))?;
            return Ok(found.live_at(look_up.now).then_some(found));
        }
    }
    Ok(None)
}

/// Connects and prepares the look-up.
async fn open(
    config: &tokio_postgres::Config,
) -> Result<(Client, Statement), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "async store connection ended");
        }
    });
    let statement = client.prepare(CHECK_SESSIONS).await?;
    Ok((client, statement))
}
