//! Auth events: what a consumer bound to the events exchange sees, in order, and that a change
//! whose event could not be published while the broker was down is published once it is back.

use crate::harness::TestEnv;
use crate::private_broker::PrivateBroker;
use authq::Secret;
use authq_protocol::events::{Event, EventKind};
use authq_protocol::ops::UserRef;
use futures_util::StreamExt;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::time::Duration;

const PW: &str = "correct horse battery";

/// A queue bound to the events exchange with `patterns`, and a consumer on it.
pub(crate) async fn subscribe(env: &TestEnv, queue: &str, patterns: &[&str]) -> lapin::Consumer {
    let raw = env.raw().await;
    let mut expires = FieldTable::default();
    expires.insert(
        "x-expires".into(),
        lapin::types::AMQPValue::LongLongInt(600_000),
    );
    raw.channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            expires,
        )
        .await
        .unwrap();
    for p in patterns {
        raw.channel
            .queue_bind(
                queue.into(),
                format!("{}.events", env.config.namespace).as_str().into(),
                (*p).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let consumer = raw.consume(queue).await;
    std::mem::forget(raw); // the consumer lives as long as the test
    consumer
}

/// An event as a consumer reads it off the wire: its type and every field its `data` may
/// hold, each optional, so a test can assert both what is there and what is not.
#[derive(Debug)]
pub(crate) struct Seen {
    /// The event's `id`.
    pub id: String,
    /// The event's `version`.
    pub version: u32,
    /// The event's `type`.
    pub kind: EventKind,
    /// Its `data` object's fields.
    pub data: SeenData,
}

/// The fields an event's `data` may hold (`PROTOCOL.md`, "Events").
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeenData {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub reason: Option<String>,
    pub source: Option<String>,
    pub method: Option<String>,
    pub provider: Option<String>,
    pub detail: Option<String>,
    pub session_epoch: Option<u64>,
    pub sessions_ended: Option<u64>,
    pub session_ids: Option<Vec<String>>,
    pub code: Option<Secret>,
    pub token: Option<Secret>,
    pub expires_at: Option<i64>,
    pub services: Option<Vec<String>>,
    pub missing: Option<Vec<String>>,
    pub change: Option<String>,
    pub recovery_codes_left: Option<u64>,
    pub client_id: Option<String>,
}

/// The next event on `consumer` (bounded), with its routing key. It must decode as the typed
/// [`Event`] of its type (its `data` fits that type) and re-encode to the same bytes.
pub(crate) async fn next_event(consumer: &mut lapin::Consumer) -> (String, Seen) {
    let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("an event within 30 s")
        .expect("the consumer is open")
        .expect("a delivery");
    let event: Event = serde_json::from_slice(&d.data).expect("an event of a known type");
    assert_eq!(
        serde_json::to_vec(&event).unwrap(),
        d.data,
        "the typed event re-encodes to the bytes published"
    );
    assert_eq!(
        d.properties.message_id().as_ref().map(|m| m.to_string()),
        Some(event.id.clone()),
        "the message id is the event id"
    );
    let raw: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
    let data = serde_json::from_value(raw["data"].clone()).expect("known data fields");
    let seen = Seen {
        id: event.id.clone(),
        version: event.version,
        kind: event.kind(),
        data,
    };
    (d.routing_key.to_string(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_through_publishes_exactly_its_events_in_order() {
    let env = TestEnv::start().await;
    let queue = format!("{}.test-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["#"]).await;
    let c = &env.client;

    let reg = c.register("ann@example.com").await.unwrap();
    let user = c
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap()
        .user
        .id;
    let s1 = c.login("ann@example.com", PW).await.unwrap().session;
    c.login("ann@example.com", "wrong password")
        .await
        .unwrap_err();
    c.login("nobody@example.com", PW).await.unwrap_err();
    c.check(s1.expose()).await.unwrap(); // reads publish nothing
    c.logout(s1.expose()).await.unwrap();
    let s2 = c.login("ann@example.com", PW).await.unwrap().session;
    c.logout_all(s2.expose()).await.unwrap();
    c.start_reset("nobody@example.com").await.unwrap(); // a decoy: no event
    let reset = c.start_reset("ann@example.com").await.unwrap();
    c.complete_reset(
        "ann@example.com",
        reset.token.expose(),
        "another good password",
    )
    .await
    .unwrap();
    let s3 = c
        .login("ann@example.com", "another good password")
        .await
        .unwrap()
        .session;
    // Two "end everything" changes so far (logout_all, the reset): a gateway caching checks
    // sees the epoch in every check reply and in the events.
    assert_eq!(c.check(s3.expose()).await.unwrap().session_epoch, 2);
    c.change_password(s3.expose(), "another good password", PW)
        .await
        .unwrap();
    let by_id = || UserRef {
        user_id: Some(user.clone()),
        email: None,
    };
    c.suspend(by_id()).await.unwrap();
    c.unsuspend(by_id()).await.unwrap();
    c.delete_user(by_id()).await.unwrap();

    let expected = [
        ("secret.user.registered", EventKind::UserRegistered),
        ("user.confirmed", EventKind::UserConfirmed),
        ("auth.login.succeeded", EventKind::LoginSucceeded),
        ("auth.login.failed", EventKind::LoginFailed),
        ("auth.login.failed", EventKind::LoginFailed),
        ("session.ended", EventKind::SessionEnded),
        ("auth.login.succeeded", EventKind::LoginSucceeded),
        ("session.ended", EventKind::SessionEnded),
        (
            "secret.password.reset_requested",
            EventKind::PasswordResetRequested,
        ),
        ("password.changed", EventKind::PasswordChanged),
        ("auth.login.succeeded", EventKind::LoginSucceeded),
        ("password.changed", EventKind::PasswordChanged),
        ("user.suspended", EventKind::UserSuspended),
        ("user.unsuspended", EventKind::UserUnsuspended),
        ("user.deleted", EventKind::UserDeleted),
    ];
    let mut ids = std::collections::BTreeSet::new();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(next_event(&mut events).await);
    }
    for ((key, event), (want_key, want_kind)) in got.iter().zip(expected) {
        assert_eq!((key.as_str(), event.kind), (want_key, want_kind));
        assert!(ids.insert(event.id.clone()), "ids are unique");
        assert_eq!(event.version, 1);
    }
    let (_, registered) = &got[0];
    assert_eq!(
        registered.data.code.as_ref().map(|c| c.expose()),
        Some(reg.code.expose())
    );
    assert_eq!(registered.data.email.as_deref(), Some("ann@example.com"));
    let (_, wrong) = &got[3];
    assert_eq!(wrong.data.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(wrong.data.reason.as_deref(), Some("invalid_credentials"));
    let (_, unknown) = &got[4];
    assert_eq!(unknown.data.user_id, None, "an unknown email has no user");
    let (_, reset_event) = &got[8];
    assert_eq!(
        reset_event.data.token.as_ref().map(|t| t.expose()),
        Some(reset.token.expose())
    );
    assert_eq!(
        reset_event.data.expires_at,
        Some(reset.expires_at),
        "the token's expiry, as the reply said"
    );
    assert_eq!(got[7].1.data.sessions_ended, Some(1));
    let epochs: Vec<Option<u64>> = [5, 7, 9, 11, 12, 14]
        .iter()
        .map(|&i| got[i].1.data.session_epoch)
        .collect();
    assert_eq!(
        epochs,
        [None, Some(1), Some(2), Some(3), Some(4), Some(5)],
        "logout ends one session only; every change that ends them all moves the epoch"
    );
    // Nothing more: the outbox is empty once every event was confirmed.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.next())
            .await
            .is_err(),
        "no extra event"
    );
    env.metrics_when(|_| env.count("outbox") == 0).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_while_the_broker_is_down_goes_out_when_it_is_back() {
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| c.amqp_url = url.clone()).await;
    let queue = format!("{}.test-events", env.config.namespace);
    drop(subscribe(&env, &queue, &["user.deleted"]).await);
    let user = env.active_user("bob@example.com", PW).await;

    // The worker takes delete_user and commits it; its event is still in the outbox when the
    // broker stops.
    env.worker().faults().hold_relay(true);
    env.client
        .delete_user(UserRef {
            user_id: Some(user.clone()),
            email: None,
        })
        .await
        .unwrap();
    assert_eq!(env.count("outbox WHERE routing_key = 'user.deleted'"), 1);
    broker.stop_app();
    env.worker().faults().hold_relay(false);
    broker.start_app();

    let mut events = subscribe(&env, &queue, &[]).await;
    let (key, event) = next_event(&mut events).await;
    assert_eq!(key, "user.deleted");
    assert_eq!(event.data.user_id.as_deref(), Some(user.as_str()));
    env.metrics_when(|_| env.count("outbox") == 0).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_cascade_completes_when_every_service_acknowledged() {
    let env = TestEnv::start_with(|c| {
        c.deletion.services = vec!["billing".into(), "mailer".into()];
    })
    .await;
    let queue = format!("{}.test-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["user.deleted", "user.deletion_completed"]).await;
    let user = env.active_user("del@example.com", PW).await;
    let c = &env.client;
    c.delete_user(UserRef {
        user_id: Some(user.clone()),
        email: None,
    })
    .await
    .unwrap();
    let (_, deleted) = next_event(&mut events).await;
    assert_eq!(deleted.kind, EventKind::UserDeleted);
    assert_eq!(
        deleted.data.services,
        Some(vec!["billing".to_owned(), "mailer".to_owned()])
    );

    let status = c.deletion_status(&user).await.unwrap();
    assert_eq!((status.acknowledged.len(), status.pending.len()), (0, 2));
    let status = c.deletion_done(&user, "billing").await.unwrap();
    assert_eq!(status.acknowledged, ["billing"]);
    assert_eq!(status.pending, ["mailer"]);
    assert_eq!(status.completed_at, None);
    crate::harness::assert_code(
        c.deletion_done(&user, "crm").await,
        authq::ErrorCode::BadRequest,
    );
    crate::harness::assert_code(
        c.deletion_done("no-such-user", "billing").await,
        authq::ErrorCode::NotFound,
    );
    let done = c.deletion_done(&user, "mailer").await.unwrap();
    assert!(done.pending.is_empty() && done.completed_at.is_some());
    // A repeated receipt changes nothing.
    assert_eq!(c.deletion_done(&user, "billing").await.unwrap(), done);

    let (key, completed) = next_event(&mut events).await;
    assert_eq!(key, "user.deletion_completed");
    assert_eq!(completed.data.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(completed.data.missing, Some(Vec::new()));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_cascade_times_out_naming_the_services_that_did_not_acknowledge() {
    let env = TestEnv::start_with(|c| {
        c.deletion.services = vec!["billing".into(), "mailer".into()];
        c.deletion.deadline = Duration::from_secs(3600);
        c.purge_interval = Duration::from_millis(50);
    })
    .await;
    let queue = format!("{}.test-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["user.deletion_completed"]).await;
    let user = env.active_user("late@example.com", PW).await;
    env.client
        .delete_user(UserRef {
            user_id: Some(user.clone()),
            email: None,
        })
        .await
        .unwrap();
    env.client.deletion_done(&user, "billing").await.unwrap();
    env.clock.advance(Duration::from_secs(2 * 3600));
    let (_, completed) = next_event(&mut events).await;
    assert_eq!(completed.data.services, Some(vec!["billing".to_owned()]));
    assert_eq!(completed.data.missing, Some(vec!["mailer".to_owned()]));
    let status = env.client.deletion_status(&user).await.unwrap();
    assert!(status.completed_at.is_some());
    assert_eq!(status.pending, ["mailer"]);
    env.stop().await;
}

/// Waits (bounded) until `user` is, or is not, in the Redis set `key`.
async fn wait_membership(
    conn: &redis::aio::MultiplexedConnection,
    key: &str,
    user: &str,
    expected: bool,
) {
    for _ in 0..400 {
        let is = redis::cmd("SISMEMBER")
            .arg(key)
            .arg(user)
            .query_async::<bool>(&mut conn.clone())
            .await
            .unwrap();
        if is == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{user} never became {} the Redis set",
        if expected { "part of" } else { "absent from" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_set_of_suspended_users_follows_suspend_and_unsuspend() {
    let redis_url = std::env::var("AUTHQ_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let mut env = TestEnv::start_with(|c| c.redis_url = Some(redis_url.clone())).await;
    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 127.0.0.1:6379 (AUTHQ_TEST_REDIS_URL): is it running?");
    let key = format!("{}:suspended", env.config.namespace);
    let ann = env.active_user("ann@example.com", PW).await;
    let bob = env.active_user("bob@example.com", PW).await;
    let by_id = |id: &str| UserRef {
        user_id: Some(id.to_owned()),
        email: None,
    };
    env.client.suspend(by_id(&ann)).await.unwrap();
    env.client.suspend(by_id(&bob)).await.unwrap();
    wait_membership(&conn, &key, &ann, true).await;
    wait_membership(&conn, &key, &bob, true).await;
    env.client.unsuspend(by_id(&ann)).await.unwrap();
    wait_membership(&conn, &key, &ann, false).await;
    env.client.delete_user(by_id(&bob)).await.unwrap();
    wait_membership(&conn, &key, &bob, false).await;
    // A restarted worker rebuilds the set from the store: a stale member goes.
    redis::cmd("SADD")
        .arg(&key)
        .arg("stale-id")
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    env.stop_worker().await;
    env.restart_worker().await;
    wait_membership(&conn, &key, "stale-id", false).await;
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_name_their_source_and_a_lockout_is_an_event_too() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 2).await;
    let queue = format!("{}.test-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["auth.login.failed"]).await;
    let user = env.active_user("kim@example.com", PW).await;
    let attempt = authq_protocol::ops::LoginRequest {
        email: "kim@example.com".into(),
        password: "not the password".into(),
        client_ip: Some("203.0.113.7".into()),
        user_agent: None,
    };
    for _ in 0..2 {
        crate::harness::assert_code(
            env.client.call(&attempt).await,
            authq::ErrorCode::InvalidCredentials,
        );
    }
    crate::harness::assert_code(
        env.client.call(&attempt).await,
        authq::ErrorCode::TooManyAttempts,
    );
    for reason in [
        "invalid_credentials",
        "invalid_credentials",
        "too_many_attempts",
    ] {
        let (_, e) = next_event(&mut events).await;
        assert_eq!(e.data.reason.as_deref(), Some(reason));
        assert_eq!(e.data.source.as_deref(), Some("203.0.113.7"));
        let who = if reason == "too_many_attempts" {
            None
        } else {
            Some(user.as_str())
        };
        assert_eq!(e.data.user_id.as_deref(), who, "a lockout looks nobody up");
    }
    env.stop().await;
}
