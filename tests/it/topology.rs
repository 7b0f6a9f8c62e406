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
