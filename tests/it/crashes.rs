//! Real process faults on the store's side of a request: a worker killed (`kill -9`) in the
//! middle of a login's argon2 run, and a worker stopped (SIGSTOP) inside a SQLite write
//! transaction while another worker on the same file answers. Each worker is an `authq serve`
//! process; every wait is bounded polling on a condition.

use crate::harness::{Raw, TestStore, amqp_url, delete_namespace, on_postgres, unique_namespace};
use authq::{Client, ClientOptions, ErrorCode};
use futures_util::future::join_all;
use lapin::BasicProperties;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "correct horse battery";

/// An `authq serve` process. Dropping it resumes it (if stopped) and kills it, so a failing
/// test leaves no stopped or running worker behind.
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

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: the process dies at once, in the middle of whatever it was doing.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-CONT", &pid])
            .stderr(Stdio::null())
            .status();
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

    // A wrong password whose worker is killed mid-hash counts once, when it is verified; the
    // caller's retry with the same message_id gets the same answer and counts nothing more.
    let wrong = serde_json::json!({ "email": "ann@example.com", "password": "wrong password 0" })
        .to_string()
        .into_bytes();
    let login_wrong = |client: Client, wrong: Vec<u8>| async move {
        let reply = client
            .call_raw_with_id("login", &wrong, Duration::from_secs(600), "wrong-0")
            .await
            .unwrap();
        crate::harness::reply_code(&reply)
    };
    let first_wrong = tokio::spawn(login_wrong(client.clone(), wrong.clone()));
    until(&store, "the wrong password claimed", |s| {
        s.count(&format!("{CLAIMS} AND state = 'pending'")) == 1
    })
    .await;
    worker.kill_9();
    worker = start();
    let counted = "attempts WHERE key = 'login:ann@example.com' AND count = 1";
    let failed_twice = format!("{CLAIMS} AND state = 'failed' AND deliveries = 2");
    assert_eq!(
        first_wrong.await.unwrap().as_deref(),
        Some("invalid_credentials")
    );
    assert_eq!(
        store.count(counted),
        1,
        "one failure, however many deliveries"
    );
    assert_eq!(store.count(&failed_twice), 1);
    let retried = login_wrong(client.clone(), wrong).await;
    assert_eq!(retried.as_deref(), Some("invalid_credentials"));
    assert_eq!(
        store.count(counted),
        1,
        "a retry of a counted failure counts nothing"
    );
    assert_eq!(store.count(&failed_twice), 1, "nor takes a new claim");
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

/// Whether the SQLite file's write lock is held (by someone else): a `BEGIN IMMEDIATE` that
/// does not wait.
fn write_lock_held(path: &std::path::Path) -> bool {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::ZERO).unwrap();
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            conn.execute_batch("ROLLBACK").unwrap();
            false
        }
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => true,
        Err(e) => panic!("probing the write lock: {e}"),
    }
}

/// Whether a registration in flight has no committed user yet (a reader sees the last commit
/// while the write lock is held).
fn some_uncommitted(path: &std::path::Path, in_flight: &HashMap<usize, (String, Vec<u8>)>) -> bool {
    let conn = rusqlite::Connection::open(path).unwrap();
    in_flight.values().any(|(_, body)| {
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        let email = body["email"].as_str().unwrap();
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM users WHERE email = ?1",
                [email],
                |r| r.get(0),
            )
            .unwrap();
        found == 0
    })
}

/// One register request of the flood: its `message_id`, body, and the reply its first call got.
struct Sent {
    id: String,
    body: Vec<u8>,
    first: Result<Vec<u8>, authq::ClientError>,
}

/// The error code of a raw reply body (`None` for an ok reply).
fn code(body: &[u8]) -> Option<String> {
    crate::harness::reply_code(body)
}

/// Calls `register` with `id` and `body` for each pair, all at once; the raw replies.
async fn retry_all(client: &Client, requests: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    join_all(requests.iter().map(|(id, body)| async move {
        client
            .call_raw_with_id("register", body, Duration::from_secs(120), id)
            .await
            .unwrap_or_else(|e| panic!("retry of {id}: {e}"))
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_inside_a_write_makes_the_other_answer_unavailable_and_retries_learn_the_outcome()
 {
    if on_postgres() {
        // SQLite's single write lock is what a stopped process holds; PostgreSQL has none.
        println!("SQLite only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(dir.path());
    let path = store.location.sqlite_path().unwrap().to_owned();
    let ns = unique_namespace();
    // A long heartbeat for A: the broker must not close the stopped worker's connection (and
    // requeue what it holds) while the test has it stopped.
    let url = amqp_url();
    let a_url = format!(
        "{url}{}heartbeat=300",
        if url.contains('?') { '&' } else { '?' }
    );
    let a = Serve::start(&ns, &store, dir.path(), &["--amqp-url", &a_url]);
    let client = client(&ns, Duration::from_secs(300)).await;

    // A floods the store with registrations, each with its own message_id; `in_flight` holds
    // each flood task's unanswered call.
    const TASKS: usize = 24;
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(Mutex::new(HashMap::new()));
    let flood: Vec<_> = (0..TASKS)
        .map(|t| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("flood-{t}-{n}");
                    let body = format!(r#"{{"email":"f{t}x{n}@example.com"}}"#).into_bytes();
                    in_flight
                        .lock()
                        .unwrap()
                        .insert(t, (id.clone(), body.clone()));
                    let first = client
                        .call_raw_with_id("register", &body, Duration::from_secs(300), &id)
                        .await;
                    in_flight.lock().unwrap().remove(&t);
                    sent.push(Sent { id, body, first });
                }
                sent
            })
        })
        .collect();

    // Stop A until it is caught inside a write transaction (the file's write lock is then held
    // by a stopped process: nothing else writes to it) while one of the calls in flight has
    // not committed: its retry needs the lock. A write that is no request's (the event relay,
    // the purge) may hold the lock after every call in flight committed; then B could answer
    // every retry from its recorded outcome, so that stop does not count.
    let mut caught = false;
    for _ in 0..1000 {
        a.signal("-STOP");
        if write_lock_held(&path) && some_uncommitted(&path, &in_flight.lock().unwrap()) {
            caught = true;
            break;
        }
        a.signal("-CONT");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(caught, "A was never stopped inside a write");
    stop.store(true, Ordering::SeqCst);
    let unanswered: Vec<(String, Vec<u8>)> = in_flight.lock().unwrap().values().cloned().collect();
    assert!(!unanswered.is_empty(), "A stopped with calls in flight");

    // B starts on the same file (the migrations are applied already: it needs no write lock)
    // and serves the tube while A is stopped; its writes wait 1 s for the lock. The callers of
    // the unanswered calls retry with their message_ids: B answers each `unavailable`, or with
    // the outcome A recorded before it stopped; never `internal`.
    let b = Serve::start(&ns, &store, dir.path(), &["--store-busy-timeout", "1s"]);
    let other = crate::crashes::client(&ns, Duration::from_secs(120)).await;
    let early = retry_all(&other, &unanswered).await;
    let told_unavailable: Vec<&str> = unanswered
        .iter()
        .zip(&early)
        .filter_map(|((id, _), reply)| match code(reply).as_deref() {
            None => None,
            Some("unavailable") => Some(id.as_str()),
            Some(other) => panic!("{id} while A holds the lock: {other}"),
        })
        .collect();
    assert!(
        !told_unavailable.is_empty(),
        "the request A is stopped in cannot be done by B"
    );

    // A resumes: it finishes what it held, and answers its calls.
    a.signal("-CONT");
    let mut sent = Vec::new();
    for task in flood {
        sent.extend(task.await.unwrap());
    }
    let mut applied_after_unavailable = 0;
    let everything: Vec<(String, Vec<u8>)> = sent
        .iter()
        .map(|s| (s.id.clone(), s.body.clone()))
        .collect();
    let last = retry_all(&other, &everything).await;
    for (s, reply) in sent.iter().zip(&last) {
        assert_eq!(
            code(reply),
            None,
            "{}: the retry is done: {:?}",
            s.id,
            code(reply)
        );
        match &s.first {
            Ok(first) if code(first).is_none() => {
                assert_eq!(first, reply, "{}: the retry learns the first outcome", s.id);
                if told_unavailable.contains(&s.id.as_str()) {
                    applied_after_unavailable += 1;
                }
            }
            Ok(first) => assert_eq!(
                code(first).as_deref(),
                Some("unavailable"),
                "{}: never internal",
                s.id
            ),
            Err(e) => assert_eq!(
                e.code(),
                Some(ErrorCode::Unavailable),
                "{}: never internal: {e}",
                s.id
            ),
        }
    }
    println!(
        "stopped inside a write: {} calls, {} unanswered at the stop, {} told unavailable, {} of those applied by A after it resumed",
        sent.len(),
        unanswered.len(),
        told_unavailable.len(),
        applied_after_unavailable
    );
    assert!(
        applied_after_unavailable >= 1,
        "a request B called unavailable took effect through A, and its retry says so"
    );
    // One account per request, however many times it was answered.
    assert_eq!(store.count("users"), sent.len() as i64);
    let _ = client.close().await;
    let _ = other.close().await;
    drop((a, b));
    delete_namespace(&amqp_url(), &ns).await;
}
