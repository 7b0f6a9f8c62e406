//! # authq-worker: the consumer pool and the auth logic
//!
//! A worker takes auth requests from RabbitMQ, runs them against the user store and replies on
//! each caller's reply queue. Workers are stateless apart from the store: start more of them,
//! on any host, to add capacity.
//!
//! # One delivery's life
//! [`delivery`] reads top to bottom: deadline → reply_to → size and operation → decode →
//! [`handlers`] (store on the blocking pool, argon2 on [`hashing`]'s own threads) → reply
//! ([`reply`]) → ack on the same channel.
//!
//! # Layout
//! - [`config`] — the worker's settings, with production defaults.
//! - [`topology`] — the exchanges, tubes and bindings it declares (the broker's nodes, private
//!   reply queues and pending calls come from the `authq-amqp` crate).
//! - [`pool`] — consumers per tube, prefetch, shutdown.
//! - [`delivery`], [`reply`]: one message's path and what goes back on the wire.
//! - [`handlers`] — the operations, grouped by their default tube.
//! - [`store`] — the user store on SQLite or PostgreSQL, one module per thing it keeps.
//! - [`crypto`], [`hashing`], [`domain`]: tokens and digests, argon2, input validation.
//! - [`social`] — social login: providers, the OAuth2 / OIDC client, sealing.
//! - [`clock`], [`metrics`], [`error`]: time, the metrics registry, error types.
//! - [`observe`] — `/metrics`, `/livez` and `/readyz` on `--metrics-addr`.

pub mod caller;
mod checkpoints;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod events;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod handlers;
pub mod hashing;
pub mod idempotency;
pub mod keys;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod pool;
pub mod redact;
pub mod reply;
pub mod sealing;
pub mod social;
pub mod startup;
pub mod store;
pub mod suspended_set;
pub mod topology;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use error::{HandlerError, WorkerError};
pub use metrics::{Metrics, MetricsSnapshot};
pub use pool::{WorkerHandle, run};
