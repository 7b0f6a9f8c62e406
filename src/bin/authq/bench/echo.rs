//! The broker ceiling: a minimal echo consumer with no authq code on its path.
//!
//! It binds a queue of the session tube's type (transient by default) to the deployment's own request
//! exchange under a routing key of its own, so the bench drives it through the same client,
//! exchange, reply path and persistence as authq itself. It has the session tube's shape: the
//! same number of consumers, each on its own channel with the same prefetch, a task per
//! delivery, reply then ack on the delivery's channel. It sends the request body back as the
//! reply.
//!
//! By default it runs as a process of its own (`authq bench-echo`, a hidden subcommand of this
//! binary), like the pool: client, consumer and broker are then three processes in both
//! measurements, and the ratio measures authq's code rather than the cost of one more process
//! on the path. `--echo-in-process` runs it inside the bench instead (the measurement of
//! sessions 1–3).

use anyhow::{Context as _, bail};
use authq_protocol::{CONTENT_TYPE, Names};
use authq_worker::config::QueueType;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The echo consumers' shape: the session tube's.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Consumers, each on its own channel.
    pub consumers: u16,
    /// Prefetch per consumer.
    pub prefetch: u16,
    /// The queue's type: the session tube's, or transient for the raw best case
    /// ([`super::raw`]).
    pub queue: QueueType,
}

/// The echo ceiling, wherever it runs.
#[derive(Debug)]
pub enum Ceiling {
    /// Inside the bench process.
    InProcess(Echo),
    /// As an `authq bench-echo` child process.
    Child {
        /// The child; it deletes its queue and exits when its stdin closes.
        child: tokio::process::Child,
        /// The routing key that reaches it.
        routing_key: String,
    },
}

impl Ceiling {
    /// Starts the echo with a fresh routing key, in this process or as a child process.
    pub async fn start(
        url: &str,
        names: &Names,
        shape: Shape,
        in_process: bool,
    ) -> anyhow::Result<Self> {
        let routing_key = format!("bench-echo-{}", uuid::Uuid::new_v4().simple());
        if in_process {
            return Ok(Self::InProcess(
                Echo::start(url, names, &routing_key, shape).await?,
            ));
        }
        let exe = std::env::current_exe().context("cannot find the authq binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("bench-echo")
            .args([
                "--namespace",
                names.namespace(),
                "--routing-key",
                &routing_key,
            ])
            .args(["--consumers", &shape.consumers.to_string()])
            .args(["--prefetch", &shape.prefetch.to_string()])
            .env("AUTHQ_AMQP_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd.args(["--queue-type", shape.queue.name()]);
        let mut child = cmd.spawn().context("cannot start authq bench-echo")?;
        let stdout = child.stdout.take().context("bench-echo's stdout")?;
        let mut ready = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut ready);
        match tokio::time::timeout(std::time::Duration::from_secs(30), read).await {
            Ok(Ok(_)) if ready.trim() == "ready" => Ok(Self::Child { child, routing_key }),
            _ => bail!("authq bench-echo did not start (it said {ready:?})"),
        }
    }

    /// The routing key (the "operation") that reaches the echo consumer.
    pub fn routing_key(&self) -> &str {
        match self {
            Self::InProcess(echo) => echo.routing_key(),
            Self::Child { routing_key, .. } => routing_key,
        }
    }

    /// Stops it; its queue is deleted.
    pub async fn stop(self) {
        match self {
            Self::InProcess(echo) => echo.stop().await,
            Self::Child { mut child, .. } => {
                // Closing its stdin asks it to delete its queue and exit.
                drop(child.stdin.take());
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await;
                if !matches!(waited, Ok(Ok(_))) {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// `authq bench-echo`: runs the echo consumer until its stdin closes (the bench that started it
/// is done, or gone), saying `ready` on stdout once it consumes.
pub async fn serve(
    url: &str,
    names: &Names,
    routing_key: &str,
    shape: Shape,
) -> anyhow::Result<()> {
    let echo = Echo::start(url, names, routing_key, shape).await?;
    println!("ready");
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    while stdin.read_line(&mut line).await.unwrap_or(0) > 0 {
        line.clear();
    }
    echo.stop().await;
    Ok(())
}

/// A running echo consumer.
#[derive(Debug)]
pub struct Echo {
    routing_key: String,
    queue: String,
    connection: Connection,
    setup: Channel,
}

impl Echo {
    /// Starts `consumers` echo consumers with `prefetch` each on the request exchange of `names`,
    /// in this process, reached with `routing_key`.
    pub async fn start(
        url: &str,
        names: &Names,
        routing_key: &str,
        shape: Shape,
    ) -> anyhow::Result<Self> {
        let Shape {
            consumers,
            prefetch,
            queue,
        } = shape;
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("authq-bench-echo".into()),
        )
        .await?;
        let routing_key = routing_key.to_owned();
        let queue_name = format!("{}.{routing_key}", names.namespace());
        let setup = connection.create_channel().await?;
        // The session tube's persistence: a queue of the same type (for the raw best case, a
        // transient one). It expires if the bench dies before deleting it.
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(queue.as_str())),
        );
        args.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
        let queue = setup
            .queue_declare(
                queue_name.as_str().into(),
                QueueDeclareOptions {
                    durable: queue.durable(),
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
