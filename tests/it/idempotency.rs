//! At-least-once without double effects: a mutating request's first outcome answers every
//! later delivery of it (redelivery after a crash, a caller's retry with the same message_id).

use crate::harness::{Raw, TestEnv, reply_code};
use authq_protocol::Operation;
use authq_worker::faults::FaultPoint;
use lapin::BasicProperties;
use std::time::Duration;

const PW: &str = "correct horse battery";
const T: Duration = Duration::from_secs(20);

fn login_body(email: &str) -> Vec<u8> {
    format!(r#"{{"email":"{email}","password":"{PW}"}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_login_gets_its_first_session_and_opens_no_second() {
    let env = TestEnv::start().await;
    let user = env.active_user("ann@example.com", PW).await;
    let before = env.metrics();
    let body = login_body("ann@example.com");
    let first = env
        .client
        .call_raw_with_id("login", &body, T, "retry-1")
        .await
        .unwrap();
    let again = env
        .client
        .call_raw_with_id("login", &body, T, "retry-1")
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "the retry gets the first reply, byte for byte"
    );
    assert_eq!(reply_code(&first), None);
    let after = env.metrics();
    assert_eq!(
        after.argon2_runs - before.argon2_runs,
        1,
        "no second argon2 run"
    );
    assert_eq!(after.replayed - before.replayed, 1);
    let sessions = env.count(&format!("sessions WHERE user_id = '{user}'"));
    assert_eq!(sessions, 1, "one login, one session");
    // A new message_id is a new login.
    env.client
        .call_raw_with_id("login", &body, T, "retry-2")
        .await
        .unwrap();
    assert_eq!(env.count(&format!("sessions WHERE user_id = '{user}'")), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_reused_for_another_request_is_a_conflict() {
    let env = TestEnv::start().await;
    env.client
        .call_raw_with_id("register", br#"{"email":"a@example.com"}"#, T, "same")
        .await
        .unwrap();
    let other = env
        .client
        .call_raw_with_id("register", br#"{"email":"b@example.com"}"#, T, "same")
        .await
        .unwrap();
    assert_eq!(reply_code(&other).as_deref(), Some("idempotency_conflict"));
    assert_eq!(env.count("users"), 1, "the conflicting request did nothing");
    // Reads are not recorded: the same id on a read is simply answered.
    for _ in 0..2 {
        let pong = env
            .client
            .call_raw_with_id("ping", b"{}", T, "same")
            .await
            .unwrap();
        assert_eq!(reply_code(&pong), None);
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_outcomes_hold_no_secret_in_clear() {
    let env = TestEnv::start().await;
    let reg = env
        .client
        .call_raw_with_id("register", br#"{"email":"c@example.com"}"#, T, "r1")
        .await
        .unwrap();
    let reg: serde_json::Value = serde_json::from_slice(&reg).unwrap();
    let code = reg["data"]["code"].as_str().unwrap().to_owned();
    env.client
        .confirm_registration("c@example.com", &code, PW)
        .await
        .unwrap();
    let login = env
        .client
        .call_raw_with_id("login", &login_body("c@example.com"), T, "l1")
        .await
        .unwrap();
    let login: serde_json::Value = serde_json::from_slice(&login).unwrap();
    let token = login["data"]["session"].as_str().unwrap().to_owned();
    assert_eq!(
        env.count("outcomes"),
        3,
        "register, confirm and login recorded"
    );
    // Nothing the database holds has the token or the code, outcomes included: on SQLite its
    // files, on PostgreSQL every bytes and text column of every table.
    let dumps: Vec<Vec<u8>> = match env.config.database.sqlite_path() {
        Some(db) => std::fs::read_dir(db.parent().unwrap())
            .unwrap()
            .map(|f| std::fs::read(f.unwrap().path()).unwrap())
            .collect(),
        None => env.db(|tx| {
            tx.query_all(
                "SELECT convert_to(t::text, 'UTF8') FROM (
                     SELECT row_to_json(o)::text AS t FROM outcomes o
                     UNION ALL SELECT row_to_json(u)::text FROM users u
                     UNION ALL SELECT row_to_json(c)::text FROM codes c
                     UNION ALL SELECT row_to_json(s)::text FROM sessions s
                     UNION ALL SELECT row_to_json(b)::text FROM outbox b) d",
                &[],
                |r| r.get(0),
            )
        }),
    };
    for bytes in dumps {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&token), "a session token in clear");
        assert!(
            !text.contains(&format!("\"code\":\"{code}\"")),
            "a code in clear"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_kept_for_the_window_only() {
    let env = TestEnv::start_with(|c| c.idempotency_window = Duration::from_secs(3600)).await;
    let user = env.active_user("d@example.com", PW).await;
    let body = login_body("d@example.com");
    let first = env
        .client
        .call_raw_with_id("login", &body, T, "w")
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(1800));
    let within = env
        .client
        .call_raw_with_id("login", &body, T, "w")
        .await
        .unwrap();
    assert_eq!(first, within);
    env.clock.advance(Duration::from_secs(3600));
    let after = env
        .client
        .call_raw_with_id("login", &body, T, "w")
        .await
        .unwrap();
    assert_ne!(first, after, "past the window the request is done again");
    assert_eq!(env.count(&format!("sessions WHERE user_id = '{user}'")), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_commit_is_answered_from_the_outcome_on_redelivery() {
    let env = TestEnv::start().await;
    env.worker()
        .faults()
        .arm(FaultPoint::AfterCommit, Operation::Register);
    // The worker commits the registration, "dies" before replying, reconnects, takes the
    // redelivered request and answers it with the first outcome.
    let reply = env.client.register("e@example.com").await.unwrap();
    // The worker reconnected by itself and replayed the outcome.
    env.metrics_when(|m| m.replayed == 1 && m.reconnects == 1)
        .await;
    assert_eq!(env.count("users"), 1, "one effect");
    assert_eq!(env.count("codes"), 1);
    // The code in the reply is the one the store kept (not a second, re-issued one).
    env.client
        .confirm_registration("e@example.com", reply.code.expose(), PW)
        .await
        .expect("the replied code works");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_reply_sends_the_same_reply_again_and_the_client_keeps_one() {
    let env = TestEnv::start().await;
    let user = env.active_user("f@example.com", PW).await;
    env.worker()
        .faults()
        .arm(FaultPoint::AfterReply, Operation::Login);
    let raw = env.raw().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    raw.publish(
        "login",
        &login_body("f@example.com"),
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id("c1".into())
            .with_message_id("crash-after-reply".into()),
    )
    .await;
    let first = Raw::next(&mut replies).await;
    let second = Raw::next(&mut replies).await;
    assert_eq!(
        first.data, second.data,
        "the redelivery replays the first reply"
    );
    assert_eq!(
        second
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("c1")
    );
    assert_eq!(env.count(&format!("sessions WHERE user_id = '{user}'")), 1);
    // Through the client library the duplicate is dropped: the call returns once, and the
    // next call gets its own reply, not the duplicate.
    env.worker()
        .faults()
        .arm(FaultPoint::AfterReply, Operation::Login);
    let session = env.login("f@example.com", PW).await;
    env.metrics_when(|m| m.replayed == 2).await;
    let checked = env.client.check(&session).await.unwrap();
    assert_eq!(checked.user.id, user);
    assert_eq!(env.count(&format!("sessions WHERE user_id = '{user}'")), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_json_reserialised_is_the_same_request_not_a_conflict() {
    let env = TestEnv::start().await;
    let first = env
        .client
        .call_raw_with_id(
            "register",
            br#"{"email":"ann@example.com","profile":{"a":1,"b":"x"}}"#,
            T,
            "reserialised-1",
        )
        .await
        .unwrap();
    assert_eq!(
        reply_code(&first),
        None,
        "{}",
        String::from_utf8_lossy(&first)
    );
    // The same JSON as another library writes it: other key order, spacing, escapes.
    let again = env
        .client
        .call_raw_with_id(
            "register",
            b" {\"profile\": {\"b\": \"\\u0078\", \"a\": 1},\n  \"email\": \"ann@example.com\"} ",
            T,
            "reserialised-1",
        )
        .await
        .unwrap();
    assert_eq!(again, first, "answered with the first outcome");
    assert_eq!(env.metrics().replayed, 1);
    assert_eq!(env.count("users"), 1);
    env.stop().await;
}
