//! Who is calling: replies go only to the caller's own destinations, and administrative
//! operations only to the RabbitMQ users the operator lists (validated `user-id`).

use crate::harness::{Raw, TestEnv, assert_code, reply_code};
use authq::ErrorCode;
use authq::protocol::names::headers;
use authq::protocol::ops::UserRef;
use lapin::BasicProperties;
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

const LOGIN: &[u8] = br#"{"email":"ann@example.com","password":"correct horse battery"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_never_sent_to_a_tube_or_another_service_s_queue() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", "correct horse battery")
        .await;
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    // Another service's queue, which a caller would like the worker to write into.
    let victim = format!("billing-{}", uuid::Uuid::new_v4().simple());
    raw.channel
        .queue_declare(
            victim.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let before = env.metrics();
    let targets = [
        format!("{}.session", env.config.namespace),
        format!("{}.dead-letter", env.config.namespace),
        format!("{}.reply.someone-else.1", env.config.namespace),
        victim.clone(),
    ];
    for target in &targets {
        raw.publish(
            "login",
            LOGIN,
            BasicProperties::default()
                .with_reply_to(target.as_str().into())
                .with_user_id("guest".into()),
        )
        .await;
        let d = Raw::next(&mut dead).await;
        let h = d.properties.headers().clone().expect("headers");
        assert_eq!(
            h.inner().get(headers::DEAD_LETTER_REASON).cloned(),
            Some(AMQPValue::LongString("forbidden_reply_to".into())),
            "{target}"
        );
        // Dead-lettered with the password redacted.
        assert!(!String::from_utf8_lossy(&d.data).contains("correct horse"));
    }
    let after = env.metrics();
    assert_eq!(after.argon2_runs, before.argon2_runs, "never processed");
    assert_eq!(
        after.replied_ok + after.replied_error,
        before.replied_ok + before.replied_error
    );
    let q = raw
        .channel
        .queue_declare(
            victim.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        q.message_count(),
        0,
        "nothing was written to the other service's queue"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_direct_reply_to_server_named_and_the_caller_s_own_named_queues() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    // Server-named (what the client library uses): exercised by every other test; here the
    // caller-named form `{ns}.reply.{user}.…`, under the validated user-id.
    let own = format!(
        "{}.reply.guest.{}",
        env.config.namespace,
        uuid::Uuid::new_v4().simple()
    );
    raw.channel
        .queue_declare(
            own.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = raw.consume(&own).await;
    raw.publish(
        "ping",
        b"{}",
        BasicProperties::default()
            .with_reply_to(own.as_str().into())
            .with_correlation_id("own".into())
            .with_user_id("guest".into()),
    )
    .await;
    let r = Raw::next(&mut replies).await;
    assert_eq!(r.data, br#"{"status":"ok","data":{}}"#);

    // Direct reply-to: consume the pseudo-queue on the publishing channel.
    let mut direct = raw.consume("amq.rabbitmq.reply-to").await;
    raw.publish(
        "ping",
        b"{}",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("direct".into()),
    )
    .await;
    let r = Raw::next(&mut direct).await;
    assert_eq!(r.data, br#"{"status":"ok","data":{}}"#);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_operations_need_a_listed_caller() {
    let env = TestEnv::start_with(|c| c.admin_callers = vec!["ops-team".into()]).await;
    env.active_user("ann@example.com", "correct horse battery")
        .await;
    let ann = || UserRef {
        user_id: None,
        email: Some("ann@example.com".into()),
    };
    // The test client is `guest`, which this worker does not list.
    assert_code(env.client.suspend(ann()).await, ErrorCode::Forbidden);
    assert_code(env.client.unsuspend(ann()).await, ErrorCode::Forbidden);
    assert_code(env.client.delete_user(ann()).await, ErrorCode::Forbidden);
    assert_code(
        env.client.start_reset("ann@example.com").await,
        ErrorCode::Forbidden,
    );
    // Without any user-id at all: forbidden too.
    let raw = env.raw().await;
    let (queue, mut replies) = raw.reply_queue().await;
    raw.publish(
        "suspend",
        br#"{"user":{"email":"ann@example.com"}}"#,
        BasicProperties::default()
            .with_reply_to(queue.as_str().into())
            .with_correlation_id("anonymous".into()),
    )
    .await;
    let r = Raw::next(&mut replies).await;
    assert_eq!(reply_code(&r.data).as_deref(), Some("forbidden"));
    // Ordinary operations are for every caller.
    env.login("ann@example.com", "correct horse battery").await;
    env.stop().await;

    // A listed caller may.
    let env = TestEnv::start().await; // lists the test's own user
    env.active_user("ann@example.com", "correct horse battery")
        .await;
    env.client.suspend(ann()).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cannot_forge_another_s_user_id() {
    let env = TestEnv::start_with(|c| c.admin_callers = vec!["ops-team".into()]).await;
    let raw = env.raw().await;
    let channel = raw.connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // The connection is `guest`; claiming to be `ops-team` makes the broker close the channel.
    let published = channel
        .basic_publish(
            env.config.namespace.as_str().into(),
            "suspend".into(),
            lapin::options::BasicPublishOptions::default(),
            br#"{"user":{"email":"ann@example.com"}}"#,
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_user_id("ops-team".into()),
        )
        .await;
    let confirmed = match published {
        Ok(confirm) => confirm.await.map(|c| c.is_ack()),
        Err(e) => Err(e),
    };
    assert!(
        !matches!(confirmed, Ok(true)),
        "the broker refused the forged user-id: {confirmed:?}"
    );
    let err = format!("{confirmed:?}");
    assert!(
        err.contains("PRECONDITION_FAILED")
            || err.contains("user_id")
            || !channel.status().connected(),
        "{err}"
    );
    assert_eq!(env.metrics().received, 0, "nothing reached the worker");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_correlation_id_is_refused_before_any_effect() {
    let env = TestEnv::start().await;
    let raw = env.raw().await;
    let (queue, mut replies) = raw.reply_queue().await;
    let before = env.metrics();
    for correlation in [None, Some("")] {
        let mut props = BasicProperties::default()
            .with_reply_to(queue.as_str().into())
            .with_user_id(crate::harness::amqp_user().into());
        if let Some(c) = correlation {
            props = props.with_correlation_id(c.into());
        }
        raw.publish("register", br#"{"email":"nocid@example.com"}"#, props)
            .await;
        let r = Raw::next(&mut replies).await;
        assert_eq!(reply_code(&r.data).as_deref(), Some("bad_request"));
        assert!(String::from_utf8_lossy(&r.data).contains("correlation_id"));
    }
    let after = env.metrics();
    assert_eq!(after.store_writes, before.store_writes, "nothing was done");
    assert_eq!(env.count("users"), 0, "no account was created");
    // With a correlation_id, the same request is done and answered with it.
    raw.publish(
        "register",
        br#"{"email":"nocid@example.com"}"#,
        BasicProperties::default()
            .with_reply_to(queue.as_str().into())
            .with_correlation_id("c1".into()),
    )
    .await;
    let r = Raw::next(&mut replies).await;
    assert_eq!(reply_code(&r.data), None);
    assert_eq!(
        r.properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("c1")
    );
    assert_eq!(env.count("users"), 1);
    env.stop().await;
}
