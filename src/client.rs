//! [`Client`]: one connection to the broker, many calls in flight.

use crate::error::ClientError;
use crate::replies::{self, Pending, Waiter};
use authq_protocol::names::{DEFAULT_NAMESPACE, headers};
use authq_protocol::ops::{
    ChangePasswordReply, ChangePasswordRequest, CheckReply, CheckRequest, CompleteResetReply,
    CompleteResetRequest, ConfirmRegistrationReply, ConfirmRegistrationRequest, DeleteUserReply,
    DeleteUserRequest, DeletionDoneRequest, DeletionStatusReply, DeletionStatusRequest, Empty,
    GetProfileRequest, LoginReply, LoginRequest, LogoutAllReply, LogoutAllRequest, LogoutRequest,
    PingRequest, ProfileMode, ProfileReply, RegisterReply, RegisterRequest, SetProfileRequest,
    StartResetReply, StartResetRequest, SuspendRequest, UnsuspendRequest, UserRef, UserStateReply,
};
use authq_protocol::{
    CONTENT_TYPE, Names, PROTOCOL_VERSION, Request, Secret, broker_urls, redact_url,
};
use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tracing::debug;

/// How a [`Client`] connects and calls.
///
/// Built from [`ClientOptions::default`] with the setters (the struct is `#[non_exhaustive]`,
/// so options can be added without breaking callers):
///
/// ```
/// use std::time::Duration;
/// let options = authq::ClientOptions::default()
///     .namespace("staging")
///     .timeout(Duration::from_secs(3))
///     .attempts(3)
///     .connection_name("billing-service");
/// assert_eq!(options.namespace, "staging");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The namespace of the authq deployment to call (default `authq`).
    pub namespace: String,
    /// How long a call waits for its reply, all attempts included (default 10 s). Also sent as
    /// the request's `expiration` and absolute deadline, so a worker never starts a request its
    /// caller has given up on. Connecting (and each reconnection) is bounded by it too.
    pub timeout: Duration,
    /// How many times a call is published before it gives up (default 1: no retry). With more,
    /// the timeout is shared among the attempts, and a call whose reply did not come (or whose
    /// connection dropped, or which a full tube refused) is published again with the same
    /// `message_id`, which the worker answers from the first outcome instead of doing the work
    /// twice. Retries add load exactly when the pool is slowest, hence off by default.
    pub attempts: u32,
    /// The connection name shown in RabbitMQ's management tools.
    pub connection_name: String,
    /// The RabbitMQ user sent in every request's `user-id` property, which the broker checks
    /// against the connection's user (it closes the channel of a publisher that lies). Workers
    /// accept administrative operations only from the users their operator lists. Default
    /// (`None`): the user name of the URL (RabbitMQ's `guest` when the URL names none); no
    /// `user-id` at all with `auth_mechanism=external`.
    pub user_id: Option<String>,
}

impl ClientOptions {
    /// Sets [`ClientOptions::namespace`].
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`ClientOptions::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::attempts`] (at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets [`ClientOptions::connection_name`].
    #[must_use]
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Sets [`ClientOptions::user_id`].
    #[must_use]
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            timeout: Duration::from_secs(10),
            attempts: 1,
            connection_name: "authq-client".to_owned(),
            user_id: None,
        }
    }
}

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

/// One connection with its channels and reply queue.
#[derive(Debug)]
struct Link {
    connection: Connection,
    /// Requests are published here, in confirm mode.
    publish: Channel,
    reply_queue: ShortString,
    pending: Arc<Pending>,
}

impl Link {
    /// Connects and sets up the channels and reply queue, within the client's timeout
    /// ([`ClientOptions::timeout`]): a broker that is still starting can accept the connection
    /// and stall the handshake, and every call waits on the lock of the one reconnecting.
    /// `url` may list several nodes of one cluster, separated by commas: the first that answers
    /// (from `start`, the index of the one that answered last) takes the connection; the index
    /// of that node comes back with the link.
    async fn open(
        url: &str,
        names: &Names,
        options: &ClientOptions,
        start: usize,
    ) -> Result<(Self, usize), ClientError> {
        let limit = options.timeout;
        tokio::time::timeout(limit, Self::open_unbounded(url, names, options, start))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::connect(
                    redact_url(url),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {limit:?}"),
                    )
                    .into(),
                ))
            })
    }

    async fn open_unbounded(
        url: &str,
        names: &Names,
        options: &ClientOptions,
        start: usize,
    ) -> Result<(Self, usize), ClientError> {
        let listed = broker_urls(url);
        let nodes = if listed.is_empty() { vec![url] } else { listed };
        let mut failure = None;
        let mut connected = None;
        for i in 0..nodes.len() {
            let node = (start + i) % nodes.len();
            match Connection::connect(
                nodes[node],
                ConnectionProperties::default()
                    .with_connection_name(options.connection_name.clone().into()),
            )
            .await
            {
                Ok(c) => {
                    connected = Some((c, node));
                    break;
                }
                Err(e) => failure = Some(ClientError::connect(redact_url(nodes[node]), e)),
            }
        }
        let Some((connection, node)) = connected else {
            return Err(failure.unwrap_or(ClientError::ConnectionLost));
        };
        ensure_deployment(&connection, names).await?;
        // Replies on their own channel, so a publish the broker refuses with a channel error
        // cannot take the reply consumer down with it.
        let replies = connection
            .create_channel()
            .await
            .map_err(ClientError::broker)?;
        let queue = replies
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(ClientError::broker)?;
        let reply_queue: ShortString = queue.name().clone();
        let consumer = replies
            .basic_consume(
                reply_queue.clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(ClientError::broker)?;
        let publish = connection
            .create_channel()
            .await
            .map_err(ClientError::broker)?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(ClientError::broker)?;
        let pending = Arc::new(Pending::default());
        tokio::spawn(replies::dispatch(consumer, Arc::clone(&pending)));
        let link = Self {
            connection,
            publish,
            reply_queue,
            pending,
        };
        Ok((link, node))
    }

    fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self.publish.status().connected()
            && !self.pending.is_closed()
    }
}

/// How long a call with attempts left waits before trying to reconnect again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// How one publish of a call ended.
enum Published {
    /// The broker has the request.
    Accepted,
    /// The link broke while publishing.
    LinkLost,
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

    /// Sends a typed request and decodes its reply, with the default timeout.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with the worker's error code; [`ClientError::Timeout`] when no reply
    /// came in time (also what a stopped pool looks like); [`ClientError::ConnectionLost`];
    /// [`ClientError::Overloaded`] when a full tube refused the request;
    /// [`ClientError::Unroutable`]; [`ClientError::NoDeployment`]; [`ClientError::Connect`] or
    /// [`ClientError::AccessRefused`] when reconnecting fails; [`ClientError::Decode`] for a reply
    /// that is not the operation's.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// use authq::protocol::ops::CheckRequest;
    /// let reply = client.call(&CheckRequest { session: "token".into() }).await?;
    /// println!("{}", reply.user.email);
    /// # Ok(()) }
    /// ```
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Reply, ClientError> {
        self.call_with_timeout(request, self.inner.options.timeout)
            .await
    }

    /// Sends a typed request with an explicit timeout.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// use authq::protocol::ops::PingRequest;
    /// client.call_with_timeout(&PingRequest {}, std::time::Duration::from_millis(500)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call_with_timeout<R: Request>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Reply, ClientError> {
        let body = serde_json::to_vec(request).map_err(ClientError::Encode)?;
        let reply = self.call_raw(R::OPERATION.as_str(), &body, timeout).await?;
        authq_protocol::decode_reply::<R::Reply>(&reply)
            .map_err(ClientError::Decode)?
            .map_err(|e| ClientError::Server {
                code: e.code,
                message: e.message,
            })
    }

    /// Publishes `body` as a request for `operation` (any routing key, known or not) and
    /// returns the raw reply body: the envelope, undecoded. A fresh `message_id` identifies
    /// the call.
    ///
    /// # Errors
    ///
    /// As [`Client::call`], except that an error reply is returned as the body, not as
    /// [`ClientError::Server`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let body = client.call_raw("ping", b"{}", std::time::Duration::from_secs(5)).await?;
    /// assert!(body.starts_with(br#"{"status":"#));
    /// # Ok(()) }
    /// ```
    pub async fn call_raw(
        &self,
        operation: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let message_id = uuid::Uuid::new_v4().to_string();
        self.call_raw_with_id(operation, body, timeout, &message_id)
            .await
    }

    /// Like [`Client::call_raw`] with the caller's `message_id`: calling again with the same
    /// id and body (after a timeout or a lost connection) is answered with the first outcome of
    /// a mutating operation instead of doing it twice, within the worker's idempotency window.
    ///
    /// # Errors
    ///
    /// As [`Client::call_raw`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let id = "6f1c1d4e-9a55-4b43-9e0b-5f3c1b0e2a77";
    /// let body = br#"{"email":"ann@example.com"}"#;
    /// let t = std::time::Duration::from_secs(5);
    /// let first = match client.call_raw_with_id("register", body, t, id).await {
    ///     Err(e) if e.is_no_reply() => client.call_raw_with_id("register", body, t, id).await?,
    ///     other => other?,
    /// };
    /// # Ok(()) }
    /// ```
    pub async fn call_raw_with_id(
        &self,
        operation: &str,
        body: &[u8],
        timeout: Duration,
        message_id: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let started = Instant::now();
        let deadline_ms = now_ms().saturating_add(duration_ms(timeout));
        let attempts = self.inner.options.attempts.max(1);
        let call = async {
            // The reply slot survives retries on the same connection, so a late reply to an
            // earlier attempt answers the call too; only one reply ever reaches the caller.
            let mut slot: Option<(Arc<Link>, Waiter, oneshot::Receiver<Vec<u8>>)> = None;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let last = attempt >= attempts;
                let link = match self.link().await {
                    Ok(link) => link,
                    // A retry waits for the broker to come back (and finish starting), within
                    // the call's timeout.
                    Err(e @ (ClientError::Connect { .. } | ClientError::Broker(_))) if !last => {
                        debug!(error = %e, "cannot connect yet: trying again");
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        attempt -= 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let (waiter, mut reply) = match slot.take() {
                    Some((l, w, r)) if Arc::ptr_eq(&l, &link) => (w, r),
                    _ => link.pending.register().ok_or(ClientError::ConnectionLost)?,
                };
                let remaining = timeout.saturating_sub(started.elapsed());
                let published = self
                    .publish(
                        &link,
                        operation,
                        body,
                        message_id,
                        &waiter,
                        remaining,
                        deadline_ms,
                    )
                    .await;
                let published = match published {
                    // With attempts left, a refusal is retried after a pause: a tube refuses
                    // while it is full, and also for a moment while a restarted broker elects
                    // its leader.
                    Err(ClientError::Overloaded) if !last => {
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                    other => other?,
                };
                if let Published::LinkLost = published {
                    if last {
                        return Err(ClientError::ConnectionLost);
                    }
                    continue;
                }
                // Each attempt gets an equal share of what is left.
                let left = (attempts - attempt + 1).max(1);
                let wait = timeout.saturating_sub(started.elapsed()) / left;
                match tokio::time::timeout(wait, &mut reply).await {
                    Ok(Ok(body)) => return Ok(body),
                    Ok(Err(_)) if last => return Err(ClientError::ConnectionLost),
                    Ok(Err(_)) => {}
                    Err(_) if last && link.pending.is_closed() => {
                        return Err(ClientError::ConnectionLost);
                    }
                    Err(_) if last => return Err(ClientError::Timeout(timeout)),
                    Err(_) => slot = Some((link, waiter, reply)),
                }
                debug!(
                    attempt,
                    message_id, "no reply yet: publishing the call again"
                );
            }
        };
        // Publishing itself is bounded too: a connection the broker blocks (resource alarm)
        // holds the publish, and the call ends in its timeout rather than hanging.
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    /// Publishes one attempt of a call and waits for the broker's confirmation.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        link: &Link,
        operation: &str,
        body: &[u8],
        message_id: &str,
        waiter: &Waiter,
        remaining: Duration,
        deadline_ms: i64,
    ) -> Result<Published, ClientError> {
        let mut table = FieldTable::default();
        table.insert(
            headers::DEADLINE.into(),
            AMQPValue::LongLongInt(deadline_ms),
        );
        table.insert(
            headers::PROTOCOL.into(),
            AMQPValue::LongUInt(PROTOCOL_VERSION),
        );
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_reply_to(link.reply_queue.clone())
            .with_correlation_id(waiter.correlation_id().into())
            .with_message_id(message_id.into())
            .with_delivery_mode(2)
            .with_expiration(duration_ms(remaining).max(1).to_string().into())
            .with_headers(table);
        let properties = match &self.inner.user_id {
            Some(user) => properties.with_user_id(user.clone()),
            None => properties,
        };
        let confirm = link
            .publish
            .basic_publish(
                self.inner.names.request_exchange().into(),
                operation.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await;
        let confirmation = match confirm {
            Ok(confirm) => confirm.await,
            Err(e) => Err(e),
        };
        match confirmation {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(Published::Accepted),
            Ok(Confirmation::Ack(Some(_))) => Err(ClientError::Unroutable {
                operation: operation.to_owned(),
            }),
            Ok(Confirmation::Nack(_)) => Err(ClientError::Overloaded),
            Err(e) if is_not_found(&e) => Err(ClientError::NoDeployment {
                namespace: self.inner.names.namespace().to_owned(),
            }),
            Err(e) => {
                debug!(error = %e, "publishing failed: the connection is broken");
                Ok(Published::LinkLost)
            }
        }
    }

    /// `ping`: a no-op round trip.
    ///
    /// # Errors
    ///
    /// the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<(), ClientError> {
        let Empty {} = self.call(&PingRequest {}).await?;
        Ok(())
    }

    /// `register`: starts a registration and returns the confirmation code to mail.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `user_exists` (an active or suspended user has this email),
    /// `too_many_attempts` (5 per email per hour), `bad_request` (a malformed email); and the
    /// errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reg = client.register("ann@example.com").await?;
    /// send_mail("ann@example.com", reg.code.expose());
    /// # fn send_mail(_: &str, _: &str) {}
    /// # Ok(()) }
    /// ```
    pub async fn register(&self, email: &str) -> Result<RegisterReply, ClientError> {
        self.call(&RegisterRequest {
            email: email.to_owned(),
            profile: None,
        })
        .await
    }

    /// `register` with an initial profile.
    ///
    /// # Errors
    ///
    /// As [`Client::register`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let mut profile = serde_json::Map::new();
    /// profile.insert("name".into(), "Ann".into());
    /// let reg = client.register_with_profile("ann@example.com", profile).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_with_profile(
        &self,
        email: &str,
        profile: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RegisterReply, ClientError> {
        self.call(&RegisterRequest {
            email: email.to_owned(),
            profile: Some(profile),
        })
        .await
    }

    /// `confirm_registration`: the code and the chosen password make the user active.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_code` (wrong, expired, used code, or no pending
    /// registration) or `weak_password`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reply = client.confirm_registration("ann@example.com", "53649536", "correct horse battery").await?;
    /// assert_eq!(reply.user.state, authq::types::UserState::Active);
    /// # Ok(()) }
    /// ```
    pub async fn confirm_registration(
        &self,
        email: &str,
        code: &str,
        password: &str,
    ) -> Result<ConfirmRegistrationReply, ClientError> {
        self.call(&ConfirmRegistrationRequest {
            email: email.to_owned(),
            code: Secret::from(code),
            password: Secret::from(password),
        })
        .await
    }

    /// `login`: a new session for a correct email and password.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_credentials`, `user_suspended`, `too_many_attempts` or
    /// `policy_denied`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// match client.login("ann@example.com", "correct horse battery").await {
    ///     Ok(login) => println!("session until {}", login.expires_at),
    ///     Err(e) if e.code() == Some(authq::ErrorCode::InvalidCredentials) => println!("try again"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginReply, ClientError> {
        self.call(&LoginRequest {
            client_ip: None,
            email: email.to_owned(),
            password: Secret::from(password),
        })
        .await
    }

    /// `check`: the session's user (renewing the session when due).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` (unknown, ended or expired) or
    /// `user_suspended`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let me = client.check("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?;
    /// println!("{} ({:?})", me.user.email, me.user.state);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, session: &str) -> Result<CheckReply, ClientError> {
        self.call(&CheckRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `logout`: ends the session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.logout("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?;
    /// # Ok(()) }
    /// ```
    pub async fn logout(&self, session: &str) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&LogoutRequest {
                session: Secret::from(session),
            })
            .await?;
        Ok(())
    }

    /// `logout_all`: ends every session of the session's user.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let ended = client.logout_all("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?.ended;
    /// # Ok(()) }
    /// ```
    pub async fn logout_all(&self, session: &str) -> Result<LogoutAllReply, ClientError> {
        self.call(&LogoutAllRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `start_reset`: a reset token to mail (same reply shape whether the email exists or not).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `forbidden` (the caller is not an administrative caller) or
    /// `too_many_attempts`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reset = client.start_reset("ann@example.com").await?;
    /// send_mail("ann@example.com", reset.token.expose());
    /// # fn send_mail(_: &str, _: &str) {}
    /// # Ok(()) }
    /// ```
    pub async fn start_reset(&self, email: &str) -> Result<StartResetReply, ClientError> {
        self.call(&StartResetRequest {
            email: email.to_owned(),
        })
        .await
    }

    /// `complete_reset`: the token and a new password; ends every session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_code` or `weak_password`; and the errors every call
    /// can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let done = client.complete_reset("ann@example.com", "Gq3b0mJ7yD6kYQvFh2sZ1xPp9LwTnA4eRcUuV8iKj5o", "a brand new secret").await?;
    /// println!("{} sessions ended", done.sessions_ended);
    /// # Ok(()) }
    /// ```
    pub async fn complete_reset(
        &self,
        email: &str,
        token: &str,
        password: &str,
    ) -> Result<CompleteResetReply, ClientError> {
        self.call(&CompleteResetRequest {
            email: email.to_owned(),
            token: Secret::from(token),
            password: Secret::from(password),
        })
        .await
    }

    /// `change_password`: the old and new password; ends the user's other sessions.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `invalid_credentials` (wrong old password),
    /// `weak_password` or `user_suspended`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.change_password("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "correct horse battery", "another long secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn change_password(
        &self,
        session: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<ChangePasswordReply, ClientError> {
        self.call(&ChangePasswordRequest {
            session: Secret::from(session),
            old_password: Secret::from(old_password),
            new_password: Secret::from(new_password),
        })
        .await
    }

    /// `get_profile`: the session's user with the profile.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` or `user_suspended`; and the errors every
    /// call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let profile = client.get_profile("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?.user.profile;
    /// # Ok(()) }
    /// ```
    pub async fn get_profile(&self, session: &str) -> Result<ProfileReply, ClientError> {
        self.call(&GetProfileRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `set_profile`: merges (RFC 7396) or replaces the session user's profile.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `user_suspended`, or `bad_request` (the
    /// profile would exceed its size limit); and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let mut patch = serde_json::Map::new();
    /// patch.insert("tz".into(), "UTC".into());
    /// let reply = client.set_profile("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", patch, authq::types::ProfileMode::Merge).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_profile(
        &self,
        session: &str,
        profile: serde_json::Map<String, serde_json::Value>,
        mode: ProfileMode,
    ) -> Result<ProfileReply, ClientError> {
        self.call(&SetProfileRequest {
            session: Secret::from(session),
            profile,
            mode,
        })
        .await
    }

    /// `delete_user`: deletes a user with every session and code.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden` (the caller is not an administrative
    /// caller); and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.delete_user(authq::types::UserRef::email("ann@example.com")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_user(&self, user: UserRef) -> Result<DeleteUserReply, ClientError> {
        self.call(&DeleteUserRequest { user }).await
    }

    /// `suspend`: the user's sessions end and login is refused.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reply = client.suspend(authq::types::UserRef::email("ann@example.com")).await?;
    /// println!("{} sessions ended", reply.sessions_ended);
    /// # Ok(()) }
    /// ```
    pub async fn suspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&SuspendRequest { user }).await
    }

    /// `unsuspend`: lifts a suspension.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.unsuspend(authq::types::UserRef::id("01a208ad-da95-7397-8db6-326deded1d5f")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsuspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&UnsuspendRequest { user }).await
    }
}

/// The deletion cascade.
impl Client {
    /// `deletion_done`: `service` has deleted its data about the deleted user `user_id`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` (no deletion of this user is tracked) or
    /// `bad_request` (the deletion does not wait for this service); and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let status = client.deletion_done("01a208ad-da95-7397-8db6-326deded1d5f", "billing").await?;
    /// println!("still waiting for {:?}", status.pending);
    /// # Ok(()) }
    /// ```
    pub async fn deletion_done(
        &self,
        user_id: &str,
        service: &str,
    ) -> Result<DeletionStatusReply, ClientError> {
        self.call(&DeletionDoneRequest {
            user_id: user_id.to_owned(),
            service: service.to_owned(),
        })
        .await
    }

    /// `deletion_status`: which services have acknowledged the deletion of `user_id`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let status = client.deletion_status("01a208ad-da95-7397-8db6-326deded1d5f").await?;
    /// # Ok(()) }
    /// ```
    pub async fn deletion_status(&self, user_id: &str) -> Result<DeletionStatusReply, ClientError> {
        self.call(&DeletionStatusRequest {
            user_id: user_id.to_owned(),
        })
        .await
    }
}

/// Checks that the namespace's request exchange exists (a worker declared it), on a throw-away
/// channel: publishing to a missing exchange would close the client's channel.
async fn ensure_deployment(connection: &Connection, names: &Names) -> Result<(), ClientError> {
    let probe = connection
        .create_channel()
        .await
        .map_err(ClientError::broker)?;
    let declared = probe
        .exchange_declare(
            names.request_exchange().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => {
            let _ = probe.close(200, "deployment found".into()).await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Err(ClientError::NoDeployment {
            namespace: names.namespace().to_owned(),
        }),
        Err(e) => Err(ClientError::broker(e)),
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
