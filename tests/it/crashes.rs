//! Real process faults on a request's path: a worker killed (`kill -9`) in the middle of a
//! login's argon2 run. Each worker is an `authq serve` process; every wait is bounded polling
//! on a condition.

use crate::harness::{Raw, TestStore, amqp_url, delete_namespace, unique_namespace};
use authq::{Client, ClientOptions, ErrorCode};
use lapin::BasicProperties;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "correct horse battery";

/// An `authq serve` process. Dropping it kills it, so a failing test leaves no worker behind.
struct Serve {
    child: Child,
}

impl Serve {
    fn start(namespace: &str, store: &TestStore, dir: &std::path::Path, extra: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("workers.log"))
            .unwrap();
        let child = Command::new(AUTHQ)
            .args(["serve", "--namespace", namespace, "--queue-expires", "10m"])
            .args(["--hash-threads", "1", "--shutdown-grace", "5s"])
            .args(&store.args)
            .args(extra)
            .env("AUTHQ_AMQP_URL", amqp_url())
            .env("AUTHQ_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("authq serve starts");
        Self { child }
    }

    /// SIGKILL: the process dies at once, in the middle of whatever it was doing.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for `namespace` once a worker has declared it and answers.
async fn client(namespace: &str, timeout: Duration) -> Client {
    for _ in 0..240 {
        let options = ClientOptions::default()
            .namespace(namespace.to_owned())
            .timeout(timeout);
        if let Ok(c) = Client::connect_with(&amqp_url(), options).await
            && c.call_raw("ping", b"{}", Duration::from_secs(2))
                .await
                .is_ok()
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no worker answered on {namespace} within 60 s");
}

/// Polls `ready` on the store (bounded: 180 s) until it holds.
async fn until(store: &TestStore, what: &str, ready: impl Fn(&TestStore) -> bool) {
    for _ in 0..9000 {
        if ready(store) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

/// Slow argon2 (128 MiB, 16 passes: seconds per hash), so a login is reliably still hashing
/// when its claim is seen in the store and its worker is killed.
const SLOW_ARGON2: &[&str] = &[
    "--argon2-memory-kib",
    "131072",
    "--argon2-iterations",
    "16",
    "--login-max-failures",
    "3",
];

const CLAIMS: &str = "attempt_claims WHERE key = 'login:ann@example.com'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_whose_worker_is_killed_mid_hash_count_no_failure_and_failures_still_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(dir.path());
    let ns = unique_namespace();
    let start = || Serve::start(&ns, &store, dir.path(), SLOW_ARGON2);
    let mut worker = start();
    let client = client(&ns, Duration::from_secs(600)).await;
    let reg = client.register("ann@example.com").await.unwrap();
    client
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap();

    // Two logins with the right password in flight: one through the client (with a
    // `message_id`), one published by hand without a `message_id` (its claim is keyed by its
    // `correlation_id`, which the broker's redelivery keeps).
    let raw = Raw::connect(&amqp_url(), &ns).await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    let body = serde_json::json!({ "email": "ann@example.com", "password": PW }).to_string();
    raw.publish(
        "login",
        body.as_bytes(),
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id("no-message-id".into()),
    )
    .await;
    let with_id = {
        let client = client.clone();
        tokio::spawn(async move { client.login("ann@example.com", PW).await })
    };
    // Four workers in turn die while both logins hash: eight deliveries of two requests, more
    // than twice the limit of 3. Each time both claims are taken (once more each) before the
    // kill: the redelivery reused its own claim.
    const KILLS: i64 = 4;
    for delivery in 1..=KILLS {
        until(
            &store,
            &format!("both logins claimed, delivery {delivery}"),
            |s| {
                s.count(&format!(
                    "{CLAIMS} AND state = 'pending' AND deliveries = {delivery}"
                )) == 2
            },
        )
        .await;
        worker.kill_9();
        worker = start();
    }
    // The last worker lives: both logins succeed, no failure was counted, nothing is left.
    let session = with_id
        .await
        .unwrap()
        .expect("the login with a message_id succeeds");
    assert!(!session.session.expose().is_empty());
    let reply = Raw::next(&mut replies).await;
    let reply: serde_json::Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(
        reply["status"], "ok",
        "the login without a message_id: {reply}"
    );
    assert_eq!(store.count(CLAIMS), 0, "a success removes its claim");
    assert_eq!(
        store.count("attempts WHERE key = 'login:ann@example.com' AND count > 0"),
        0,
        "no failure counted"
    );

    // A wrong password whose worker is killed mid-hash counts once, when it is verified.
    let wrong = {
        let client = client.clone();
        tokio::spawn(async move { client.login("ann@example.com", "wrong password 0").await })
    };
    until(&store, "the wrong password claimed", |s| {
        s.count(&format!("{CLAIMS} AND state = 'pending'")) == 1
    })
    .await;
    worker.kill_9();
    worker = start();
    let failed = wrong.await.unwrap();
    assert_eq!(
        failed.unwrap_err().code(),
        Some(ErrorCode::InvalidCredentials)
    );
    let counted = "attempts WHERE key = 'login:ann@example.com' AND count = 1";
    assert_eq!(
        store.count(counted),
        1,
        "one failure, however many deliveries"
    );
    assert_eq!(
        store.count(&format!("{CLAIMS} AND state = 'failed' AND deliveries = 2")),
        1
    );
    // Verified failures still count and lock at the limit (3).
    for i in 1..=2 {
        let e = client
            .login("ann@example.com", &format!("wrong password {i}"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidCredentials));
    }
    let e = client.login("ann@example.com", PW).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::TooManyAttempts),
        "locked after three verified failures, even with the right password"
    );
    let _ = client.close().await;
    let _ = raw.connection.close(200, "done".into()).await;
    drop(worker);
    delete_namespace(&amqp_url(), &ns).await;
}
