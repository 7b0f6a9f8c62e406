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
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| {
        c.amqp_url = url.clone();
        // One consumer with a small prefetch: a backlog builds up in the tube.
        c.tubes
            .get_mut(&authq_protocol::Tube::Session)
            .unwrap()
            .consumers = 1;
        c.tubes
            .get_mut(&authq_protocol::Tube::Session)
            .unwrap()
            .prefetch = 4;
    })
    .await;
    let ns = env.config.namespace.clone();
    let retrying = Client::connect_with(
        &url,
        ClientOptions {
            namespace: ns.clone(),
            // Each attempt waits a third of this: long enough for the backlog to drain on a
            // loaded machine, so only the calls whose reply died with the broker are retried.
            timeout: Duration::from_secs(180),
            attempts: 3,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    // A second deployment on the same broker whose worker is stopped: its call is in flight,
    // unanswered, when the broker goes down.
    let mut idle = TestEnv::start_with(|c| c.amqp_url = url.clone()).await;
    idle.stop_worker().await;
    let single = Client::connect_with(
        &url,
        ClientOptions {
            namespace: idle.config.namespace.clone(),
            timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let stranded = tokio::spawn(async move { single.ping().await });

    const CALLS: usize = 3000;
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let client = retrying.clone();
            tokio::spawn(async move { client.ping().await })
        })
        .collect();
    let tube = format!("{ns}.session");
    let mut queued = 0;
    for _ in 0..400 {
        queued = depth(&url, &tube).await.unwrap_or(0);
        if queued >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        queued > 0,
        "a backlog waits in the tube when the broker stops"
    );
    broker.stop_app();
    let lost = stranded.await.unwrap();
    assert!(
        matches!(lost, Err(ClientError::ConnectionLost)),
        "a call in flight fails at once: {lost:?}"
    );
    broker.start_app();

    let mut failed = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failed.push(e.to_string());
        }
    }
    println!(
        "broker restart: {CALLS} calls, {} queued at the restart, {} failed",
        queued,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "every call answered: {:?}",
        &failed[..failed.len().min(5)]
    );
    let m = env.metrics();
    assert!(m.reconnects >= 1, "the pool reconnected in-process: {m:?}");
    assert_eq!(depth(&url, &tube).await, Some(0), "the backlog drained");
    env.stop().await;
    idle.stop().await;
}
