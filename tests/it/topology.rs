//! Namespaces and routes: what lives where on the broker.

use crate::harness::{Raw, TestEnv, assert_code, reply_code};
use authq::ErrorCode;
use authq_protocol::{Operation, Tube};
use authq_worker::config::QueueType;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_deployments_apart_on_one_broker() {
    let a = TestEnv::start().await;
    let b = TestEnv::start().await;
    let session = a.session("ann@example.com", PW).await;
    a.client.check(&session).await.unwrap();
    assert_code(b.client.check(&session).await, ErrorCode::SessionInvalid);
    assert_code(
        b.client.login("ann@example.com", PW).await,
        ErrorCode::InvalidCredentials,
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_move_an_operation_to_another_tube() {
    let mut env = TestEnv::start_with(|c| {
        c.routes.insert(Operation::Login, Tube::Account);
    })
    .await;
    // Clients are unaffected.
    let s = env.session("ann@example.com", PW).await;
    env.client.check(&s).await.unwrap();

    // With the worker stopped, a login lands on the account tube, not the password tube.
    let raw = env.raw().await;
    let ns = env.config.namespace.clone();
    env.stop_worker().await;
    raw.publish_confirmed("login", br#"{"email":"ann@example.com","password":"x"}"#)
        .await;
    let depth = |tube: &'static str| {
        let (channel, ns) = (raw.channel.clone(), ns.clone());
        async move {
            channel
                .queue_declare(
                    format!("{ns}.{tube}").into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("the tube exists")
                .message_count()
        }
    };
    // The confirm means the message is in its queue.
    assert_eq!(depth("account").await, 1);
    assert_eq!(depth("password").await, 0);
    env.stop().await;
}

/// The tubes as the broker reports them: name → (type, durable, arguments).
fn broker_queues(namespace: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "name",
            "type",
            "durable",
            "arguments",
            "--formatter",
            "json",
        ])
        .output()
        .expect("running rabbitmqctl (deploy/ensure-rabbitmq.sh installs it)");
    assert!(out.status.success(), "rabbitmqctl list_queues failed");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter()
        .filter(|q| q["name"].as_str().unwrap().starts_with(namespace))
        .map(|mut q| {
            // rabbitmqctl lists arguments as [name, type, value] triples.
            let args: serde_json::Map<String, serde_json::Value> = q["arguments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a[0].as_str().unwrap().to_owned(), a[2].clone()))
                .collect();
            q["arguments"] = args.into();
            (q["name"].as_str().unwrap().to_owned(), q)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tubes_are_bounded_and_typed_per_tube_transient_session_quorum_others_by_default() {
    // The defaults: a transient session tube, quorum password and account tubes.
    let env = TestEnv::start_with(|c| {
        c.queues.max_length = 1234;
        c.queues.delivery_limit = 3;
    })
    .await;
    let ns = env.config.namespace.clone();
    let queues = broker_queues(&ns);
    for tube in Tube::ALL {
        let q = &queues[&format!("{ns}.{tube}")];
        let args = &q["arguments"];
        assert_eq!(args["x-max-length"], 1234, "{tube}");
        assert_eq!(args["x-dead-letter-exchange"], format!("{ns}.quarantine"));
        if tube == Tube::Session {
            assert_eq!(q["type"], "classic");
            assert_eq!(q["durable"], false, "the session tube is transient");
            assert!(args.get("x-delivery-limit").is_none());
            // It dead-letters what it refuses, and a worker answers it.
            assert_eq!(args["x-overflow"], "reject-publish-dlx");
        } else {
            assert_eq!(q["type"], "quorum", "{tube}");
            assert_eq!(q["durable"], true, "{tube}");
            assert_eq!(args["x-delivery-limit"], 3, "{tube}");
            assert_eq!(args["x-overflow"], "reject-publish", "{tube}");
        }
    }
    env.stop().await;

    // The choice is per tube and symmetrical: a quorum session tube, a classic (durable)
    // account tube, a transient password tube.
    let env = TestEnv::start_with(|c| {
        c.queues.tube_types.insert(Tube::Session, QueueType::Quorum);
        c.queues
            .tube_types
            .insert(Tube::Account, QueueType::Classic);
        c.queues
            .tube_types
            .insert(Tube::Password, QueueType::Transient);
    })
    .await;
    let ns = env.config.namespace.clone();
    let queues = broker_queues(&ns);
    let shape = |tube: &str| {
        let q = &queues[&format!("{ns}.{tube}")];
        (
            q["type"].as_str().unwrap().to_owned(),
            q["durable"].as_bool().unwrap(),
        )
    };
    assert_eq!(shape("session"), ("quorum".to_owned(), true));
    assert_eq!(shape("account"), ("classic".to_owned(), true));
    assert_eq!(shape("password"), ("classic".to_owned(), false));
    let overflow = |tube: &str| queues[&format!("{ns}.{tube}")]["arguments"]["x-overflow"].clone();
    assert_eq!(overflow("session"), "reject-publish");
    assert_eq!(overflow("account"), "reject-publish-dlx");
    assert_eq!(overflow("password"), "reject-publish-dlx");
    assert_eq!(env.client.ping().await.map(|_| ()).ok(), Some(()), "served");
    // The dead-letter queue and the quarantine are bounded: one caller cannot fill the broker
    // through them (the oldest are dropped first).
    for queue in ["dead-letter", "quarantine"] {
        let args = &queues[&format!("{ns}.{queue}")]["arguments"];
        assert_eq!(
            args["x-max-length"],
            authq_worker::topology::DEAD_LETTER_MAX_LENGTH,
            "{queue}"
        );
        assert_eq!(
            args["x-max-length-bytes"],
            authq_worker::topology::DEAD_LETTER_MAX_BYTES,
            "{queue}"
        );
        assert!(args.get("x-overflow").is_none(), "{queue}: drop-head");
    }
    env.stop().await;
}

/// The session tube is transient: a broker restart or the loss of its node deletes it. Until a
/// worker declares it again, a `check` goes to the unrouted queue, and the worker serves it
/// from there as its tube would have. The worker that declares it anew also tells the callers,
/// whose calls in flight for the tube's operations end at once (their requests may have been
/// lost with the tube). A worker whose tube vanished under its consumers reconnects and
/// declares it again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_published_while_the_session_tube_is_gone_is_served_and_the_tube_comes_back() {
    let mut env = TestEnv::start().await;
    let session = env.session("ann@example.com", PW).await;
    let raw = env.raw().await;
    let ns = env.config.namespace.clone();
    let tube = format!("{ns}.session");
    let delete_tube = || async {
        raw.channel
            .queue_delete(
                tube.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .unwrap()
    };

    // 1. No worker, no tube: a raw check (a caller without notices) and a client's check wait
    // in the unrouted queue.
    env.stop_worker().await;
    delete_tube().await;
    let (reply_to, mut replies) = raw.reply_queue().await;
    raw.publish(
        "check",
        serde_json::json!({ "session": session })
            .to_string()
            .as_bytes(),
        lapin::BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id("raw-1".into()),
    )
    .await;
    let client = env.client.clone();
    let waiting = {
        let session = session.clone();
        tokio::spawn(async move { client.check(&session).await })
    };
    raw.depth_reaches(&format!("{ns}.unrouted"), 2).await;
    env.restart_worker().await;
    // The raw check is answered from the unrouted queue…
    let reply = Raw::next(&mut replies).await;
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "raw-1"
    );
    assert_eq!(
        reply_code(&reply.data),
        None,
        "{}",
        String::from_utf8_lossy(&reply.data)
    );
    // …and the client's call ended when the restarted worker announced the new tube: it
    // cannot know whether its request was in the old tube, lost, or in the unrouted queue.
    assert!(
        matches!(
            waiting.await.unwrap(),
            Err(authq::ClientError::ConnectionLost)
        ),
        "released by the notice"
    );
    raw.depth_reaches(&tube, 0).await;
    env.client.check(&session).await.unwrap();

    // 2. The tube vanishes under a running worker's consumers: it reconnects, declares the
    // tube again and serves, in-process.
    let before = env.metrics().reconnects;
    delete_tube().await;
    env.metrics_when(|m| m.reconnects > before).await;
    raw.depth_reaches(&tube, 0).await;
    env.client.check(&session).await.unwrap();
    assert_eq!(
        env.metrics().replied_error,
        0,
        "nothing was refused on the way"
    );
    env.stop().await;
}
