//! Sending a request: [`Client::call`] and its variants publish it (`mandatory`, with the
//! caller's deadline; reads non-persistent), wait for the reply on the link's reply queue, and
//! publish it again with the same `message_id` while attempts and time are left.
//!
//! A write waits for the broker's confirm: a nack is a full tube, a returned publish an
//! unroutable one. A read whose tube answers what it refuses (the last reply to the operation
//! said so, `headers::REFUSALS_RETURNED`) goes on the link's channel without confirms: a full
//! tube dead-letters it, a worker answers it `authq.refused`, and the dispatcher ends the call
//! with `Overloaded`; a returned one is collected by the link (`link::collect_returns`).

use super::Client;
use super::link::{Link, is_not_found};
use crate::error::ClientError;
use authq_amqp::{Answer, Refusal, Waiter};
use authq_protocol::names::headers;
use authq_protocol::{CONTENT_TYPE, Operation, PROTOCOL_VERSION, Request};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tracing::debug;

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
            .map_err(|e| match e.mfa {
                Some(pending) => ClientError::MfaRequired(pending),
                None => ClientError::Server {
                    code: e.code,
                    message: e.message,
                },
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
        let known = Operation::parse(operation);
        let deadline_ms = now_ms().saturating_add(duration_ms(timeout));
        let attempts = self.inner.options.attempts.max(1);
        let call = async {
            // The reply slot survives retries on the same connection, so a late reply to an
            // earlier attempt answers the call too; only one reply ever reaches the caller.
            let mut slot: Option<(Arc<Link>, Waiter, oneshot::Receiver<Answer>)> = None;
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
                    _ => link
                        .pending
                        .register_for(known)
                        .ok_or(ClientError::ConnectionLost)?,
                };
                let remaining = timeout.saturating_sub(started.elapsed());
                let published = self
                    .publish(
                        &link,
                        (operation, known),
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
                    Ok(Ok(Answer::Reply(body))) => return Ok(body),
                    Ok(Ok(Answer::Refused(Refusal::Full))) if !last => {
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                    Ok(Ok(Answer::Refused(Refusal::Full))) => return Err(ClientError::Overloaded),
                    Ok(Ok(Answer::Refused(Refusal::Unroutable))) => {
                        return Err(ClientError::Unroutable {
                            operation: operation.to_owned(),
                        });
                    }
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

    /// Publishes one attempt of a call and waits for the broker's confirmation (a read whose
    /// tube returns what it refuses: without confirms, see the module's doc).
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        link: &Link,
        (operation, known): (&str, Option<Operation>),
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
        let unconfirmed =
            known.is_some_and(|op| !op.is_mutating() && link.pending.refusals_returned(op));
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_reply_to(link.reply_queue.clone())
            .with_correlation_id(waiter.correlation_id().into())
            .with_message_id(message_id.into())
            .with_delivery_mode(delivery_mode(known))
            .with_expiration(duration_ms(remaining).max(1).to_string().into())
            .with_headers(table);
        let properties = match &self.inner.user_id {
            Some(user) => properties.with_user_id(user.clone()),
            None => properties,
        };
        let channel = if unconfirmed {
            &link.reads
        } else {
            &link.publish
        };
        let confirm = channel
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
}

/// Reads go out non-persistent (1), everything else persistent (2). A read that a broker
/// restart loses costs its caller a retry, never a wrong answer, so it need not be written to
/// disk on a durable classic tube; quorum tubes persist every message whatever it says, and the
/// default transient session tube keeps none. Unknown operations count as writes.
fn delivery_mode(operation: Option<Operation>) -> u8 {
    match operation {
        Some(op) if !op.is_mutating() => 1,
        _ => 2,
    }
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
