//! The private queue replies arrive on, the calls waiting for them, and the task that hands
//! each reply to its call.

use authq_protocol::Operation;
use authq_protocol::notice::{TUBE_DECLARED, TubeDeclared};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tracing::{debug, trace};

/// One waiting call: where its reply goes, and its operation (for [`Pending::release`]).
type Entry = (oneshot::Sender<Vec<u8>>, Option<Operation>);

/// Calls in flight, by correlation id.
#[derive(Debug, Default)]
pub struct Pending {
    waiting: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call; `None` once the reply path is gone.
    pub fn register(self: &Arc<Self>) -> Option<(Waiter, oneshot::Receiver<Vec<u8>>)> {
        self.register_for(None)
    }

    /// Registers a call of `operation` (which [`Pending::release`] matches); `None` once the
    /// reply path is gone.
    pub fn register_for(
        self: &Arc<Self>,
        operation: Option<Operation>,
    ) -> Option<(Waiter, oneshot::Receiver<Vec<u8>>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, (tx, operation));
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
    pub fn deliver(&self, correlation_id: Option<&str>, body: Vec<u8>) {
        let Some(id) = correlation_id.and_then(|c| c.parse::<u64>().ok()) else {
            debug!("reply without a usable correlation id: dropped");
            return;
        };
        match self.lock().remove(&id) {
            Some((tx, _)) => {
                let _ = tx.send(body);
            }
            None => trace!(id, "late or duplicate reply: dropped"),
        }
    }

    /// Ends every waiting call of one of `operations` at once, as if its reply path were gone
    /// (its receiver sees the sender dropped), and returns how many: their requests were lost
    /// with a tube ([`authq_protocol::notice::TubeDeclared`]).
    pub fn release(&self, operations: &[Operation]) -> usize {
        let mut waiting = self.lock();
        let before = waiting.len();
        waiting.retain(|_, (_, op)| !op.is_some_and(|op| operations.contains(&op)));
        before - waiting.len()
    }

    /// The reply path is gone: every waiting call fails at once.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lock().clear();
    }

    /// Whether the reply path is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// One call's place in [`Pending`]; leaving it (reply, timeout, cancellation) frees it.
#[derive(Debug)]
pub struct Waiter {
    pending: Arc<Pending>,
    id: u64,
}

impl Waiter {
    /// The correlation id to send.
    pub fn correlation_id(&self) -> String {
        self.id.to_string()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// Reads the reply queue until the consumer ends, then fails every waiting call.
pub async fn dispatch(mut consumer: Consumer, pending: Arc<Pending>) {
    while let Some(next) = consumer.next().await {
        match next {
            Ok(delivery) if is_tube_declared(&delivery) => {
                match serde_json::from_slice::<TubeDeclared>(&delivery.data) {
                    Ok(notice) => {
                        let ops: Vec<Operation> = notice
                            .operations
                            .iter()
                            .filter_map(|op| Operation::parse(op))
                            .collect();
                        let released = pending.release(&ops);
                        debug!(tube = %notice.tube, released, "tube declared anew: its calls in flight end");
                    }
                    Err(e) => debug!(error = %e, "unreadable notice: dropped"),
                }
            }
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

fn is_tube_declared(delivery: &lapin::message::Delivery) -> bool {
    delivery
        .properties
        .kind()
        .as_ref()
        .is_some_and(|k| k.as_str() == TUBE_DECLARED)
}

/// Declares a server-named (`amq.gen-…`), exclusive, auto-deleted queue on `channel` and
/// consumes it without acknowledgements: only this connection can read it, and it goes away
/// with the connection. Returns its name (the `reply_to` to send) and its consumer.
pub async fn private_queue(channel: &Channel) -> Result<(ShortString, Consumer), lapin::Error> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().clone();
    let consumer = channel
        .basic_consume(
            name.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((name, consumer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reaches_its_call_once_and_closing_fails_the_rest() {
        let pending = Arc::new(Pending::default());
        let (first, mut first_rx) = pending.register().unwrap();
        let (second, mut second_rx) = pending.register().unwrap();
        assert_ne!(first.correlation_id(), second.correlation_id());
        pending.deliver(Some(&first.correlation_id()), b"one".to_vec());
        assert_eq!(first_rx.try_recv().unwrap(), b"one");
        // A duplicate or a reply without a usable id goes nowhere.
        pending.deliver(Some(&first.correlation_id()), b"again".to_vec());
        pending.deliver(Some("not a number"), b"x".to_vec());
        pending.deliver(None, b"x".to_vec());
        assert!(second_rx.try_recv().is_err(), "not answered yet");
        pending.close();
        assert!(pending.is_closed());
        assert!(second_rx.try_recv().is_err(), "closed: its sender is gone");
        assert!(pending.register().is_none());
    }

    #[test]
    fn a_call_that_leaves_frees_its_place() {
        let pending = Arc::new(Pending::default());
        let (waiter, _rx) = pending.register().unwrap();
        let id = waiter.correlation_id();
        drop(waiter);
        pending.deliver(Some(&id), b"late".to_vec());
        assert!(pending.lock().is_empty());
    }

    #[test]
    fn a_notice_releases_the_calls_of_its_operations_only() {
        let pending = Arc::new(Pending::default());
        let (_check, mut check_rx) = pending.register_for(Some(Operation::Check)).unwrap();
        let (_login, mut login_rx) = pending.register_for(Some(Operation::Login)).unwrap();
        let (_hook, mut hook_rx) = pending.register().unwrap();
        assert_eq!(pending.release(&[Operation::Check, Operation::Ping]), 1);
        assert!(matches!(
            check_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(matches!(
            login_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert!(matches!(
            hook_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
    }
}
