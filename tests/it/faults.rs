//! Real faults: a broker restart under load, with the pool running throughout: on a quorum
//! tube no accepted request is lost; on the default transient session tube the requests go
//! with the broker, every call in flight ends at once, and the pool declares the tube again.

use crate::harness::TestEnv;
use crate::private_broker::PrivateBroker;
use authq::{Client, ClientError, ClientOptions};
use authq_protocol::Tube;
use authq_worker::config::QueueType;
use std::time::Duration;

const PW: &str = "correct horse battery";

/// Messages waiting in `queue`, on a fresh connection (the broker restarts in between); `None`
/// while the broker is down or the queue does not exist.
async fn depth(url: &str, queue: &str) -> Option<u32> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .ok()?;
    let declared = async {
        conn.create_channel()
            .await?
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..lapin::options::QueueDeclareOptions::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
    }
    .await;
    let _ = conn.close(200, "".into()).await;
    declared.ok().map(|q| q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_request_accepted_by_a_quorum_tube_and_the_pool_reconnects() {
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| {
        c.amqp_url = url.clone();
        // The session tube as a quorum queue, as an operator may choose it.
        c.queues.tube_types.insert(Tube::Session, QueueType::Quorum);
        // One consumer with a small prefetch: the backlog waits in the tube, not in the worker.
        let session = c.tubes.get_mut(&Tube::Session).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_ends_every_check_at_once_and_the_pool_declares_the_transient_tube_again()
{
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    // The default read path: a transient session tube.
    let env = TestEnv::start_with(|c| {
        c.amqp_url = url.clone();
        let session = c.tubes.get_mut(&Tube::Session).unwrap();
        session.consumers = 1;
        session.prefetch = 4;
    })
    .await;
    let ns = env.config.namespace.clone();
    let session = env.session("ann@example.com", PW).await;
    // One attempt and a long timeout: a call that waited for a request the broker lost would
    // end in `Timeout`, minutes later, instead of at once.
    let client = Client::connect_with(
        &url,
        ClientOptions::default()
            .namespace(ns.clone())
            .timeout(Duration::from_secs(240)),
    )
    .await
    .unwrap();
    env.worker().faults().hold_deliveries(true);
    const CALLS: usize = 200;
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let (client, session) = (client.clone(), session.clone());
            tokio::spawn(async move { client.check(&session).await })
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
    assert!(queued as usize >= CALLS - 4, "queued: {queued} of {CALLS}");
    broker.stop_app();
    // Every call ends now, answered or with its connection: none waits for its timeout.
    let mut lost = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(reply) => assert_eq!(reply.user.email, "ann@example.com"),
            Err(ClientError::ConnectionLost) => lost += 1,
            Err(e) => panic!("a check ended in {e:?}, not a reply or ConnectionLost"),
        }
    }
    println!("broker restart, transient session tube: {CALLS} checks, {lost} ConnectionLost");
    broker.start_app();
    env.worker().faults().hold_deliveries(false);

    // The pool reconnects in-process and declares the tube again (the restart deleted it);
    // the client reconnects on its next call, which is answered.
    env.metrics_when(|m| m.reconnects >= 1).await;
    let declared = async {
        while depth(&url, &tube).await.is_none_or(|n| n != 0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), declared)
        .await
        .expect("the session tube is declared again");
    let reply = client
        .check(&session)
        .await
        .expect("served after the restart");
    assert_eq!(reply.user.email, "ann@example.com");
    env.stop().await;
}
