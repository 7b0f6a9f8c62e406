//! # authq-worker: the consumer pool and the auth logic
//!
//! A worker takes auth requests from RabbitMQ, runs them against the user store and replies on
//! each caller's reply queue. Workers are stateless apart from the store: start more of them,
//! on any host that reaches the store, to add capacity.
//!
//! # The story of a worker
//! [`run`] (or [`WorkerHandle::start`]) validates the [`Config`], then [`startup`] opens the
//! store (SQLite or PostgreSQL, migrated), loads the server key every sealing key is derived
//! from, starts the argon2 pool, and assembles the handlers' context. [`pool`] connects to the
//! broker, declares the [`topology`] (idempotent, so workers start in any order) and runs the
//! consumers of every tube, each on its own channel with its own prefetch. Every delivery is a
//! task that `delivery.rs` tells top to bottom in numbered steps: deadline, `reply_to`,
//! refusals, "seen before?" from the recorded outcome, the [`handlers`] (store calls on the
//! blocking pool, argon2 on [`hashing`]'s own threads), then the reply and the ack on the same
//! channel. Effects, their outcome and their events commit in one store transaction; a relay
//! publishes the events. A lost broker connection is reconnected; SIGTERM drains.
//!
//! # Layout
//! - [`config`] — the settings with their production defaults, social providers included;
//!   [`startup`] — opening the parts and assembling the context (the composition root).
//! - [`pool`] — connection, consumers, reconnection, shutdown; [`topology`] — what it declares.
//! - `delivery` (one delivery's life), `checkpoints` (fault points, empty without the feature),
//!   `reply` (what goes back on the wire), `caller` (whose reply queue, which role), [`redact`]
//!   (dead letters without secrets).
//! - [`handlers`] — the operations, grouped by their default tube, behind one `dispatch`.
//! - [`store`] — the user store on SQLite or PostgreSQL, one module per thing it keeps.
//! - [`hashing`] — the argon2id pool; [`crypto`] — tokens, codes and digests; `domain` — input
//!   validation; [`keys`] — the server key; `sealing` — the one AEAD for data at rest;
//!   `idempotency` — recorded outcomes.
//! - `events` — the transactional outbox and its relay; `suspended_set` — the Redis set of
//!   suspended users; `policy` — the deny-list and the policy hook; `social` — social login's
//!   OAuth2 / OIDC client.
//! - [`metrics`] — the one Prometheus registry; `observe` — `/metrics`, `/livez`, `/readyz`.
//! - [`clock`], [`error`] — time, and the error types.
//! - `faults` (feature `fault-injection`, tests only) — the fault hooks.
//!
//! The broker's nodes, private reply queues and pending calls come from `authq-amqp`, shared
//! with the client library.

pub(crate) mod caller;
mod checkpoints;
pub mod clock;
pub mod config;
pub mod crypto;
pub(crate) mod delivery;
pub(crate) mod domain;
pub mod error;
pub(crate) mod events;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod handlers;
pub mod hashing;
pub(crate) mod idempotency;
pub mod keys;
pub mod metrics;
pub(crate) mod observe;
pub(crate) mod policy;
pub mod pool;
pub mod redact;
pub(crate) mod reply;
pub(crate) mod sealing;
pub(crate) mod social;
pub mod startup;
pub mod store;
pub(crate) mod suspended_set;
pub mod tokens;
pub mod topology;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use error::{HandlerError, WorkerError};
pub use metrics::{Metrics, MetricsSnapshot};
pub use pool::{WorkerHandle, run};
