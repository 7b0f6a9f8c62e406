//! [`Client`]: one connection to the broker, many calls in flight.
//!
//! - `options`: [`ClientOptions`] and its builder.
//! - `link`: the connection, its publishing channel and the exclusive reply queue whose
//!   dispatcher (`crate::replies`) matches replies to calls; reconnection across cluster nodes.
//! - `call`: sending a request: publishing with confirms, waiting, retrying and timing out.
//! - `ops`: one typed method per operation (the social login ones are in `crate::social`).

mod call;
mod link;
mod ops;
mod options;

pub use options::ClientOptions;

use crate::error::ClientError;
use authq_protocol::{Names, broker_urls};
use lapin::types::ShortString;
use link::Link;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tracing::debug;

/// A connection to authq over RabbitMQ. Cheap to clone; clones share the connection, and any
/// number of calls may run at once from any task.
///
/// Replies come back on one exclusive, server-named reply queue that the client declares at
/// connect time (never one per call), and are matched to calls by correlation id. Requests are
/// published `mandatory` on a channel in confirm mode: a full tube (the broker nacks) fails the
/// call at once with [`ClientError::Overloaded`], an unroutable request with
/// [`ClientError::Unroutable`]. When the connection drops, calls in flight fail at once with
/// [`ClientError::ConnectionLost`] (unless they have attempts left) and the next call
/// reconnects.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    names: Names,
    /// Sent as every request's `user-id` (validated by the broker).
    user_id: Option<ShortString>,
    options: ClientOptions,
    /// The current connection; replaced by the first call that finds it broken.
    link: tokio::sync::Mutex<Arc<Link>>,
    /// Which of the URLs listed in `url` the current connection went to (reconnections try it
    /// first, then the others in turn).
    node: AtomicUsize,
    closed: AtomicBool,
}

impl Client {
    /// Connects to the broker at `url` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`) with the
    /// default options. `url` may list several nodes of one RabbitMQ cluster, separated by
    /// commas: the client connects to the first that answers, and when its connection is lost it
    /// reconnects to the first that answers again, starting with the one it had.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when the broker cannot be reached within the default timeout (10
    /// s), [`ClientError::AccessRefused`] for a wrong user, password or virtual host,
    /// [`ClientError::NoDeployment`] when no worker ever declared namespace `authq` on this broker.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), authq::ClientError> {
    /// let client = authq::Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with explicit options. Fails with [`ClientError::NoDeployment`] if no worker has
    /// ever declared the namespace on this broker.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`] (within `options.timeout`), and [`ClientError::Namespace`] for an
    /// invalid namespace.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), authq::ClientError> {
    /// let options = authq::ClientOptions::default().namespace("staging").attempts(3);
    /// let client = authq::Client::connect_with("amqp://guest:guest@127.0.0.1:5672/%2f", options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let names = Names::new(&options.namespace)?;
        let user_id = options
            .user_id
            .clone()
            .or_else(|| url_user(url))
            .map(ShortString::from);
        let (link, node) = Link::open(url, &names, &options, 0).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                names,
                user_id,
                options,
                link: tokio::sync::Mutex::new(Arc::new(link)),
                node: AtomicUsize::new(node),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Closes the connection. Calls in flight fail with [`ClientError::ConnectionLost`], and so
    /// does every later call.
    ///
    /// # Errors
    ///
    /// [`ClientError::Broker`] if the broker does not acknowledge the close.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let link = Arc::clone(&*self.inner.link.lock().await);
        link.connection
            .close(200, "client closing".into())
            .await
            .map_err(ClientError::broker)?;
        Ok(())
    }

    /// The current connection, reconnecting first if it is broken.
    async fn link(&self) -> Result<Arc<Link>, ClientError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::ConnectionLost);
        }
        let mut current = self.inner.link.lock().await;
        if !current.is_usable() {
            debug!("reconnecting to the broker");
            let inner = &*self.inner;
            let start = inner.node.load(Ordering::Relaxed);
            let (link, node) = Link::open(&inner.url, &inner.names, &inner.options, start).await?;
            inner.node.store(node, Ordering::Relaxed);
            *current = Arc::new(link);
        }
        Ok(Arc::clone(&current))
    }
}

/// The user a URL authenticates as with PLAIN (what the broker validates `user-id` against);
/// `None` for SASL EXTERNAL (the user is the certificate's) or an unparsable URL.
fn url_user(url: &str) -> Option<String> {
    let first = broker_urls(url).into_iter().next().unwrap_or(url);
    let uri: lapin::uri::AMQPUri = first.parse().ok()?;
    if matches!(
        uri.query.auth_mechanism,
        Some(lapin::uri::SASLMechanism::External)
    ) {
        return None;
    }
    Some(uri.authority.userinfo.username)
}
