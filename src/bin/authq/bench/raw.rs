//! A raw lapin RPC client: one channel, an exclusive reply queue consumed without
//! acknowledgements, a map from correlation id to the waiting call. Only its set-up (declaring
//! the reply queue) borrows `authq_amqp::private_queue`; nothing of authq runs per call.
//!
//! - Without confirms, against a classic transient queue with one echo consumer (prefetch 64)
//!   and non-persistent messages, it is the raw best-case echo: what the broker allows a
//!   request/reply at all, with none of the guarantees authq pays for (the configuration of
//!   the first line of `../shared/ceilings/echo.sh`).
//! - With confirms (and `mandatory`, as the authq client publishes), against authq's own echo
//!   consumer, it is the yardstick of the authq client itself: the same broker features and
//!   the same consumer, without the client library. With the authq client's full set of
//!   properties too (`--raw-client-with-authq-properties`), only the library differs.

use anyhow::Context as _;
use authq::ClientError;
use authq::protocol::names;
use futures_util::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Calls waiting for their reply, by correlation id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// A raw lapin RPC client (see the module's doc).
#[derive(Debug)]
pub struct RawClient {
    connection: Connection,
    channel: Channel,
    exchange: String,
    reply_to: String,
    pending: Pending,
    next: AtomicU64,
    timeout: Duration,
    confirms: bool,
    /// With the authq client's full set of properties: the user to send as `user_id`.
    authq_properties: Option<String>,
}

impl RawClient {
    /// Connects, declares its exclusive reply queue and consumes it; with `confirms`, puts its
    /// channel in confirm mode and publishes `mandatory`, waiting for each confirm; with
    /// `authq_properties`, sends every property the authq client sends, not only `reply_to` and
    /// `correlation_id`.
    pub async fn connect(
        url: &str,
        exchange: &str,
        timeout: Duration,
        confirms: bool,
        authq_properties: bool,
    ) -> anyhow::Result<Self> {
        let authq_properties = if authq_properties {
            let uri: lapin::uri::AMQPUri = url
                .parse()
                .map_err(|e| anyhow::anyhow!("the broker URL: {e}"))?;
            Some(uri.authority.userinfo.username)
        } else {
            None
        };
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("authq-bench-raw".into()),
        )
        .await
        .context("the raw client's connection")?;
        let channel = connection.create_channel().await?;
        if confirms {
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
        }
        // Set-up only: the reply path itself (below and in `call`) is raw lapin.
        let (reply_to, mut replies) = authq_amqp::private_queue(&channel).await?;
        let pending: Pending = Arc::default();
        let waiting = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(reply)) = replies.next().await {
                let id = reply
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|c| c.as_str().parse::<u64>().ok());
                let call = id.and_then(|id| lock(&waiting).remove(&id));
                if let Some(call) = call {
                    let _ = call.send(());
                }
            }
        });
        Ok(Self {
            connection,
            channel,
            exchange: exchange.to_owned(),
            reply_to: reply_to.as_str().to_owned(),
            pending,
            next: AtomicU64::new(0),
            timeout,
            confirms,
            authq_properties,
        })
    }

    /// Publishes `body` with `routing_key` and waits for its reply.
    pub async fn call(&self, routing_key: &str, body: &[u8]) -> Result<(), ClientError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (answered, answer) = oneshot::channel();
        lock(&self.pending).insert(id, answered);
        let mut properties = BasicProperties::default()
            .with_reply_to(self.reply_to.as_str().into())
            .with_correlation_id(id.to_string().into());
        if let Some(user) = &self.authq_properties {
            properties = self.authq_properties(properties, user);
        }
        // Without confirms the publish is done once lapin has the frames.
        let published = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: self.confirms,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await;
        let confirmed = match published {
            Ok(confirm) if self.confirms => confirm.await.map(|c| c.is_ack()),
            Ok(_) => Ok(true),
            Err(e) => Err(e),
        };
        if !matches!(confirmed, Ok(true)) {
            lock(&self.pending).remove(&id);
            return Err(ClientError::ConnectionLost);
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ClientError::ConnectionLost),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(ClientError::Timeout(self.timeout))
            }
        }
    }

    /// The rest of what the authq client sends on every request (`src/client/call.rs`), made
    /// the same way: a fresh UUID, the deadline as a header and as `expiration`.
    fn authq_properties(&self, properties: BasicProperties, user: &str) -> BasicProperties {
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut headers = FieldTable::default();
        headers.insert(
            names::headers::DEADLINE.into(),
            AMQPValue::LongLongInt(now_ms.saturating_add(timeout_ms)),
        );
        headers.insert(
            names::headers::PROTOCOL.into(),
            AMQPValue::LongUInt(authq::protocol::PROTOCOL_VERSION),
        );
        properties
            .with_content_type(authq::protocol::CONTENT_TYPE.into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_delivery_mode(2)
            .with_expiration(timeout_ms.to_string().into())
            .with_user_id(user.into())
            .with_headers(headers)
    }

    /// Closes the connection (its reply queue goes with it).
    pub async fn close(&self) {
        let _ = self.connection.close(200, "bench done".into()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
