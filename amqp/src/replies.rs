//! The private queue replies arrive on, the calls waiting for them, and the task that hands
//! each reply to its call.

use authq_protocol::Operation;
use authq_protocol::names::headers;
use authq_protocol::notice::{REFUSED, TUBE_DECLARED, TubeDeclared};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tracing::{debug, trace};

/// What ends a waiting call.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The worker's reply body.
    Reply(Vec<u8>),
    /// The broker refused the request without a worker seeing it.
    Refused(Refusal),
}

/// Why the broker refused a request ([`Answer::Refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its tube was full: the tube dead-lettered it, and a worker answered it with an
    /// [`authq_protocol::notice::REFUSED`] reply.
    Full,
    /// No queue took it: the broker returned the `mandatory` publish.
    Unroutable,
}

/// One waiting call: where its answer goes, and its operation (for [`Pending::release`]).
type Entry = (oneshot::Sender<Answer>, Option<Operation>);

/// Calls in flight, by correlation id, and what the workers' replies said of each operation's
/// tube.
#[derive(Debug)]
pub struct Pending {
    waiting: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// Per operation (by its index in [`Operation::ALL`]): whether the last reply to it
    /// carried [`headers::REFUSALS_RETURNED`], so its next request may go without confirms.
    refusals_returned: Box<[AtomicBool]>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            next_id: AtomicU64::default(),
            closed: AtomicBool::default(),
            refusals_returned: Operation::ALL
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
        }
    }
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call; `None` once the reply path is gone.
    pub fn register(self: &Arc<Self>) -> Option<(Waiter, oneshot::Receiver<Answer>)> {
        self.register_for(None)
    }

    /// Registers a call of `operation` (which [`Pending::release`] matches); `None` once the
    /// reply path is gone.
    pub fn register_for(
        self: &Arc<Self>,
        operation: Option<Operation>,
    ) -> Option<(Waiter, oneshot::Receiver<Answer>)> {
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

    /// Hands `answer` to its call. Late answers (the call timed out) and duplicates are
    /// dropped.
    pub fn answer(&self, correlation_id: Option<&str>, answer: Answer) {
        if let Some((tx, _)) = self.take(correlation_id) {
            let _ = tx.send(answer);
        }
    }

    /// Takes the waiting call `correlation_id` names; `None` for a late or duplicate answer or
    /// one without a usable correlation id.
    fn take(&self, correlation_id: Option<&str>) -> Option<Entry> {
        let Some(id) = correlation_id.and_then(|c| c.parse::<u64>().ok()) else {
            debug!("reply without a usable correlation id: dropped");
            return None;
        };
        let entry = self.lock().remove(&id);
        if entry.is_none() {
            trace!(id, "late or duplicate reply: dropped");
        }
        entry
    }

    /// Hands a worker's reply to its call, having learnt from it first whether the call's
    /// operation may go without confirms next time (so the caller sees what its reply taught).
    fn reply(&self, correlation_id: Option<&str>, body: Vec<u8>, refusals_returned: bool) {
        if let Some((tx, op)) = self.take(correlation_id) {
            if let Some(op) = op {
                self.learn(op, refusals_returned);
            }
            let _ = tx.send(Answer::Reply(body));
        }
    }

    /// Whether `operation`'s tube returns the requests it refuses to their caller, as the last
    /// reply to it said ([`headers::REFUSALS_RETURNED`]): a read may then be published without
    /// waiting for a confirm, since a full tube's refusal still comes back at once.
    pub fn refusals_returned(&self, operation: Operation) -> bool {
        self.refusals_returned[index(operation)].load(Ordering::Relaxed)
    }

    fn learn(&self, operation: Operation, refusals_returned: bool) {
        self.refusals_returned[index(operation)].store(refusals_returned, Ordering::Relaxed);
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
            Ok(delivery) if is_refused(&delivery) => {
                let cid = delivery.properties.correlation_id().clone();
                pending.answer(
                    cid.as_ref().map(|c| c.as_str()),
                    Answer::Refused(Refusal::Full),
                );
            }
            Ok(delivery) => {
                let props = &delivery.properties;
                let returns = matches!(
                    props
                        .headers()
                        .as_ref()
                        .and_then(|t| t.inner().get(headers::REFUSALS_RETURNED)),
                    Some(AMQPValue::Boolean(true))
                );
                let cid = props.correlation_id().clone();
                pending.reply(cid.as_ref().map(|c| c.as_str()), delivery.data, returns);
            }
            Err(e) => {
                debug!(error = %e, "reply consumer failed");
                break;
            }
        }
    }
    pending.close();
}

fn index(operation: Operation) -> usize {
    // `ALL` lists every variant in declaration order.
    operation as usize
}

fn is_tube_declared(delivery: &lapin::message::Delivery) -> bool {
    is_kind(delivery, TUBE_DECLARED)
}

fn is_refused(delivery: &lapin::message::Delivery) -> bool {
    is_kind(delivery, REFUSED)
}

fn is_kind(delivery: &lapin::message::Delivery, kind: &str) -> bool {
    delivery
        .properties
        .kind()
        .as_ref()
        .is_some_and(|k| k.as_str() == kind)
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
        pending.answer(
            Some(&first.correlation_id()),
            Answer::Reply(b"one".to_vec()),
        );
        assert_eq!(first_rx.try_recv().unwrap(), Answer::Reply(b"one".to_vec()));
        // A duplicate or a reply without a usable id goes nowhere.
        pending.answer(
            Some(&first.correlation_id()),
            Answer::Reply(b"again".to_vec()),
        );
        pending.answer(Some("not a number"), Answer::Reply(b"x".to_vec()));
        pending.answer(None, Answer::Reply(b"x".to_vec()));
        assert!(second_rx.try_recv().is_err(), "not answered yet");
        pending.close();
        assert!(pending.is_closed());
        assert!(second_rx.try_recv().is_err(), "closed: its sender is gone");
        assert!(pending.register().is_none());
    }

    #[test]
    fn every_operation_has_its_own_place_in_what_replies_taught() {
        for (i, &op) in Operation::ALL.iter().enumerate() {
            assert_eq!(index(op), i, "{op:?}");
        }
        let pending = Arc::new(Pending::default());
        let (waiter, mut rx) = pending.register_for(Some(Operation::Check)).unwrap();
        pending.reply(Some(&waiter.correlation_id()), vec![], true);
        assert_eq!(rx.try_recv().unwrap(), Answer::Reply(vec![]));
        assert!(pending.refusals_returned(Operation::Check));
        assert!(!pending.refusals_returned(Operation::Ping));
        pending.learn(Operation::Check, false);
        assert!(!pending.refusals_returned(Operation::Check));
    }

    #[test]
    fn a_call_that_leaves_frees_its_place() {
        let pending = Arc::new(Pending::default());
        let (waiter, _rx) = pending.register().unwrap();
        let id = waiter.correlation_id();
        drop(waiter);
        pending.answer(Some(&id), Answer::Reply(b"late".to_vec()));
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
