//! The broker ceiling: a minimal echo consumer with no authq code on its path.
//!
//! It binds a queue of the tubes' type (quorum by default) to the deployment's own request
//! exchange under a routing key of its own, so the bench drives it through the same client,
//! exchange, reply path and persistence as authq itself. It has the session tube's shape: the same number of consumers,
//! each on its own channel with the same prefetch, a task per delivery, reply then ack on the
//! delivery's channel. It sends the request body back as the reply.

use authq_protocol::{CONTENT_TYPE, Names};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// A running echo consumer.
#[derive(Debug)]
pub struct Echo {
    routing_key: String,
    queue: String,
    connection: Connection,
    setup: Channel,
}

impl Echo {
    /// Starts `consumers` echo consumers with `prefetch` each on the request exchange of `names`.
    pub async fn start(
        url: &str,
        names: &Names,
        consumers: u16,
        prefetch: u16,
        queue_type: &str,
    ) -> anyhow::Result<Self> {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("authq-bench-echo".into()),
        )
        .await?;
        let routing_key = format!("bench-echo-{}", uuid::Uuid::new_v4().simple());
        let queue_name = format!("{}.{routing_key}", names.namespace());
        let setup = connection.create_channel().await?;
        // The tubes' persistence: a durable queue of the same type. It expires if the bench
        // dies before deleting it.
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(queue_type)),
        );
        args.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
        let queue = setup
            .queue_declare(
                queue_name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await?;
        setup
            .queue_bind(
                queue.name().clone(),
                names.request_exchange().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for i in 0..consumers {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    format!("bench-echo-{i}").into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            tokio::spawn(async move {
                let mut consumer = consumer;
                while let Some(Ok(delivery)) = consumer.next().await {
                    tokio::spawn(echo(channel.clone(), delivery));
                }
            });
        }
        Ok(Self {
            routing_key,
            queue: queue_name,
            connection,
            setup,
        })
    }

    /// The routing key (the "operation") that reaches the echo consumer.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// Stops it and deletes its queue.
    pub async fn stop(self) {
        let _ = self
            .setup
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self.connection.close(200, "bench done".into()).await;
    }
}

/// Acknowledges on the delivery's channel directly, as the worker does (`Acker::ack` would
/// route the frame through lapin's internal RPC task first): the ceiling gets the cheapest
/// acknowledgement lapin offers, not a handicap.
async fn ack(channel: &Channel, delivery: &Delivery) {
    let _ = channel
        .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
        .await;
}

async fn echo(channel: Channel, delivery: Delivery) {
    let Some(reply_to) = delivery.properties.reply_to().clone() else {
        ack(&channel, &delivery).await;
        return;
    };
    let mut properties = BasicProperties::default().with_content_type(CONTENT_TYPE.into());
    if let Some(id) = delivery.properties.correlation_id() {
        properties = properties.with_correlation_id(id.clone());
    }
    let published = channel
        .basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await;
    if published.is_ok() {
        ack(&channel, &delivery).await;
    }
}
