//! [`Client`]: one connection to the broker, many calls in flight.

use crate::error::ClientError;
use crate::replies::{self, Pending};
use authq_protocol::names::{DEFAULT_NAMESPACE, headers};
use authq_protocol::ops::{
    ChangePasswordReply, ChangePasswordRequest, CheckReply, CheckRequest, CompleteResetReply,
    CompleteResetRequest, ConfirmRegistrationReply, ConfirmRegistrationRequest, DeleteUserReply,
    DeleteUserRequest, Empty, GetProfileRequest, LoginReply, LoginRequest, LogoutAllReply,
    LogoutAllRequest, LogoutRequest, PingRequest, ProfileMode, ProfileReply, RegisterReply,
    RegisterRequest, SetProfileRequest, StartResetReply, StartResetRequest, SuspendRequest,
    UnsuspendRequest, UserRef, UserStateReply,
};
use authq_protocol::{CONTENT_TYPE, Names, PROTOCOL_VERSION, Request, Secret, redact_url};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a [`Client`] connects and calls.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The namespace of the authq deployment to call (default `authq`).
    pub namespace: String,
    /// How long a call waits for its reply. Also sent as the request's `expiration` and
    /// absolute deadline, so a worker never starts a request its caller has given up on.
    pub timeout: Duration,
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
            connection_name: "authq-client".to_owned(),
            user_id: None,
        }
    }
}

/// A connection to authq over RabbitMQ. Cheap to clone; clones share the connection, and any
/// number of calls may run at once from any task.
///
/// Replies come back on one exclusive, server-named reply queue that the client declares at
/// connect time (never one per call), and are matched to calls by correlation id.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Connection,
    channel: Channel,
    names: Names,
    reply_queue: ShortString,
    user_id: Option<ShortString>,
    pending: Arc<Pending>,
    options: ClientOptions,
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
        ensure_deployment(&connection, &names).await?;
        let channel = connection.create_channel().await?;
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
        let reply_queue: ShortString = queue.name().clone();
        let consumer = channel
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
        let pending = Arc::new(Pending::default());
        tokio::spawn(replies::dispatch(consumer, Arc::clone(&pending)));
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                channel,
                names,
                reply_queue,
                user_id,
                pending,
                options,
            }),
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Closes the connection. Calls in flight fail with [`ClientError::ConnectionLost`].
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner
            .connection
            .close(200, "client closing".into())
            .await?;
        Ok(())
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
    /// returns the raw reply body: the envelope, undecoded.
    pub async fn call_raw(
        &self,
        operation: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let inner = &*self.inner;
        let (waiter, reply) = inner
            .pending
            .register()
            .ok_or(ClientError::ConnectionLost)?;
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let deadline = now_ms().saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
        let mut table = FieldTable::default();
        table.insert(headers::DEADLINE.into(), AMQPValue::LongLongInt(deadline));
        table.insert(
            headers::PROTOCOL.into(),
            AMQPValue::LongUInt(PROTOCOL_VERSION),
        );
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_reply_to(inner.reply_queue.clone())
            .with_correlation_id(waiter.correlation_id().into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_expiration(timeout_ms.to_string().into())
            .with_headers(table);
        let properties = match &inner.user_id {
            Some(user) => properties.with_user_id(user.clone()),
            None => properties,
        };
        inner
            .channel
            .basic_publish(
                inner.names.request_exchange().into(),
                operation.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?;
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(ClientError::ConnectionLost),
            Err(_) if inner.pending.is_closed() => Err(ClientError::ConnectionLost),
            Err(_) => Err(ClientError::Timeout(timeout)),
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
