//! `TestEnv`: a worker in-process on its own namespace and store, and a client for it.
//!
//! The store is a SQLite file in a temporary directory, or, with `AUTHQ_TEST_STORE=postgres`,
//! a PostgreSQL database of its own (`authq_test_…` on `AUTHQ_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), created for the test and dropped after it.

use authq::{Client, ClientOptions};
use authq_worker::config::{Config, HashConfig};
use authq_worker::store::{Store, StoreError, StoreLocation, Tx};
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

/// Whether the tests run on PostgreSQL (`AUTHQ_TEST_STORE=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    match std::env::var("AUTHQ_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("AUTHQ_TEST_STORE must be sqlite or postgres, not {other:?}"),
    }
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("AUTHQ_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `f` on a thread of its own (the synchronous PostgreSQL driver must not block an async
/// executor thread).
fn off_executor<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().expect("the database thread panicked"))
}

/// A new PostgreSQL database for one test; returns its URL. Fails loudly when PostgreSQL is
/// not reachable.
pub fn create_postgres_database(name: &str) -> String {
    let admin = postgres_admin_url();
    off_executor(|| {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is not reachable: {e}"));
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    });
    let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
    url.set_path(name);
    url.to_string()
}

/// Drops a test's PostgreSQL database (and any connection still on it).
pub fn drop_postgres_database(name: &str) {
    let admin = postgres_admin_url();
    off_executor(|| {
        if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    });
}

/// A store for `authq serve` processes a test spawns: a SQLite file in `dir`, or (on
/// PostgreSQL) a database of its own, dropped with this value.
pub struct TestStore {
    /// Where it is.
    pub location: StoreLocation,
    /// `authq serve` flags that name it (`--database`, and `--key-file` on PostgreSQL).
    pub args: Vec<String>,
    pg_database: Option<String>,
}

impl TestStore {
    /// A new store for the engine the tests run on.
    pub fn new(dir: &std::path::Path) -> Self {
        if on_postgres() {
            let name = format!("authq_test_{}", uuid::Uuid::new_v4().simple());
            let url = create_postgres_database(&name);
            let key = dir.join("authq.key").to_string_lossy().into_owned();
            Self {
                args: vec!["--database".into(), url.clone(), "--key-file".into(), key],
                location: StoreLocation::Postgres(url),
                pg_database: Some(name),
            }
        } else {
            let path = dir.join("authq.db");
            Self {
                args: vec!["--database".into(), path.to_string_lossy().into_owned()],
                location: StoreLocation::Sqlite(path),
                pg_database: None,
            }
        }
    }

    /// Counts rows (`SELECT count(*) FROM {from_where}`).
    pub fn count(&self, from_where: &str) -> i64 {
        let sql = leak(format!("SELECT count(*) FROM {from_where}"));
        run_on(&self.location, |tx| tx.query_value::<i64>(sql, &[])).expect("a count")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_database {
            drop_postgres_database(name);
        }
    }
}

/// Runs `f` in one transaction on the store at `location`, through a connection of its own
/// (on either engine), off the async executor.
pub fn run_on<R: Send>(
    location: &StoreLocation,
    f: impl FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send,
) -> R {
    let location = location.clone();
    off_executor(move || {
        let store = Store::open(&location, 1).expect("the store opens");
        store.write(f).expect("the statement runs")
    })
}

/// A worker configuration for tests: its own namespace and store, cheap argon2, queues
/// that expire if a test dies without cleaning up.
pub fn test_config(dir: &TempDir) -> Config {
    let namespace = unique_namespace();
    let (database, key_file) = if on_postgres() {
        let url = create_postgres_database(&pg_database_of(&namespace));
        (
            StoreLocation::Postgres(url),
            Some(dir.path().join("authq.key")),
        )
    } else {
        (StoreLocation::Sqlite(dir.path().join("authq.db")), None)
    };
    Config {
        amqp_url: amqp_url(),
        namespace,
        database,
        key_file,
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
            ClientOptions::default()
                .namespace(config.namespace.clone())
                .timeout(Duration::from_secs(20)),
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

    /// Counts rows of the worker's store (`SELECT count(*) FROM {from_where}`).
    pub fn count(&self, from_where: &str) -> i64 {
        let sql = leak(format!("SELECT count(*) FROM {from_where}"));
        self.db(|tx| tx.query_value::<i64>(sql, &[]))
            .expect("a count")
    }

    /// Runs `f` in one transaction on the worker's store, through a connection of its own
    /// (on either engine), off the async executor.
    pub fn db<R: Send>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send) -> R {
        run_on(&self.config.database, f)
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

    /// Starts a second worker pool on the same namespace, store and clocks: the two consume
    /// the same tubes, so requests race across workers. The caller shuts it down.
    pub async fn second_worker(&self) -> WorkerHandle {
        WorkerHandle::start_with_clocks(
            self.config.clone(),
            Arc::new(self.clock.clone()),
            Arc::new(self.deadline_clock.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("the second worker did not start: {e}"))
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

/// The PostgreSQL database of a test namespace.
fn pg_database_of(namespace: &str) -> String {
    namespace.replace('-', "_")
}

/// A statement text for [`TestEnv::db`], which takes `&'static str` (the store caches prepared
/// statements by their text's address); tests build few.
pub fn leak(sql: String) -> &'static str {
    Box::leak(sql.into_boxed_str())
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let StoreLocation::Postgres(_) = &self.config.database {
            drop_postgres_database(&pg_database_of(&self.config.namespace));
        }
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

    /// Waits (bounded polling, 30 s) until `queue` holds exactly `n` messages: the broker
    /// dead-letters and expires messages asynchronously, so a depth read right after an
    /// action may still show the state before it.
    pub async fn depth_reaches(&self, queue: &str, n: u32) {
        let mut last = 0;
        for _ in 0..600 {
            last = self.depth(queue).await;
            if last == n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("queue {queue} holds {last} messages, never {n} within 30 s");
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
