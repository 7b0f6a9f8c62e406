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
use authq_protocol::{CONTENT_TYPE, Names, PROTOCOL_VERSION, Request, Secret, redact_url};
use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tracing::debug;

/// How a [`Client`] connects and calls.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The namespace of the authq deployment to call (default `authq`).
    pub namespace: String,
    /// How long a call waits for its reply, all attempts included. Also sent as the request's
    /// `expiration` and absolute deadline, so a worker never starts a request its caller has
    /// given up on.
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
    /// Connects and sets up the channels and reply queue, within [`CONNECT_TIMEOUT`]: a broker
    /// that is still starting can accept the connection and stall the handshake, and every
    /// call waits on the lock of the one reconnecting.
    async fn open(url: &str, names: &Names, options: &ClientOptions) -> Result<Self, ClientError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open_unbounded(url, names, options))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Connect {
                    url: redact_url(url),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {CONNECT_TIMEOUT:?}"),
                    )
                    .into(),
                })
            })
    }

    async fn open_unbounded(
        url: &str,
        names: &Names,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default()
                .with_connection_name(options.connection_name.clone().into()),
        )
        .await
        .map_err(|source| ClientError::Connect {
            url: redact_url(url),
            source,
        })?;
        ensure_deployment(&connection, names).await?;
        // Replies on their own channel, so a publish the broker refuses with a channel error
        // cannot take the reply consumer down with it.
        let replies = connection.create_channel().await?;
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
            .await?;
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
            .await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let pending = Arc::new(Pending::default());
        tokio::spawn(replies::dispatch(consumer, Arc::clone(&pending)));
        Ok(Self {
            connection,
            publish,
            reply_queue,
            pending,
        })
    }

    fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self.publish.status().connected()
            && !self.pending.is_closed()
    }
}

/// How long one attempt to (re)connect may take: connect, declare the reply queue, open the
/// channels.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// default options.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with explicit options. Fails with [`ClientError::NoDeployment`] if no worker has
    /// ever declared the namespace on this broker.
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let names = Names::new(&options.namespace)?;
        let user_id = options
            .user_id
            .clone()
            .or_else(|| url_user(url))
            .map(ShortString::from);
        let link = Link::open(url, &names, &options).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                names,
                user_id,
                options,
                link: tokio::sync::Mutex::new(Arc::new(link)),
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
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let link = Arc::clone(&*self.inner.link.lock().await);
        link.connection.close(200, "client closing".into()).await?;
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
            *current = Arc::new(Link::open(&inner.url, &inner.names, &inner.options).await?);
        }
        Ok(Arc::clone(&current))
    }

    /// Sends a typed request and decodes its reply, with the default timeout.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Reply, ClientError> {
        self.call_with_timeout(request, self.inner.options.timeout)
            .await
    }

    /// Sends a typed request with an explicit timeout.
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
                    Err(ClientError::Connect { .. } | ClientError::Broker(_)) if !last => {
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
    pub async fn ping(&self) -> Result<(), ClientError> {
        let Empty {} = self.call(&PingRequest {}).await?;
        Ok(())
    }

    /// `register`: starts a registration and returns the confirmation code to mail.
    pub async fn register(&self, email: &str) -> Result<RegisterReply, ClientError> {
        self.call(&RegisterRequest {
            email: email.to_owned(),
            profile: None,
        })
        .await
    }

    /// `register` with an initial profile.
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
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginReply, ClientError> {
        self.call(&LoginRequest {
            client_ip: None,
            email: email.to_owned(),
            password: Secret::from(password),
        })
        .await
    }

    /// `check`: the session's user (renewing the session when due).
    pub async fn check(&self, session: &str) -> Result<CheckReply, ClientError> {
        self.call(&CheckRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `logout`: ends the session.
    pub async fn logout(&self, session: &str) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&LogoutRequest {
                session: Secret::from(session),
            })
            .await?;
        Ok(())
    }

    /// `logout_all`: ends every session of the session's user.
    pub async fn logout_all(&self, session: &str) -> Result<LogoutAllReply, ClientError> {
        self.call(&LogoutAllRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `start_reset`: a reset token to mail (same reply shape whether the email exists or not).
    pub async fn start_reset(&self, email: &str) -> Result<StartResetReply, ClientError> {
        self.call(&StartResetRequest {
            email: email.to_owned(),
        })
        .await
    }

    /// `complete_reset`: the token and a new password; ends every session.
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
    pub async fn get_profile(&self, session: &str) -> Result<ProfileReply, ClientError> {
        self.call(&GetProfileRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `set_profile`: merges (RFC 7396) or replaces the session user's profile.
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
    pub async fn delete_user(&self, user: UserRef) -> Result<DeleteUserReply, ClientError> {
        self.call(&DeleteUserRequest { user }).await
    }

    /// `suspend`: the user's sessions end and login is refused.
    pub async fn suspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&SuspendRequest { user }).await
    }

    /// `unsuspend`: lifts a suspension.
    pub async fn unsuspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&UnsuspendRequest { user }).await
    }
}

/// The deletion cascade.
impl Client {
    /// `deletion_done`: `service` has deleted its data about the deleted user `user_id`.
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
    let probe = connection.create_channel().await?;
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
        Err(e) => Err(e.into()),
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
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
    let uri: lapin::uri::AMQPUri = url.parse().ok()?;
    if matches!(
        uri.query.auth_mechanism,
        Some(lapin::uri::SASLMechanism::External)
    ) {
        return None;
    }
    Some(uri.authority.userinfo.username)
}
