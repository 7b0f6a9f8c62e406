//! `authq shadow` against two real deployments that share one store: it copies the running
//! deployment's reads, sends each to both, and reports exactly the one reply that a seeded
//! difference changes, and no other over a walk-through.

use crate::harness::{TestEnv, amqp_url};
use authq::protocol::ops::ProfileMode;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "correct horse battery";
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reports_the_one_seeded_difference_and_no_false_ones() {
    // The running deployment, and the one being tried on the same store (as a new version
    // would be during a move), each with its own clock.
    let live = TestEnv::start().await;
    let (database, key_file) = (live.config.database.clone(), live.config.key_file.clone());
    let tried = TestEnv::start_with(|c| {
        c.database = database;
        c.key_file = key_file;
    })
    .await;
    live.active_user("old@example.com", PW).await;
    live.active_user("new@example.com", PW).await;
    let old = live.login("old@example.com", PW).await;
    live.clock.advance(HOUR);
    let new = live.login("new@example.com", PW).await;
    // The seed: the tried deployment's clock is past the first session's idle expiry (24 h),
    // not the second's (an hour later). Only `check` of the old session can differ.
    tried.clock.advance(24 * HOUR + HOUR / 2);

    let mut shadow = tokio::process::Command::new(AUTHQ)
        .args(["shadow", "--json", "--count", "6"])
        .args(["--source", &live.config.namespace])
        .args(["--namespace", &tried.config.namespace])
        .env("AUTHQ_AMQP_URL", amqp_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("authq shadow starts");
    let mut lines = BufReader::new(shadow.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), next(&mut lines))
        .await
        .expect("shadow is ready within 30 s");
    assert_eq!(ready["ready"]["source"], live.config.namespace.as_str());

    // A walk-through of reads on the running deployment (plus a write, which is not copied).
    let client = &live.client;
    client.ping().await.unwrap();
    client.check(&new).await.unwrap();
    client.get_profile(&new).await.unwrap();
    let plan = serde_json::json!({"plan": "pro"});
    let plan = plan.as_object().unwrap().clone();
    client
        .set_profile(&new, plan, ProfileMode::Merge)
        .await
        .unwrap();
    client.check(&old).await.unwrap(); // the seeded difference
    client.check(&new).await.unwrap();
    client.ping().await.unwrap();

    let mut differs = Vec::new();
    let summary = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), next(&mut lines))
            .await
            .expect("shadow reports within 60 s");
        if let Some(d) = line.get("differs") {
            differs.push(d.clone());
        } else if let Some(s) = line.get("summary") {
            break s.clone();
        } else {
            panic!("unexpected line: {line}");
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), shadow.wait())
        .await
        .expect("shadow exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status 1: some replies differed"
    );
    assert_eq!(differs.len(), 1, "{differs:?}");
    let d = &differs[0];
    assert_eq!(d["operation"], "check");
    assert_eq!(d["live"], "ok");
    assert_eq!(d["tried"], "error session_invalid");
    assert_eq!(summary["compared"], 6, "{summary}");
    assert_eq!(summary["differ"], 1, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    // Nothing of a request's body is printed: the session token appears nowhere.
    assert!(!d.to_string().contains(&old));
    tried.stop().await;
    live.stop().await;
}

/// The next line of `authq shadow --json`, parsed.
async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = lines.next_line().await.unwrap().expect("a line");
    serde_json::from_str(&line).unwrap()
}
