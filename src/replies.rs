//! The calls waiting for replies, and the task that hands each reply to its call.

use futures_util::StreamExt;
use lapin::Consumer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tracing::{debug, trace};

/// Calls in flight, by correlation id.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Vec<u8>>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call; `None` once the reply path is gone.
    pub(crate) fn register(self: &Arc<Self>) -> Option<(Waiter, oneshot::Receiver<Vec<u8>>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        let waiter = Waiter {
            pending: Arc::clone(self),
            id,
        };
        // Checked after inserting: `close` either sees the entry (and drops it) or we see it.
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        Some((waiter, rx))
    }

    /// Hands a reply to its call. Late replies (the call timed out) and duplicates are dropped.
    fn deliver(&self, correlation_id: Option<&str>, body: Vec<u8>) {
        let Some(id) = correlation_id.and_then(|c| c.parse::<u64>().ok()) else {
            debug!("reply without a usable correlation id: dropped");
            return;
        };
        match self.lock().remove(&id) {
            Some(tx) => {
                let _ = tx.send(body);
            }
            None => trace!(id, "late or duplicate reply: dropped"),
        }
    }

    /// The reply path is gone: every waiting call fails at once.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lock().clear();
    }

    /// Whether the reply path is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// One call's place in [`Pending`]; leaving it (reply, timeout, cancellation) frees it.
#[derive(Debug)]
pub(crate) struct Waiter {
    pending: Arc<Pending>,
    id: u64,
}

impl Waiter {
    /// The correlation id to send.
    pub(crate) fn correlation_id(&self) -> String {
        self.id.to_string()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// Reads the reply queue until the consumer ends, then fails every waiting call.
pub(crate) async fn dispatch(mut consumer: Consumer, pending: Arc<Pending>) {
    while let Some(next) = consumer.next().await {
        match next {
            Ok(delivery) => {
                let cid = delivery.properties.correlation_id().clone();
                pending.deliver(cid.as_ref().map(|c| c.as_str()), delivery.data);
            }
            Err(e) => {
                debug!(error = %e, "reply consumer failed");
                break;
            }
        }
    }
    pending.close();
}
