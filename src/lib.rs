//! # authq: authentication over RabbitMQ — the client library
//!
//! Services never call authq over HTTP: they publish auth requests to RabbitMQ and a pool of
//! authq workers answers on the caller's reply queue. This crate is what a Rust service uses to
//! do that: [`Client`] keeps one connection with two channels (one publishing requests in
//! confirm mode, one consuming the client's exclusive reply queue), and matches replies to calls
//! by correlation id, so any number of calls can be in flight at once. A broken connection is
//! replaced by the next call, on the first node of the URL's list that answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), authq::ClientError> {
//! use std::time::Duration;
//! let client = authq::Client::connect_with(
//!     "amqp://guest:guest@127.0.0.1:5672/%2f",
//!     authq::ClientOptions::default()
//!         .namespace("authq")                 // the deployment's `--namespace`
//!         .timeout(Duration::from_secs(5)),   // per call, and for connecting
//! )
//! .await?;
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
//! [`Client::connect`] is `connect_with` with [`ClientOptions::default`]: namespace `authq`,
//! a 10 s timeout, one attempt per call, the URL's user as `user_id`.
//!
//! # Cargo features and runtime
//!
//! A service that only calls authq depends on this crate without default features, adding
//! `tls` if it connects with `amqps://`:
//!
//! ```toml
//! authq = { version = "…", default-features = false, features = ["tls"] }
//! tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
//! ```
//!
//! - `tls` (default): `amqps://` URLs, over rustls with the ring provider; certificates are
//!   checked against the system's trust store (`SSL_CERT_FILE` points at a private CA).
//!   Without it only `amqp://` connects.
//! - `cli` (default): the `authq` binary (worker pool, argon2, SQLite). A client leaves it out.
//!
//! The client runs on Tokio: call it from within a Tokio runtime (multi-threaded or
//! current-thread) with the `time` driver enabled, which `#[tokio::main]` and
//! `tokio::runtime::Builder::enable_all` give; it spawns one task per connection to dispatch
//! replies. It needs no Tokio feature beyond what this crate enables itself (`rt`, `sync`,
//! `time`); your `main` needs `macros` and `rt-multi-thread` for `#[tokio::main]`.
//!
//! # Errors
//!
//! Every method returns [`ClientError`]. An error reply from a worker is
//! [`ClientError::Server`] with the protocol's [`ErrorCode`]; the rest are what the caller sees
//! on the broker. [`ClientError::is_timeout`], [`ClientError::is_connect`] and
//! [`ClientError::is_retryable`] classify them. A worker pool that is stopped is not visible as
//! such: the requests wait in the broker and each call ends in [`ClientError::Timeout`].
//!
//! # Layout
//! - [`client`] — [`Client`]: connecting (`connect.rs`), the connection and its reply queue
//!   (`link.rs`), one call with its timeout and retries (`call.rs`), one typed method per
//!   operation (`ops.rs`; the social login ones in `social.rs`), [`ClientOptions`].
//! - the private reply queue, the calls waiting on it and the cluster's nodes come from the
//!   `authq-amqp` crate, which the worker's policy hook shares.
//! - [`error`] — [`ClientError`] and [`BrokerError`].
//! - [`types`] — the reply types the methods return.
//! - [`protocol`] — the wire contract (re-exported `authq-protocol`).

pub mod client;
pub mod error;
mod social;
#[cfg(feature = "verify")]
pub mod verify;

pub use authq_protocol as protocol;
pub use authq_protocol::{ErrorCode, Secret};
pub use client::{Client, ClientOptions};
pub use error::{BrokerError, ClientError};

/// The types the [`Client`] methods take and return (each operation's reply `data`, PROTOCOL.md
/// section 5), re-exported from [`protocol::ops`]. Secrets in them (`session`, `code`,
/// `token`, `state`) are [`Secret`]s: read them with [`Secret::expose`].
pub mod types {
    #[doc(inline)]
    pub use authq_protocol::ops::{
        ChangePasswordReply, CheckReply, CompleteResetReply, ConfirmRegistrationReply,
        DeleteUserReply, DeletionStatusReply, Empty, LinkSocialReply, LoginReply, LogoutAllReply,
        Profile, ProfileMode, ProfileReply, RegisterReply, SocialLoginReply, SocialUrlReply,
        StartResetReply, UserInfo, UserRef, UserState, UserStateReply,
    };
    #[doc(inline)]
    pub use authq_protocol::ops::{
        EndUserSessionsReply, GetUserReply, ImportResult, ImportStatus, ImportUser,
        ImportUsersReply, ImportedHash, ListUsersReply, ListUsersRequest, PasswordScheme,
        UserSummary,
    };
}
