//! # authq: authentication over RabbitMQ — the client library
//!
//! Services never call authq over HTTP: they publish auth requests to RabbitMQ and a pool of
//! authq workers answers on the caller's reply queue. This crate is what a Rust service uses to
//! do that: [`Client`] keeps one connection, one channel and one exclusive reply queue, and
//! matches replies to calls by correlation id, so any number of calls can be in flight at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), authq::ClientError> {
//! let client = authq::Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//! let registered = client.register("ann@example.com").await?;
//! // … mail `registered.code` to the user; they choose a password …
//! client
//!     .confirm_registration("ann@example.com", registered.code.expose(), "correct horse battery")
//!     .await?;
//! let login = client.login("ann@example.com", "correct horse battery").await?;
//! let me = client.check(login.session.expose()).await?;
//! assert_eq!(me.user.email, "ann@example.com");
//! # Ok(()) }
//! ```
//!
//! A service that only calls authq depends on this crate without default features
//! (`authq = { version = "…", default-features = false }`): that compiles the client alone,
//! without the worker, argon2 or SQLite.
//!
//! # Layout
//! - [`client`] — [`Client`], its options and one typed method per operation (the social
//!   login ones are in `social.rs`).
//! - [`error`] — [`ClientError`].
//! - [`protocol`] — the wire contract (re-exported `authq-protocol`).

pub mod client;
pub mod error;
mod replies;
mod social;

pub use authq_protocol as protocol;
pub use authq_protocol::{ErrorCode, Secret};
pub use client::{Client, ClientOptions};
pub use error::ClientError;
