//! Namespaces and routes: what lives where on the broker.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq_protocol::{Operation, Tube};
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

/// The tubes as the broker reports them: name → (type, arguments).
fn broker_queues(namespace: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "name",
            "type",
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
async fn tubes_are_bounded_quorum_queues_unless_an_operator_asks_for_classic() {
    let env = TestEnv::start_with(|c| {
        c.queues.classic_tubes.insert(Tube::Session);
        c.queues.max_length = 1234;
        c.queues.delivery_limit = 3;
    })
    .await;
    let ns = env.config.namespace.clone();
    let queues = broker_queues(&ns);
    for tube in Tube::ALL {
        let q = &queues[&format!("{ns}.{tube}")];
        let args = &q["arguments"];
        assert_eq!(args["x-overflow"], "reject-publish", "{tube}");
        assert_eq!(args["x-max-length"], 1234, "{tube}");
        assert_eq!(args["x-dead-letter-exchange"], format!("{ns}.quarantine"));
        if tube == Tube::Session {
            assert_eq!(q["type"], "classic");
            assert!(args.get("x-delivery-limit").is_none());
        } else {
            assert_eq!(q["type"], "quorum", "{tube}");
            assert_eq!(args["x-delivery-limit"], 3, "{tube}");
        }
    }
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
