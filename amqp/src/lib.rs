//! # authq-amqp: the AMQP plumbing both sides of authq share
//!
//! authq's client library calls workers over RabbitMQ, and a worker calls an operator's policy
//! hook the same way; both connect to one node of a possibly clustered broker. What they share
//! lives here, once:
//!
//! - [`BrokerNodes`] — a broker setting that lists one node or several of a cluster, and a
//!   connection to the first that answers, starting with the one that answered last.
//! - [`private_queue`] — a server-named, exclusive, auto-deleted queue consumed without
//!   acknowledgements: a caller's reply queue, or `authq events`' subscription.
//! - [`Pending`] and [`dispatch`] — calls waiting for their replies by correlation id, and the
//!   task that hands each reply on the private queue to its call (and, on a `tube_declared`
//!   notice, ends the calls whose requests were lost with the tube).
//!
//! It depends on lapin, tokio, serde_json and the protocol crate only; no authq logic lives
//! here.

mod nodes;
mod replies;

pub use nodes::BrokerNodes;
pub use replies::{Answer, Pending, Refusal, Waiter, dispatch, private_queue};
