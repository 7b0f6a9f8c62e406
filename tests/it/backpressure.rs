//! Back-pressure: a full tube, an unroutable request and a blocked connection each end a call
//! with a clear error, never a hang.

use crate::harness::TestEnv;
use crate::private_broker::PrivateBroker;
use authq::ClientError;
use lapin::options::QueueDeleteOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tube_refuses_at_once_with_overloaded() {
    let mut env = TestEnv::start_with(|c| c.queues.max_length = 5).await;
    env.stop_worker().await;
    let raw = env.raw().await;
    let tube = format!("{}.session", env.config.namespace);
    // 20 calls, one after the other, into a tube that holds 5 and has no consumer. A quorum
    // queue applies its limit a little late (the publisher learns it from the queue), so the
    // test counts what the tube took rather than assuming exactly 5: every call the tube took
    // times out, every other one is refused at once with `overloaded`, before any timeout.
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
        accepted as usize,
        "only what the tube took timed out"
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
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_queue_takes_is_unroutable_at_once() {
    let mut env = TestEnv::start().await;
    env.stop_worker().await;
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
