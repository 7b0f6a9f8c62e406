//! Connecting ([`Client::connect`], [`Client::connect_with`]), reconnecting the next call after
//! a lost connection, and closing.

use super::link::Link;
use super::{Client, ClientOptions, Inner};
use crate::error::ClientError;
use authq_amqp::BrokerNodes;
use authq_protocol::{Names, broker_urls};
use lapin::types::ShortString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::debug;

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
        let nodes = BrokerNodes::new(url);
        let link = Link::open(url, &nodes, &names, &options).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                names,
                user_id,
                options,
                link: std::sync::RwLock::new(Arc::new(link)),
                reconnecting: tokio::sync::Mutex::new(()),
                nodes,
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
        let link = self.current_link();
        link.connection
            .close(200, "client closing".into())
            .await
            .map_err(ClientError::broker)?;
        Ok(())
    }

    /// Whether the next call of `operation` is published without waiting for a confirm: the
    /// last reply to it on this connection said its tube returns what it refuses (a read on a
    /// classic or transient tube; PROTOCOL.md §8). Until a reply says so, and for every write,
    /// calls wait for the confirm.
    pub fn sends_without_confirms(&self, operation: authq_protocol::Operation) -> bool {
        !operation.is_mutating() && self.current_link().pending.refusals_returned(operation)
    }

    /// The current connection, reconnecting first if it is broken.
    pub(super) async fn link(&self) -> Result<Arc<Link>, ClientError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::ConnectionLost);
        }
        // The hot path: a clone of the current link, no waiting.
        let current = self.current_link();
        if current.is_usable() {
            return Ok(current);
        }
        let _turn = self.inner.reconnecting.lock().await;
        // The call that held the turn before may have reconnected already.
        let current = self.current_link();
        if current.is_usable() {
            return Ok(current);
        }
        debug!("reconnecting to the broker");
        let inner = &*self.inner;
        let link =
            Arc::new(Link::open(&inner.url, &inner.nodes, &inner.names, &inner.options).await?);
        *inner.link.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&link);
        Ok(link)
    }

    fn current_link(&self) -> Arc<Link> {
        // Every holder only clones or replaces the `Arc`: the value is whole even after a panic.
        Arc::clone(&self.inner.link.read().unwrap_or_else(|p| p.into_inner()))
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
