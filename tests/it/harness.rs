//! `TestEnv`: a worker in-process on its own namespace and SQLite file, and a client for it.

use authq::{Client, ClientOptions};
use authq_worker::config::{Config, HashConfig};
use authq_worker::{ManualClock, MetricsSnapshot, WorkerHandle};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tempfile::TempDir;

/// The broker the tests use: `AUTHQ_TEST_AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("AUTHQ_TEST_AMQP_URL")
        .unwrap_or_else(|_| authq_worker::config::DEFAULT_AMQP_URL.to_owned())
}

/// The RabbitMQ user of [`amqp_url`] (what the broker validates `user-id` against).
pub fn amqp_user() -> String {
    let url = amqp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    match rest.split_once('@') {
        Some((cred, _)) => cred.split(':').next().unwrap_or("guest").to_owned(),
        None => "guest".to_owned(),
    }
}

/// A namespace no other test uses.
pub fn unique_namespace() -> String {
    format!("authq-test-{}", uuid::Uuid::new_v4().simple())
}

/// Prints the worker's logs when `TEST_LOG` is set.
fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("TEST_LOG")
                        .unwrap_or_default()
                        .replace('1', "debug"),
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A worker configuration for tests: its own namespace and database, cheap argon2, queues
/// that expire if a test dies without cleaning up.
pub fn test_config(dir: &TempDir) -> Config {
    Config {
        amqp_url: amqp_url(),
        namespace: unique_namespace(),
        database: dir.path().join("authq.db"),
        hashing: HashConfig::insecure_fast_for_tests(),
        admin_callers: vec![amqp_user()],
        queue_expires: Some(Duration::from_secs(600)),
        shutdown_grace: Duration::from_secs(10),
        ..Config::default()
    }
}

/// A running worker and a client connected to it.
pub struct TestEnv {
    pub client: Client,
    pub clock: ManualClock,
    /// The clock the worker compares callers' deadlines with (starts at the system time).
    pub deadline_clock: ManualClock,
    pub config: Config,
    worker: Option<WorkerHandle>,
    _dir: TempDir,
}

impl TestEnv {
    /// Starts a worker with the test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a worker with the test configuration, adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = test_config(&dir);
        adjust(&mut config);
        let clock = ManualClock::new();
        let deadline_clock = ManualClock::new();
        let worker = WorkerHandle::start_with_clocks(
            config.clone(),
            Arc::new(clock.clone()),
            Arc::new(deadline_clock.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
        let client = Client::connect_with(
            &config.amqp_url,
            ClientOptions {
                namespace: config.namespace.clone(),
                timeout: Duration::from_secs(20),
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the client did not connect: {e}"));
        Self {
            client,
            clock,
            deadline_clock,
            config,
            worker: Some(worker),
            _dir: dir,
        }
    }

    /// Now, on the worker's clock.
    pub fn clock_now(&self) -> i64 {
        use authq_worker::Clock;
        self.clock.now_ms()
    }

    /// The worker's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.worker().metrics().snapshot()
    }

    /// The worker's counters once `ready` holds for them (counters move just
    /// after the broker sees the effect, so a test waits for them); panics
    /// with the last snapshot after 10 s.
    pub async fn metrics_when(&self, ready: impl Fn(&MetricsSnapshot) -> bool) -> MetricsSnapshot {
        for _ in 0..200 {
            let m = self.metrics();
            if ready(&m) {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the counters never got there: {:?}", self.metrics());
    }

    /// Counts rows of the worker's SQLite database (`SELECT count(*) FROM {from_where}`).
    pub fn count(&self, from_where: &str) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            &self.config.database,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("the worker's database opens");
        db.query_row(&format!("SELECT count(*) FROM {from_where}"), [], |r| {
            r.get(0)
        })
        .expect("a count")
    }

    /// The worker.
    pub fn worker(&self) -> &WorkerHandle {
        self.worker.as_ref().expect("the worker is running")
    }

    /// Registers and confirms a user; returns its id.
    pub async fn active_user(&self, email: &str, password: &str) -> String {
        let reg = self.client.register(email).await.expect("register");
        self.client
            .confirm_registration(email, reg.code.expose(), password)
            .await
            .expect("confirm_registration");
        reg.user_id
    }

    /// Registers, confirms and logs a user in; returns the session token.
    pub async fn session(&self, email: &str, password: &str) -> String {
        self.active_user(email, password).await;
        self.login(email, password).await
    }

    /// Logs in; returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        self.client
            .login(email, password)
            .await
            .expect("login")
            .session
            .expose()
            .to_owned()
    }

    /// A raw AMQP connection to the same broker, for crafting requests the client library
    /// would never send.
    pub async fn raw(&self) -> Raw {
        Raw::connect(&self.config.amqp_url, &self.config.namespace).await
    }

    /// Stops the worker (cleanly) and returns its final counters; the client stays connected.
    pub async fn stop_worker(&mut self) -> MetricsSnapshot {
        let worker = self.worker.take().expect("the worker is running");
        let metrics = std::sync::Arc::clone(worker.metrics());
        worker.shutdown().await.expect("the worker stops cleanly");
        metrics.snapshot()
    }

    /// Starts a new worker on the same namespace, database and clock.
    pub async fn restart_worker(&mut self) {
        assert!(self.worker.is_none(), "stop the worker first");
        let worker = WorkerHandle::start_with_clocks(
            self.config.clone(),
            Arc::new(self.clock.clone()),
            Arc::new(self.deadline_clock.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
        self.worker = Some(worker);
    }

    /// Stops the worker, checking that it stops cleanly, and deletes the namespace's queues
    /// and exchanges from the broker.
    pub async fn stop(mut self) {
        // Best effort: the client may already be gone.
        let _ = self.client.close().await;
        if let Some(worker) = self.worker.take() {
            worker.shutdown().await.expect("the worker stops cleanly");
        }
        delete_namespace(&self.config.amqp_url, &self.config.namespace).await;
    }
}

/// Publishes hand-made messages and reads queues directly.
pub struct Raw {
    pub connection: Connection,
    pub channel: Channel,
    pub namespace: String,
}

impl Raw {
    pub async fn connect(url: &str, namespace: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("cannot reach the broker: {e}"));
        let channel = connection.create_channel().await.expect("a channel");
        Self {
            connection,
            channel,
            namespace: namespace.to_owned(),
        }
    }

    /// Publishes `body` to the request exchange under `routing_key`.
    pub async fn publish(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                self.namespace.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
    }

    /// Publishes with a publisher confirm and waits for it: once this returns, the message is
    /// in its queue.
    pub async fn publish_confirmed(&self, routing_key: &str, body: &[u8]) {
        let channel = self.connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let confirm = channel
            .basic_publish(
                self.namespace.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("a confirm");
        assert!(confirm.is_ack());
        let _ = channel.close(200, "done".into()).await;
    }

    /// Messages waiting in `queue` (a passive declare; panics if the queue does not exist).
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
            .message_count()
    }

    /// Declares an exclusive reply queue and returns its name and a consumer on it.
    pub async fn reply_queue(&self) -> (String, lapin::Consumer) {
        let q = self
            .channel
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
            .expect("reply queue");
        let consumer = self.consume(q.name().as_str()).await;
        (q.name().to_string(), consumer)
    }

    /// Waits (bounded) for the next message on a consumer.
    pub async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
        tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a message within 20 s")
            .expect("the consumer is open")
            .expect("a delivery")
    }

    /// Consumes the namespace's dead-letter queue.
    pub async fn dead_letters(&self) -> lapin::Consumer {
        self.consume(&format!("{}.dead-letter", self.namespace))
            .await
    }

    /// Consumes a queue without acknowledgements.
    pub async fn consume(&self, queue: &str) -> lapin::Consumer {
        self.channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume")
    }
}

/// The `status`/`error.code` of a raw reply body.
pub fn reply_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON reply");
    v["error"]["code"].as_str().map(str::to_owned)
}

/// Asserts a client call failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, authq::ClientError>,
    code: authq::ErrorCode,
) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(code), "expected {code}, got {e}"),
        Ok(v) => panic!("expected {code}, got a success: {v:?}"),
    }
}

/// Deletes a namespace's queues and exchanges (best effort: they also expire on their own).
pub async fn delete_namespace(url: &str, namespace: &str) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    for suffix in [
        "session",
        "password",
        "account",
        "unrouted",
        "dead-letter",
        "quarantine",
    ] {
        let _ = channel
            .queue_delete(
                format!("{namespace}.{suffix}").into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for name in [
        namespace.to_owned(),
        format!("{namespace}.unrouted"),
        format!("{namespace}.dead-letter"),
        format!("{namespace}.quarantine"),
        format!("{namespace}.events"),
    ] {
        let _ = channel
            .exchange_delete(
                name.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = connection.close(200, "cleaned up".into()).await;
}
