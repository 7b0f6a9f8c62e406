//! Policies that can refuse a login, like an `on_auth` trigger: the deny-list, and an external
//! hook asked over the broker that may deny with its reason, fail open or fail closed.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq_protocol::events::EventKind;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

const PW: &str = "correct horse battery";

/// A consumer of `env`'s `auth.login.failed` events, bound before the calls.
async fn failed_logins(env: &TestEnv) -> lapin::Consumer {
    let queue = format!("{}.test-failed", env.config.namespace);
    crate::events::subscribe(env, &queue, &["auth.login.failed"]).await
}

async fn next_event(consumer: &mut lapin::Consumer) -> crate::events::Seen {
    crate::events::next_event(consumer).await.1
}

/// Answers the policy-hook questions arriving on `questions` on `channel`, until the consumer
/// ends: denies `bad@example.com` with a reason, allows every other login. Returns how many
/// questions it answered.
pub(crate) fn answer_hook(
    channel: lapin::Channel,
    mut questions: lapin::Consumer,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&asked);
    tokio::spawn(async move {
        while let Some(Ok(d)) = questions.next().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let q: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
            assert_eq!(q["event"], "login");
            let answer = if q["email"] == "bad@example.com" {
                serde_json::json!({"allow": false, "reason": "account under review"})
            } else {
                serde_json::json!({"allow": true})
            };
            let props = BasicProperties::default()
                .with_correlation_id(d.properties.correlation_id().clone().unwrap());
            channel
                .basic_publish(
                    "".into(),
                    d.properties.reply_to().clone().unwrap(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(&answer).unwrap(),
                    props,
                )
                .await
                .unwrap();
        }
    });
    asked
}

/// Serves the policy hook on `queue` ([`answer_hook`]).
async fn serve_hook(env: &TestEnv, queue: &str) {
    let raw = env.raw().await;
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    raw.channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let requests = raw
        .channel
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
        .unwrap();
    answer_hook(raw.channel.clone(), requests);
    std::mem::forget(raw); // the connection lives as long as the test
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deny_list_refuses_logins_and_registrations_it_names() {
    let env = TestEnv::start_with(|c| {
        c.policy.deny = vec!["@blocked.example".into(), "eve@example.com".into()];
    })
    .await;
    env.active_user("eve@example.com", PW).await;
    env.active_user("ann@sub.blocked.example", PW).await;
    let mut failed = failed_logins(&env).await;
    assert_code(
        env.client.login("eve@example.com", PW).await,
        ErrorCode::PolicyDenied,
    );
    let event = next_event(&mut failed).await;
    assert_eq!(event.kind, EventKind::LoginFailed);
    assert_eq!(event.data.reason.as_deref(), Some("policy_denied"));
    assert!(event.data.detail.unwrap().contains("eve@example.com"));
    assert_code(
        env.client.login("ann@sub.blocked.example", PW).await,
        ErrorCode::PolicyDenied,
    );
    env.stop().await;

    let env = TestEnv::start_with(|c| {
        c.policy.deny = vec!["@blocked.example".into()];
        c.policy.on_register = true;
    })
    .await;
    assert_code(
        env.client.register("x@blocked.example").await,
        ErrorCode::PolicyDenied,
    );
    env.client.register("x@fine.example").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_hook_denies_a_login_with_its_reason() {
    let hook = format!("authq-test-hook-{}", uuid::Uuid::new_v4().simple());
    let env = TestEnv::start_with(|c| c.policy.hook_queue = Some(hook.clone())).await;
    serve_hook(&env, &hook).await;
    env.active_user("bad@example.com", PW).await;
    env.active_user("good@example.com", PW).await;
    let mut failed = failed_logins(&env).await;
    let err = env.client.login("bad@example.com", PW).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PolicyDenied));
    assert!(err.to_string().contains("account under review"), "{err}");
    let event = next_event(&mut failed).await;
    assert_eq!(event.data.detail.as_deref(), Some("account under review"));
    env.client.login("good@example.com", PW).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_does_not_answer_fails_closed_or_open_as_configured() {
    for fail_open in [false, true] {
        // Nobody serves this queue: every question goes unanswered.
        let hook = format!("authq-test-silent-{}", uuid::Uuid::new_v4().simple());
        let env = TestEnv::start_with(|c| {
            c.policy.hook_queue = Some(hook.clone());
            c.policy.hook_timeout = Duration::from_millis(300);
            c.policy.fail_open = fail_open;
        })
        .await;
        env.active_user("ann@example.com", PW).await;
        let login = env.client.login("ann@example.com", PW).await;
        if fail_open {
            login.expect("fail-open allows");
        } else {
            assert_code(login, ErrorCode::PolicyDenied);
        }
        env.stop().await;
    }
}
