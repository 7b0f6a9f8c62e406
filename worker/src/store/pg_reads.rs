//! [`PgReads`]: `check`'s session look-up on PostgreSQL without a blocking thread.
//!
//! The synchronous driver costs each look-up a store permit, a hop to tokio's blocking pool,
//! a pooled connection and a hop back; at 128 look-ups in flight that is about 26,000 a
//! second on the 2-core machine, where the same prepared query through the async driver
//! (`tokio-postgres`, the one `postgres` wraps), pipelined on one connection per core and run
//! on the executor, does about 115,000 (`cargo run --release --example store_drivers`). So the
//! hot read takes the async path and every write stays on the synchronous one.
//!
//! The async path is an optimisation, never a second source of errors: while its connection is
//! being made (in the background, lazily, at most once a second per connection) or when a
//! look-up on it fails (the connection is then dropped and made anew), the look-up answers
//! `None` and the caller runs it on the synchronous pool.

use super::StoreError;
use super::postgres::numbered_parameters;
use super::query::{Row, args, pg_params};
use super::sessions::{CHECK_SESSION, LiveSession};
use crate::crypto::Digest;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Statement};

/// After a failed connection attempt, the next one waits this long.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Async connections for the hot look-up, used round-robin; each pipelines the queries sent to
/// it concurrently.
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

/// One connection and its prepared statement, once made.
#[derive(Default)]
struct Slot {
    ready: Mutex<Option<Arc<Reader>>>,
    connecting: AtomicBool,
}

impl Slot {
    /// The connection, if it is made.
    fn reader(&self) -> Option<Arc<Reader>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops `broken`, unless a newer connection already replaced it.
    fn forget(&self, broken: &Arc<Reader>) {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if ready.as_ref().is_some_and(|r| Arc::ptr_eq(r, broken)) {
            *ready = None;
        }
    }
}

struct Reader {
    client: Client,
    check: Statement,
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
    /// ready to ask (the caller then asks on the synchronous pool). Must run inside a tokio
    /// runtime (a missing connection is made by a task spawned on it).
    pub(super) async fn live_session(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Option<Result<Option<LiveSession>, StoreError>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let Some(reader) = slot.reader() else {
            self.connect(Arc::clone(slot));
            return None;
        };
        let args = args![digest, now];
        match reader
            .client
            .query_opt(&reader.check, &pg_params(args))
            .await
        {
            Ok(row) => Some(
                row.map(|r| LiveSession::from_row(&Row::Postgres(&r)))
                    .transpose(),
            ),
            Err(e) => {
                // A broken connection (the server restarted, an administrator ended it) or a
                // statement the server no longer knows: a new connection mends both. This
                // look-up goes to the synchronous pool, which reports its own error if any.
                tracing::warn!(error = %e, "async store look-up failed; reconnecting");
                slot.forget(&reader);
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
                Ok(reader) => *slot.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader),
                Err(e) => {
                    tracing::warn!(error = %e, "async store connection failed; retrying");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
            slot.connecting.store(false, Ordering::Release);
        });
    }
}

/// Connects and prepares the look-up.
async fn open(config: &tokio_postgres::Config) -> Result<Arc<Reader>, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "async store connection ended");
        }
    });
    let check = client.prepare(&numbered_parameters(CHECK_SESSION)).await?;
    Ok(Arc::new(Reader { client, check }))
}
