//! Floods with real process faults: `kill -9` of one of two worker processes, and SIGTERM of
//! the only one, in the middle of thousands of calls. Every call gets exactly one reply, and the
//! store holds exactly the effects asked for.

use crate::harness::{TestStore, amqp_url, delete_namespace, unique_namespace};
use authq::{Client, ClientOptions};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "correct horse battery";

/// An `authq serve` child process.
struct Serve {
    child: Child,
}

impl Serve {
    fn start(namespace: &str, store: &TestStore) -> Self {
        let child = Command::new(AUTHQ)
            .args(["serve", "--namespace", namespace, "--queue-expires", "10m"])
            .args(["--hash-threads", "1", "--shutdown-grace", "30s"])
            .args(&store.args)
            .env("AUTHQ_AMQP_URL", amqp_url())
            .env("AUTHQ_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("authq serve starts");
        Self { child }
    }

    /// SIGKILL: the process dies at once, holding whatever it had taken.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        for _ in 0..240 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = self.child.kill();
        panic!("authq serve did not exit within 60 s of SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for `namespace`, once a worker has declared it.
async fn client(namespace: &str) -> Client {
    for _ in 0..120 {
        let options = ClientOptions::default()
            .namespace(namespace.to_owned())
            .timeout(Duration::from_secs(180));
        if let Ok(c) = Client::connect_with(&amqp_url(), options).await
            && c.ping().await.is_ok()
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no worker answered on {namespace} within 30 s");
}

/// What a flood asked for and got.
#[derive(Debug, Default)]
pub struct Tally {
    pub attempted: usize,
    pub replied: usize,
    pub failed: Vec<String>,
}

/// Registers and confirms `n` users, logs the first in; returns the session.
pub async fn setup(client: &Client, n: usize) -> String {
    for i in 0..n {
        let email = format!("u{i}@example.com");
        let r = client.register(&email).await.unwrap();
        client
            .confirm_registration(&email, r.code.expose(), PW)
            .await
            .unwrap();
    }
    client
        .login("u0@example.com", PW)
        .await
        .unwrap()
        .session
        .expose()
        .to_owned()
}

/// Starts the flood: `checks` checks of `session`, `logins` logins of the `users` users,
/// `registers` new registrations; `done` counts finished calls.
pub fn flood(
    client: &Client,
    session: &str,
    (checks, logins, registers, users): (usize, usize, usize, usize),
    done: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let mut calls = Vec::new();
    for i in 0..checks + logins + registers {
        let (client, session, done) = (client.clone(), session.to_owned(), Arc::clone(done));
        calls.push(tokio::spawn(async move {
            let outcome = if i < checks {
                client.check(&session).await.map(drop)
            } else if i < checks + logins {
                let email = format!("u{}@example.com", i % users);
                client.login(&email, PW).await.map(drop)
            } else {
                client
                    .register(&format!("new{i}@example.com"))
                    .await
                    .map(drop)
            };
            done.fetch_add(1, Ordering::SeqCst);
            outcome.map_err(|e| e.to_string())
        }));
    }
    calls
}

pub async fn wait_until(done: &AtomicUsize, n: usize) {
    for _ in 0..2400 {
        if done.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the flood stalled at {} calls", done.load(Ordering::SeqCst));
}

pub async fn collect(calls: Vec<tokio::task::JoinHandle<Result<(), String>>>) -> Tally {
    let mut tally = Tally::default();
    for call in calls {
        tally.attempted += 1;
        match call.await.unwrap() {
            Ok(()) => tally.replied += 1,
            Err(e) => tally.failed.push(e),
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_two_workers_mid_flood_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestStore::new(dir.path());
    let ns = unique_namespace();
    let a = Serve::start(&ns, &db);
    let client = client(&ns).await;
    let b = Serve::start(&ns, &db);
    const USERS: usize = 10;
    let session = setup(&client, USERS).await;

    let (checks, logins, registers) = (3000, 300, 100);
    let done = Arc::new(AtomicUsize::new(0));
    let calls = flood(&client, &session, (checks, logins, registers, USERS), &done);
    wait_until(&done, (checks + logins + registers) / 2).await;
    a.kill_9();
    let a = Serve::start(&ns, &db);
    let tally = collect(calls).await;

    let users = db.count("users");
    let sessions = db.count("sessions");
    let (want_users, want_sessions) = ((USERS + registers) as i64, (1 + logins) as i64);
    let duplicated = (users - want_users).max(0) + (sessions - want_sessions).max(0);
    println!(
        "kill -9 mid-flood: attempted {} / confirmed {} / replied {} / lost {} / duplicated {}",
        tally.attempted,
        tally.attempted - tally.failed.len(),
        tally.replied,
        tally.attempted - tally.replied,
        duplicated
    );
    assert!(
        tally.failed.is_empty(),
        "{:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(
        (users, sessions),
        (want_users, want_sessions),
        "one effect per call"
    );
    assert_eq!(duplicated, 0);
    drop((a, b));
    delete_namespace(&amqp_url(), &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flood_exits_0_and_the_next_worker_answers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestStore::new(dir.path());
    let ns = unique_namespace();
    let first = Serve::start(&ns, &db);
    let client = client(&ns).await;
    const USERS: usize = 5;
    let session = setup(&client, USERS).await;

    let (checks, logins, registers) = (2000, 200, 50);
    let done = Arc::new(AtomicUsize::new(0));
    let calls = flood(&client, &session, (checks, logins, registers, USERS), &done);
    wait_until(&done, (checks + logins + registers) / 3).await;
    assert_eq!(first.terminate(), Some(0), "a clean exit under load");
    let _next = Serve::start(&ns, &db);
    let tally = collect(calls).await;
    println!(
        "SIGTERM mid-flood: attempted {} / replied {} / lost {}",
        tally.attempted,
        tally.replied,
        tally.attempted - tally.replied
    );
    assert!(
        tally.failed.is_empty(),
        "{:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(db.count("users"), (USERS + registers) as i64);
    assert_eq!(db.count("sessions"), (1 + logins) as i64);
    delete_namespace(&amqp_url(), &ns).await;
}
