//! A three-node RabbitMQ cluster on loopback.
//!
//! - Quorum tubes are replicated on every node: when the node that leads them stops in the
//!   middle of a load of confirmed calls, every call is answered (after the client's retry with
//!   the same `message_id` where a reply was lost with its connection), none is done twice, and
//!   the pool serves again without a restart: the worker and the client both reconnect to a
//!   surviving node.
//! - The default session tube is transient, on one node: when that node stops, the checks
//!   queued there are lost, and each ends at once, even for a caller connected to another
//!   node (the worker that declares the tube anew sends a notice); the pool serves again.

use crate::harness::TestEnv;
use crate::private_broker::PrivateCluster;
use authq::{Client, ClientError, ClientOptions};
use authq_protocol::Tube;
use authq_worker::config::QueueType;
use std::time::Duration;

const PW: &str = "correct horse battery";

/// The type, leader and members of each queue, as the cluster reports them.
fn queues(cluster: &PrivateCluster, via: usize) -> Vec<serde_json::Value> {
    let out = cluster.nodes[via].ctl(&[
        "list_queues",
        "name",
        "type",
        "leader",
        "members",
        "--formatter",
        "json",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list_queues: {e}: {out}"))
}

/// The node that hosts a classic queue (each node lists its own with `--local`), skipping a
/// stopped one.
fn host_of(cluster: &PrivateCluster, queue: &str, stopped: Option<usize>) -> usize {
    (0..cluster.nodes.len())
        .filter(|&i| Some(i) != stopped)
        .find(|&i| {
            let out =
                cluster.nodes[i].ctl(&["list_queues", "--local", "name", "--formatter", "json"]);
            let local: Vec<serde_json::Value> =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("list_queues: {e}: {out}"));
            local.iter().any(|q| q["name"] == queue)
        })
        .unwrap_or_else(|| panic!("no node hosts {queue}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_node_that_leads_the_tubes_loses_no_confirmed_call_and_doubles_none() {
    let _turn = crate::private_broker::one_at_a_time();
    let cluster = tokio::task::block_in_place(|| PrivateCluster::start(3));
    let urls = cluster.amqp_urls();
    let env = TestEnv::start_with(|c| {
        c.amqp_url = urls.clone();
        // The session tube as a quorum queue too, as an operator may choose it.
        c.queues.tube_types.insert(Tube::Session, QueueType::Quorum);
    })
    .await;
    let ns = env.config.namespace.clone();

    // Every tube is a quorum queue with a member on each node.
    let listed = queues(&cluster, 1);
    let tube = |name: &str| {
        listed
            .iter()
            .find(|q| q["name"] == format!("{ns}.{name}"))
            .unwrap_or_else(|| panic!("no {name} tube in {listed:?}"))
            .clone()
    };
    for name in ["session", "password", "account"] {
        let q = tube(name);
        assert_eq!(q["type"], "quorum", "{q}");
        assert_eq!(q["members"].as_array().map(Vec::len), Some(3), "{q}");
    }
    let leader = tube("session")["leader"].as_str().unwrap().to_owned();
    assert_eq!(
        tube("password")["leader"],
        leader.as_str(),
        "one node leads both"
    );
    let doomed = cluster
        .nodes
        .iter()
        .position(|n| n.node_name() == leader)
        .expect("the leader is one of the cluster's nodes");

    // Users and a session first.
    const USERS: usize = 5;
    for i in 0..USERS {
        env.active_user(&format!("u{i}@example.com"), PW).await;
    }
    let session = env.login("u0@example.com", PW).await;

    // A client that retries (same message_id) when a reply is lost with its connection.
    let retrying = Client::connect_with(
        &urls,
        ClientOptions::default()
            .namespace(ns.clone())
            .timeout(Duration::from_secs(240))
            .attempts(3),
    )
    .await
    .unwrap();
    let (checks, logins, registers) = (600usize, 60usize, 30usize);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The worker takes no request until the node is gone, so the calls are really in the
    // tubes (and in the worker's prefetch) when it stops, however fast this machine is.
    env.worker().faults().hold_deliveries(true);
    let mut calls = Vec::new();
    for i in 0..checks + logins + registers {
        let (client, session, done) = (retrying.clone(), session.clone(), done.clone());
        calls.push(tokio::spawn(async move {
            let r = if i % 11 == 0 && i / 11 < logins {
                client
                    .login(&format!("u{}@example.com", i % USERS), PW)
                    .await
                    .map(|_| ())
            } else if i % 23 == 1 && i / 23 < registers {
                client
                    .register(&format!("new{i}@example.com"))
                    .await
                    .map(|_| ())
            } else {
                client.check(&session).await.map(|_| ())
            };
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r.map_err(|e| e.to_string())
        }));
    }
    // The leader stops while the calls wait in the tubes (read through a surviving node).
    let survivor = cluster.nodes[(doomed + 1) % 3].amqp_url();
    let raw = crate::harness::Raw::connect(&survivor, &ns).await;
    let mut queued = 0;
    for _ in 0..2400 {
        queued = raw.depth(&format!("{ns}.session")).await;
        if queued as usize + 2 * 64 >= checks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = raw.connection.close(200, "".into()).await;
    assert!(
        queued as usize + 2 * 64 >= checks,
        "the checks wait in the session tube: {queued}"
    );
    tokio::task::block_in_place(|| cluster.nodes[doomed].stop_app());
    env.worker().faults().hold_deliveries(false);

    let mut failed = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failed.push(e);
        }
    }
    let (logins_sent, registers_sent) = (
        (0..checks + logins + registers)
            .filter(|i| i % 11 == 0 && i / 11 < logins)
            .count(),
        (0..checks + logins + registers)
            .filter(|i| !(i % 11 == 0 && i / 11 < logins) && i % 23 == 1 && i / 23 < registers)
            .count(),
    );
    println!(
        "cluster, leader {doomed} stopped with {queued} checks queued: {} calls, {} failed; \
         {logins_sent} logins, {registers_sent} registers",
        checks + logins + registers,
        failed.len()
    );
    assert!(failed.is_empty(), "{:?}", &failed[..failed.len().min(5)]);
    // One effect per call: the retries were answered from the first outcome.
    assert_eq!(env.count("users"), (USERS + registers_sent) as i64);
    assert_eq!(env.count("sessions"), (1 + logins_sent) as i64);
    // The pool serves again, reconnected in-process.
    retrying.ping().await.unwrap();
    if doomed == 0 {
        // The worker's connection went to the first node listed, the one that stopped.
        let m = env.metrics_when(|m| m.reconnects >= 1).await;
        println!("worker reconnects: {}", m.reconnects);
    }
    env.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_node_of_the_transient_session_tube_ends_every_check_at_once_even_elsewhere() {
    let _turn = crate::private_broker::one_at_a_time();
    let cluster = tokio::task::block_in_place(|| PrivateCluster::start(3));
    // The worker lists node 0 first: it connects there, and the session tube (a classic
    // queue) is declared on the node of the connection that declares it.
    let env = TestEnv::start_with(|c| {
        c.amqp_url = cluster.amqp_urls();
        let session = c.tubes.get_mut(&Tube::Session).unwrap();
        session.consumers = 1;
        session.prefetch = 4;
    })
    .await;
    let ns = env.config.namespace.clone();
    let tube_name = format!("{ns}.session");
    let listed = queues(&cluster, 1);
    let tube = listed
        .iter()
        .find(|q| q["name"] == tube_name.as_str())
        .unwrap_or_else(|| panic!("no session tube in {listed:?}"));
    assert_eq!(tube["type"], "classic", "{tube}");
    let doomed = host_of(&cluster, &tube_name, None);
    let survivor = cluster.nodes[(doomed + 1) % 3].amqp_url();

    env.active_user("ann@example.com", PW).await;
    let session = env.login("ann@example.com", PW).await;
    // A caller on another node than the tube's, with one attempt and a long timeout: a call
    // that waited for a request lost with the tube would end in `Timeout`, minutes later.
    let client = Client::connect_with(
        &survivor,
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
    let raw = crate::harness::Raw::connect(&survivor, &ns).await;
    let mut queued = 0;
    for _ in 0..2400 {
        queued = raw.depth(&tube_name).await;
        if queued as usize >= CALLS - 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = raw.connection.close(200, "".into()).await;
    assert!(queued as usize >= CALLS - 4, "queued: {queued} of {CALLS}");
    tokio::task::block_in_place(|| cluster.nodes[doomed].stop_app());
    env.worker().faults().hold_deliveries(false);

    // Every call ends, answered or released by the notice: none waits for its timeout.
    let mut lost = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(reply) => assert_eq!(reply.user.email, "ann@example.com"),
            Err(ClientError::ConnectionLost) => lost += 1,
            Err(e) => panic!("a check ended in {e:?}, not a reply or ConnectionLost"),
        }
    }
    println!(
        "cluster, the session tube's node {doomed} stopped: {CALLS} checks, {lost} ended with it"
    );
    // The pool serves again, the tube declared on a surviving node.
    let reply = client.check(&session).await.expect("served again");
    assert_eq!(reply.user.email, "ann@example.com");
    let now = host_of(&cluster, &tube_name, Some(doomed));
    assert_ne!(now, doomed);
    env.stop().await;
    drop(cluster);
}
