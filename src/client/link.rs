//! [`Link`]: one connection to the broker with its two publishing channels (one in confirm
//! mode, one for reads without confirms) and the exclusive, server-named reply queue (bound to
//! the deployment's notices too) whose consumer feeds the reply dispatcher
//! (`authq_amqp::dispatch`). A broken link is replaced by the next call (`Client::link`).

use super::ClientOptions;
use crate::error::ClientError;
use authq_amqp::{Answer, BrokerNodes, Pending, Refusal, dispatch, private_queue};
use authq_protocol::{Names, redact_url};
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// How often a link collects the reads the broker returned as unroutable: a channel without
/// confirms has no other way to hear of them (lapin keeps them until asked).
const RETURNS_POLL: Duration = Duration::from_millis(100);

/// One connection with its channels and reply queue.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) connection: Connection,
    /// Requests are published here, in confirm mode.
    pub(super) publish: Channel,
    /// Reads whose tube returns what it refuses (`Pending::refusals_returned`) are published
    /// here, without confirms: the broker's confirms were 10–17 % of a `check`'s throughput
    /// (BENCHMARKS.md, "Reads without confirms").
    pub(super) reads: Channel,
    pub(super) reply_queue: ShortString,
    pub(super) pending: Arc<Pending>,
}

impl Link {
    /// Connects and sets up the channels and reply queue, within the client's timeout
    /// ([`ClientOptions::timeout`]): a broker that is still starting can accept the connection
    /// and stall the handshake, and every call waits on the lock of the one reconnecting.
    /// `url` may list several nodes of one cluster (`nodes`): the first that answers, from the
    /// one that answered last, takes the connection.
    pub(super) async fn open(
        url: &str,
        nodes: &BrokerNodes,
        names: &Names,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let limit = options.timeout;
        tokio::time::timeout(limit, Self::open_unbounded(nodes, names, options))
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
        nodes: &BrokerNodes,
        names: &Names,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let (connection, _) = nodes
            .connect(
                || {
                    ConnectionProperties::default()
                        .with_connection_name(options.connection_name.clone().into())
                },
                str::to_owned,
            )
            .await
            .map_err(|(e, url)| ClientError::connect(url, e))?;
        ensure_deployment(&connection, names).await?;
        // Replies on their own channel, so a publish the broker refuses with a channel error
        // cannot take the reply consumer down with it.
        let replies = connection
            .create_channel()
            .await
            .map_err(ClientError::broker)?;
        let (reply_queue, consumer) = private_queue(&replies).await.map_err(ClientError::broker)?;
        listen_for_notices(&connection, names, &reply_queue).await;
        let publish = connection
            .create_channel()
            .await
            .map_err(ClientError::broker)?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(ClientError::broker)?;
        let reads = connection
            .create_channel()
            .await
            .map_err(ClientError::broker)?;
        let pending = Arc::new(Pending::default());
        tokio::spawn(dispatch(consumer, Arc::clone(&pending)));
        tokio::spawn(collect_returns(reads.clone(), Arc::clone(&pending)));
        Ok(Self {
            connection,
            publish,
            reads,
            reply_queue,
            pending,
        })
    }

    pub(super) fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self.publish.status().connected()
            && self.reads.status().connected()
            && !self.pending.is_closed()
    }
}

/// Ends the calls whose reads the broker returned as unroutable (a `mandatory` publish no queue
/// took: the tube and the unrouted queue both missing), every [`RETURNS_POLL`], until the
/// link's reply path closes. On the confirm channel lapin hands a returned publish to its
/// confirm instead.
async fn collect_returns(reads: Channel, pending: Arc<Pending>) {
    let mut tick = tokio::time::interval(RETURNS_POLL);
    while !pending.is_closed() {
        tick.tick().await;
        // Without confirm mode this waits for nothing: it takes what lapin has kept.
        let Ok(returned) = reads.wait_for_confirms().await else {
            return;
        };
        for message in returned {
            let cid = message.properties.correlation_id().clone();
            pending.answer(
                cid.as_ref().map(|c| c.as_str()),
                Answer::Refused(Refusal::Unroutable),
            );
        }
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

/// Binds the reply queue to the deployment's notices exchange, on a throw-away channel (a
/// refused bind closes its channel): a worker that declares a lost tube anew tells every caller,
/// and the calls whose requests were lost end at once instead of at their timeout
/// (`authq_protocol::notice`). A deployment without the exchange (an older worker), or a broker
/// user without the permission (`deploy/definitions.json`), only loses that; the bind's failure
/// is logged, not returned.
async fn listen_for_notices(connection: &Connection, names: &Names, reply_queue: &ShortString) {
    let bound = async {
        let channel = connection.create_channel().await?;
        channel
            .queue_bind(
                reply_queue.clone(),
                names.notices().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "bound".into()).await
    };
    if let Err(e) = bound.await {
        debug!(error = %e, "no notices: calls lost with a tube end at their timeout");
    }
}

pub(super) fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
