//! [`Link`]: one connection to the broker with its publishing channel (in confirm mode) and the
//! exclusive, server-named reply queue (bound to the deployment's notices too) whose consumer
//! feeds the reply dispatcher (`authq_amqp::dispatch`). A broken link is replaced by the next call (`Client::link`).

use super::ClientOptions;
use crate::error::ClientError;
use authq_amqp::{BrokerNodes, Pending, dispatch, private_queue};
use authq_protocol::{Names, redact_url};
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use tracing::debug;

/// One connection with its channels and reply queue.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) connection: Connection,
    /// Requests are published here, in confirm mode.
    pub(super) publish: Channel,
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
        let pending = Arc::new(Pending::default());
        tokio::spawn(dispatch(consumer, Arc::clone(&pending)));
        Ok(Self {
            connection,
            publish,
            reply_queue,
            pending,
        })
    }

    pub(super) fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self.publish.status().connected()
            && !self.pending.is_closed()
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
