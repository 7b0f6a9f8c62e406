//! Bad input gets a clear answer: an error reply with a stable code when there is someone to
//! answer, the dead-letter queue (with the reason) when there is not. The worker keeps going.

use crate::harness::{Raw, TestEnv, reply_code};
use authq_protocol::names::headers;
use authq_worker::Clock;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_reply_with_a_stable_code() {
    let env = TestEnv::start().await;
    let deep = format!(
        r#"{{"email":"a@b.c","profile":{{"a":{}1{}}}}}"#,
        "[".repeat(500),
        "]".repeat(500)
    );
    let huge = format!(r#"{{"email":"{}@b.c"}}"#, "a".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("login", b"{not json".to_vec(), "bad_request"),
        ("login", b"".to_vec(), "bad_request"),
        ("login", b"[1,2,3]".to_vec(), "bad_request"),
        ("login", br#"{"email":"a@b.c"}"#.to_vec(), "bad_request"),
        (
            "login",
            br#"{"email":"a@b.c","password":42}"#.to_vec(),
            "bad_request",
        ),
        ("check", br#"{"session":null}"#.to_vec(), "bad_request"),
        (
            "set_profile",
            br#"{"session":"s","profile":[]}"#.to_vec(),
            "bad_request",
        ),
        (
            "set_profile",
            br#"{"session":"s","profile":{},"mode":"shuffle"}"#.to_vec(),
            "bad_request",
        ),
        (
            "register",
            b"{\"email\":\"\xff\xfe@b.c\"}".to_vec(),
            "bad_request",
        ),
        ("register", deep.into_bytes(), "bad_request"),
        ("register", huge.into_bytes(), "payload_too_large"),
        ("frobnicate", b"{}".to_vec(), "unknown_operation"),
        ("", b"{}".to_vec(), "unknown_operation"),
        ("Login", b"{}".to_vec(), "unknown_operation"),
    ];
    for (op, body, code) in cases {
        let reply = env.client.call_raw(op, &body, T).await.unwrap();
        assert_eq!(
            reply_code(&reply).as_deref(),
            Some(code),
            "{op} {:?} → {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            String::from_utf8_lossy(&reply)
        );
    }
    // The wrongly typed password is not echoed back.
    let reply = env
        .client
        .call_raw("login", br#"{"email":"a@b.c","password":987654321}"#, T)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&reply).contains("987654321"));
    env.client.ping().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_nobody_can_be_answered_about_are_dead_lettered_with_the_reason() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("ping", b"{}".to_vec(), "missing_reply_to"),
        ("login", b"{not json".to_vec(), "malformed"),
        ("frobnicate", b"{}".to_vec(), "unknown_operation"),
        ("register", vec![b' '; 100_000], "malformed"),
        (
            "register",
            b"{\"email\":\"\xff\xfe\"}".to_vec(),
            "malformed",
        ),
        (
            "register",
            format!("{}1{}", "[".repeat(300), "]".repeat(300)).into_bytes(),
            "malformed",
        ),
        // Well-formed JSON of the wrong shape is not malformed: only the reply_to is missing.
        ("login", br#"{"email":42}"#.to_vec(), "missing_reply_to"),
    ];
    let count = cases.len() as u64;
    for (op, body, reason) in cases {
        raw.publish(op, &body, BasicProperties::default()).await;
        let d = Raw::next(&mut dead).await;
        let h = d.properties.headers().clone().expect("headers");
        let got = h.inner().get(headers::DEAD_LETTER_REASON).cloned();
        assert_eq!(got, Some(AMQPValue::LongString(reason.into())), "{op}");
        let key = h.inner().get(headers::ORIGINAL_ROUTING_KEY).cloned();
        assert_eq!(key, Some(AMQPValue::LongString(op.into())));
        if body.len() > authq_worker::redact::MAX_KEPT_BODY {
            let note = format!(
                "[dropped: a body of {} bytes, over the dead-letter limit of {} bytes]",
                body.len(),
                authq_worker::redact::MAX_KEPT_BODY
            );
            assert_eq!(String::from_utf8_lossy(&d.data), note, "{op}");
        } else if reason == "malformed" {
            // Not parsed: replaced whole by a note of its size (it may hold a secret).
            let note = format!(
                "[redacted: a body of {} bytes that is not valid JSON]",
                body.len()
            );
            assert_eq!(String::from_utf8_lossy(&d.data), note, "{op}");
        } else {
            assert_eq!(d.data, body);
        }
    }
    env.metrics_when(|m| m.dead_lettered == count).await;
    env.client.ping().await.unwrap();
    assert_tubes_empty(&env, &raw).await;
    env.stop().await;
}

/// Every tube of the environment is empty (nothing stuck, nothing redelivered in a loop).
async fn assert_tubes_empty(env: &TestEnv, raw: &Raw) {
    for tube in authq_protocol::Tube::ALL {
        let name = format!("{}.{tube}", env.config.namespace);
        assert_eq!(raw.depth(&name).await, 0, "{name} is empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_message_among_a_thousand_costs_only_itself() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    let good = |i: usize| {
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(i.to_string().into())
    };
    for i in 0..500 {
        raw.publish("check", br#"{"session":"nope"}"#, good(i))
            .await;
    }
    // Poison: garbage on the same tube, with nobody to answer.
    raw.publish("check", b"\xff{{{", BasicProperties::default())
        .await;
    for i in 500..1000 {
        raw.publish("check", br#"{"session":"nope"}"#, good(i))
            .await;
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let r = Raw::next(&mut replies).await;
        assert_eq!(reply_code(&r.data).as_deref(), Some("session_invalid"));
        answered.insert(r.properties.correlation_id().clone().unwrap().to_string());
    }
    assert_eq!(answered.len(), 1000, "a thousand answered, each once");
    let d = Raw::next(&mut dead).await;
    assert_eq!(
        String::from_utf8_lossy(&d.data),
        "[redacted: a body of 4 bytes that is not valid JSON]"
    );
    let m = env.metrics_when(|m| m.dead_lettered == 1).await;
    assert_eq!(m.received, 1001);
    assert_tubes_empty(&env, &raw).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_costs_its_own_message_only() {
    let env = TestEnv::start_with(|c| {
        // One consumer on the account tube holds the panicking request and the others.
        let account = c.tubes.get_mut(&authq_protocol::Tube::Account).unwrap();
        account.consumers = 1;
        account.prefetch = 16;
        // start_reset is limited per email (spam limit): not what this test is about.
        c.limits.reset_per_email = 100;
    })
    .await;
    env.worker().faults().arm(
        authq_worker::faults::FaultPoint::Panic,
        authq_protocol::Operation::Register,
    );
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    let props = |cid: String| {
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(cid.into())
            // start_reset is administrative: the broker-validated caller must be listed.
            .with_user_id(crate::harness::amqp_user().into())
    };
    for i in 0..20 {
        raw.publish(
            "start_reset",
            br#"{"email":"x@example.com"}"#,
            props(format!("r{i}")),
        )
        .await;
    }
    raw.publish(
        "register",
        br#"{"email":"p@example.com"}"#,
        props("panic".into()),
    )
    .await;
    for i in 20..40 {
        raw.publish(
            "start_reset",
            br#"{"email":"x@example.com"}"#,
            props(format!("r{i}")),
        )
        .await;
    }
    let mut ok = 0;
    let mut internal = Vec::new();
    for _ in 0..41 {
        let r = Raw::next(&mut replies).await;
        let cid = r.properties.correlation_id().clone().unwrap().to_string();
        match reply_code(&r.data) {
            None => ok += 1,
            Some(code) => internal.push((cid, code)),
        }
    }
    assert_eq!(ok, 40, "every other request on the consumer was answered");
    assert_eq!(internal, [("panic".to_owned(), "internal".to_owned())]);
    let d = Raw::next(&mut dead).await;
    let reason = d.properties.headers().clone().unwrap();
    assert_eq!(
        reason.inner().get(headers::DEAD_LETTER_REASON).cloned(),
        Some(AMQPValue::LongString("handler_panicked".into()))
    );
    // The worker keeps running, and the next register works.
    env.client.register("p@example.com").await.unwrap();
    assert_tubes_empty(&env, &raw).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_dropped_without_reply() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    let mut past = FieldTable::default();
    past.insert(
        headers::DEADLINE.into(),
        AMQPValue::LongLongInt(authq_worker::clock::system_now_ms() - 1_000),
    );
    let props = |cid: &str| {
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(cid.into())
    };
    raw.publish(
        "register",
        br#"{"email":"late@example.com"}"#,
        props("late").with_headers(past),
    )
    .await;
    env.metrics_when(|m| m.expired == 1).await;
    raw.publish("ping", b"{}", props("on-time")).await;
    let first = Raw::next(&mut replies).await;
    assert_eq!(
        first
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("on-time"),
        "the expired request got no reply"
    );
    let m = env.metrics();
    assert_eq!(m.expired, 1);
    assert_eq!(m.store_writes, 0, "no side effect");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_carry_the_request_correlation_id_and_content_type() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    raw.publish(
        "ping",
        b"{}",
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id("abc-123".into()),
    )
    .await;
    let reply = Raw::next(&mut replies).await;
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("abc-123")
    );
    assert_eq!(
        reply.properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(reply.data, br#"{"status":"ok","data":{}}"#);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_expire_while_queued_are_never_processed() {
    let mut env = TestEnv::start().await;
    env.active_user("late@example.com", "correct horse battery")
        .await;
    env.stop_worker().await;
    let raw = env.raw().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    let in_a_minute = env.deadline_clock.now_ms() + 60_000;
    let props = |cid: &str, deadline: i64| {
        let mut h = FieldTable::default();
        h.insert(headers::DEADLINE.into(), AMQPValue::LongLongInt(deadline));
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(cid.into())
            .with_headers(h)
    };
    let login = br#"{"email":"late@example.com","password":"correct horse battery"}"#;
    for i in 0..5 {
        raw.publish("login", login, props(&format!("login{i}"), in_a_minute))
            .await;
        let register = format!(r#"{{"email":"r{i}@example.com"}}"#);
        raw.publish(
            "register",
            register.as_bytes(),
            props(&format!("reg{i}"), in_a_minute),
        )
        .await;
    }
    // Two minutes pass (on the deadline clock) while nobody consumes.
    env.deadline_clock.advance(Duration::from_secs(120));
    env.restart_worker().await;
    let m = env.metrics_when(|m| m.expired == 10).await;
    assert_eq!((m.argon2_runs, m.store_writes), (0, 0), "no side effect");
    raw.publish("ping", b"{}", props("alive", i64::MAX)).await;
    let first = Raw::next(&mut replies).await;
    assert_eq!(
        first
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("alive"),
        "no reply for the expired requests, and the worker goes on"
    );
    assert_eq!(env.count("users"), 1);
    env.stop().await;
}

/// The reason header of a dead letter.
fn dead_reason(d: &lapin::message::Delivery) -> Option<AMQPValue> {
    let h = d.properties.headers().clone().expect("headers");
    h.inner().get(headers::DEAD_LETTER_REASON).cloned()
}

const SECRET: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_broker_dead_letters_reaches_the_dead_letter_queue_redacted() {
    let mut env = TestEnv::start().await;
    env.stop_worker().await;
    let raw = env.raw().await;
    let ns = env.config.namespace.clone();
    let (reply_to, _replies) = raw.reply_queue().await;
    let login = format!(r#"{{"email":"ann@example.com","password":"{SECRET}"}}"#);
    let props = |cid: &str| {
        BasicProperties::default()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(cid.into())
    };
    // 1. A login whose `expiration` passes while it waits in the password tube.
    raw.publish(
        "login",
        login.as_bytes(),
        props("expires").with_expiration("1".into()),
    )
    .await;
    // 2. A login delivered past the delivery limit: each holder dies (its channel closes)
    // before acknowledging it.
    raw.publish("login", login.as_bytes(), props("crashes"))
        .await;
    let tube = format!("{ns}.password");
    let mut crashes = 0;
    for _ in 0..50 {
        let ch = raw.connection.create_channel().await.unwrap();
        let got = ch
            .basic_get(
                tube.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap();
        let _ = ch.close(200, "a crashing holder".into()).await;
        match got {
            Some(m)
                if m.properties.correlation_id().as_ref().map(|c| c.as_str())
                    == Some("crashes") =>
            {
                crashes += 1
            }
            Some(_) => {}
            None if crashes > 0 => break,
            None => {}
        }
    }
    raw.depth_reaches(&tube, 0).await; // both left the tube
    assert!(crashes > env.config.queues.delivery_limit as usize - 1);
    // With no worker running, they wait in the private quarantine, not in the public queue.
    raw.depth_reaches(&format!("{ns}.quarantine"), 2).await;
    assert_eq!(raw.depth(&format!("{ns}.dead-letter")).await, 0);

    let mut dead = raw.dead_letters().await;
    env.restart_worker().await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let d = Raw::next(&mut dead).await;
        let text = String::from_utf8_lossy(&d.data).into_owned();
        assert!(!text.contains(SECRET), "{text}");
        assert!(
            text.contains("[redacted]") && text.contains("ann@example.com"),
            "{text}"
        );
        let cid = d.properties.correlation_id().clone().unwrap().to_string();
        reasons.push((cid, dead_reason(&d)));
    }
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        [
            (
                "crashes".to_owned(),
                Some(AMQPValue::LongString("delivery_limit".into()))
            ),
            (
                "expires".to_owned(),
                Some(AMQPValue::LongString("expired".into()))
            ),
        ]
    );
    assert_eq!(env.metrics().argon2_runs, 0, "never processed");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_the_worker_cannot_parse_or_that_are_huge_are_dead_lettered_without_them() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    let utf16: Vec<u8> = format!(r#"{{"email":"ann@example.com","password":"{SECRET}"}}"#)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let huge = format!(
        r#"{{"email":"ann@example.com","password":"{SECRET}","x":"{}"}}"#,
        "a".repeat(16 * 1024 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Malformed JSON naming no field a byte search would find.
        (
            "login",
            format!(r#"{{"email":"a@b.c","pass\u0077ord":"{SECRET}""#).into_bytes(),
        ),
        ("login", utf16),
        ("login", huge.into_bytes()),
    ];
    for (op, body) in &cases {
        raw.publish(op, body, BasicProperties::default()).await;
        let d = Raw::next(&mut dead).await;
        assert_eq!(
            dead_reason(&d),
            Some(AMQPValue::LongString("malformed".into()))
        );
        assert!(d.data.len() < 200, "kept {} bytes", d.data.len());
        let text = String::from_utf8_lossy(&d.data).into_owned();
        assert!(!text.contains(SECRET) && !text.contains("horse"), "{text}");
    }
    env.stop().await;
}
