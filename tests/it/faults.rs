//! Real faults: a broker restart under load, with the pool running throughout.

use crate::harness::TestEnv;
use crate::private_broker::PrivateBroker;
use authq::{Client, ClientError, ClientOptions};
use std::time::Duration;

/// Messages waiting in `queue`, on a fresh connection (the broker restarts in between); `None`
/// while the broker is down.
async fn depth(url: &str, queue: &str) -> Option<u32> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .ok()?;
    let raw = crate::harness::Raw {
        channel: conn.create_channel().await.ok()?,
        connection: conn,
        namespace: String::new(),
    };
    let n = raw.depth(queue).await;
    let _ = raw.connection.close(200, "".into()).await;
    Some(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_accepted_request_and_the_pool_reconnects_by_itself() {
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| {
        c.amqp_url = url.clone();
        // One consumer with a small prefetch: the backlog waits in the tube, not in the worker.
        let session = c.tubes.get_mut(&authq_protocol::Tube::Session).unwrap();
        session.consumers = 1;
        session.prefetch = 4;
    })
    .await;
    let ns = env.config.namespace.clone();
    let retrying = Client::connect_with(
        &url,
        ClientOptions::default()
            .namespace(ns.clone())
            // The calls are published before the restart and answered after it; each attempt
            // waits a third of this, long enough on a loaded machine that only the calls whose
            // reply queue died with the broker are published again.
            .timeout(Duration::from_secs(240))
            .attempts(3),
    )
    .await
    .unwrap();
    // A second deployment on the same broker whose worker is stopped: its call is in flight,
    // unanswered, when the broker goes down.
    let mut idle = TestEnv::start_with(|c| c.amqp_url = url.clone()).await;
    idle.stop_worker().await;
    let single = Client::connect_with(
        &url,
        ClientOptions::default()
            .namespace(idle.config.namespace.clone())
            .timeout(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let stranded = tokio::spawn(async move { single.ping().await });

    // The worker takes no request until the broker is back, so the whole backlog (all but the
    // few the consumer has prefetched) is in the tube when the broker stops, however fast or
    // slow this machine is.
    env.worker().faults().hold_deliveries(true);
    const CALLS: usize = 600;
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let client = retrying.clone();
            tokio::spawn(async move { client.ping().await })
        })
        .collect();
    let tube = format!("{ns}.session");
    let mut queued = 0;
    for _ in 0..600 {
        queued = depth(&url, &tube).await.unwrap_or(0);
        if queued as usize >= CALLS - 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        queued as usize >= CALLS - 4,
        "the backlog waits in the tube when the broker stops: {queued} of {CALLS}"
    );
    broker.stop_app();
    let lost = stranded.await.unwrap();
    assert!(
        matches!(lost, Err(ClientError::ConnectionLost)),
        "a call in flight fails at once: {lost:?}"
    );
    broker.start_app();
    env.worker().faults().hold_deliveries(false);

    let mut failed = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failed.push(e.to_string());
        }
    }
    println!(
        "broker restart: {CALLS} calls, {queued} queued at the restart, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "every call answered: {:?}",
        &failed[..failed.len().min(5)]
    );
    // The pool reconnected in-process, and every request queued at the restart was delivered
    // after it, besides the retry that answered its call (the reply queue of the first died
    // with the broker): none was lost. The counters move just after the effect.
    let m = env
        .metrics_when(|m| m.reconnects >= 1 && m.received >= u64::from(queued) + CALLS as u64)
        .await;
    assert!(m.reconnects >= 1, "the pool reconnected in-process: {m:?}");
    let drained = async {
        while depth(&url, &tube).await != Some(0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), drained)
        .await
        .expect("the backlog drained");
    env.stop().await;
    idle.stop().await;
}
