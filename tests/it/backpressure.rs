//! Back-pressure: a full tube, an unroutable request and a blocked connection each end a call
//! with a clear error, never a hang.

use crate::harness::TestEnv;
use crate::private_broker::PrivateBroker;
use authq::ClientError;
use authq::protocol::{Operation, Tube};
use authq_worker::config::{QueueType, TubeConfig};
use lapin::options::QueueDeleteOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tube_refuses_at_once_with_overloaded() {
    let mut env = TestEnv::start_with(|c| c.queues.max_length = 5).await;
    env.stop_worker().await;
    // No reply yet has said that the session tube returns what it refuses: every check waits
    // for its confirm, and a full tube's nack refuses it.
    assert!(!env.client.sends_without_confirms(Operation::Check));
    twenty_checks_into_a_tube_that_holds_five(&env, 0).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tube_answers_the_reads_sent_without_confirms_at_once_as_overloaded() {
    let env = TestEnv::start_with(|c| {
        c.queues.max_length = 5;
        c.tubes.insert(
            Tube::Session,
            TubeConfig {
                consumers: 1,
                prefetch: 1,
            },
        );
    })
    .await;
    // One answered check teaches the client that the (transient) session tube answers what
    // it refuses: the next checks go without confirms, and writes keep theirs.
    let err = env.client.check("no such session").await.unwrap_err();
    assert!(matches!(err, ClientError::Server { .. }), "{err:?}");
    assert!(env.client.sends_without_confirms(Operation::Check));
    assert!(!env.client.sends_without_confirms(Operation::Logout));
    // The worker holds the one check its prefetch takes, the tube takes 5, and the tube
    // dead-letters the rest to the quarantine, where the same worker answers each
    // `authq.refused` at once.
    env.worker().faults().hold_deliveries(true);
    twenty_checks_into_a_tube_that_holds_five(&env, 1).await;
    env.worker().faults().hold_deliveries(false);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_quorum_session_tube_keep_their_confirms_and_its_nacks() {
    let mut env = TestEnv::start_with(|c| {
        c.queues.max_length = 5;
        c.queues.tube_types.insert(Tube::Session, QueueType::Quorum);
    })
    .await;
    // A quorum queue cannot return a refused publish: its replies do not say it does.
    env.client.check("no such session").await.unwrap_err();
    env.client.ping().await.unwrap();
    assert!(!env.client.sends_without_confirms(Operation::Check));
    assert!(!env.client.sends_without_confirms(Operation::Ping));
    env.stop_worker().await;
    twenty_checks_into_a_tube_that_holds_five(&env, 0).await;
    env.stop().await;
}

/// 20 checks, one after the other, into the session tube that holds 5, with `held` more held
/// by a worker that does not answer them. A quorum queue applies its limit a little late (the
/// publisher learns it from the queue), so this counts what the tube took rather than assuming
/// exactly 5: every call the tube (or the worker) took times out, every other one is refused at
/// once with `overloaded`, before any timeout.
async fn twenty_checks_into_a_tube_that_holds_five(env: &TestEnv, held: usize) {
    let raw = env.raw().await;
    let tube = format!("{}.session", env.config.namespace);
    let order = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for _ in 0..20 {
        let (client, ends) = (env.client.clone(), Arc::clone(&order));
        let call = tokio::spawn(async move {
            let outcome = client
                .call_raw("check", br#"{"session":"x"}"#, Duration::from_secs(5))
                .await;
            (ends.fetch_add(1, Ordering::SeqCst), outcome)
        });
        // Wait until this call is either refused or in the tube before the next one.
        let before = order.load(Ordering::SeqCst);
        let queued = raw.depth(&tube).await;
        for _ in 0..500 {
            if order.load(Ordering::SeqCst) > before || raw.depth(&tube).await > queued {
                break;
            }
            tokio::task::yield_now().await;
        }
        calls.push(call);
    }
    let accepted = raw.depth(&tube).await;
    let mut overloaded = Vec::new();
    let mut timed_out = Vec::new();
    for call in futures_util::future::join_all(calls).await {
        match call.unwrap() {
            (n, Err(ClientError::Overloaded)) => overloaded.push(n),
            (n, Err(ClientError::Timeout(_))) => timed_out.push(n),
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        timed_out.len(),
        accepted as usize + held,
        "only what the tube (and the worker) took timed out"
    );
    assert!(
        (5..=7).contains(&accepted),
        "the tube took {accepted} of 20"
    );
    assert_eq!(overloaded.len(), 20 - timed_out.len());
    assert!(
        overloaded.iter().max() < timed_out.iter().min(),
        "every refusal came before any timeout: {overloaded:?} / {timed_out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_queue_takes_is_unroutable_at_once() {
    let mut env = TestEnv::start().await;
    env.stop_worker().await;
    assert!(!env.client.sends_without_confirms(Operation::Check));
    unroutable_check(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_without_confirms_that_no_queue_takes_is_unroutable_too() {
    let mut env = TestEnv::start().await;
    env.client.ping().await.unwrap();
    env.client.check("no such session").await.unwrap_err();
    assert!(env.client.sends_without_confirms(Operation::Check));
    env.stop_worker().await;
    unroutable_check(env).await;
}

/// Deletes the session tube and the unrouted queue (no worker runs to declare them again): a
/// check is returned by the broker, and the call ends with `Unroutable` long before its 60 s.
async fn unroutable_check(env: TestEnv) {
    let raw = env.raw().await;
    let ns = env.config.namespace.clone();
    for queue in [format!("{ns}.session"), format!("{ns}.unrouted")] {
        raw.channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let err = env
        .client
        .call_raw("check", br#"{"session":"x"}"#, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Unroutable { operation } if operation == "check"),
        "{err:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_connection_ends_in_the_timeout_not_a_hang() {
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| c.amqp_url = url).await;
    env.client.ping().await.expect("the pool answers");
    // A memory alarm: the broker stops reading from every publishing connection.
    broker.ctl(&["set_vm_memory_high_watermark", "0.0000001"]);
    let err = env
        .client
        .call_raw("ping", b"{}", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    broker.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    // Once the alarm clears, calls go through again (the timed-out one is dropped by its
    // deadline, not answered late to nobody).
    let mut answered = false;
    for _ in 0..20 {
        if env.client.ping().await.is_ok() {
            answered = true;
            break;
        }
    }
    assert!(answered, "the pool answers again after the alarm");
    env.stop().await;
}
