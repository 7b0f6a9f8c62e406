//! Stopping a worker: what it started, it finishes; what it had not started goes back to the
//! queue for the next worker.

use crate::harness::TestEnv;
use authq_worker::config::{HashConfig, HashParams, HashPriority};
use std::time::Duration;

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_loses_none() {
    let mut env = TestEnv::start_with(|c| {
        // Slow enough that a queue of logins builds up behind one hashing thread.
        c.hashing = HashConfig {
            threads: 1,
            params: HashParams {
                memory_kib: 8 * 1024,
                iterations: 2,
                parallelism: 1,
            },
            allow_insecure_params: true,
            max_params: HashParams::MAX_DEFAULT,
            priority: HashPriority::default(),
        };
    })
    .await;
    env.active_user("ann@example.com", PW).await;
    let before = env.metrics().received;

    let calls: Vec<_> = (0..30)
        .map(|_| {
            let client = env.client.clone();
            tokio::spawn(async move {
                client
                    .call_with_timeout(
                        &authq::protocol::ops::LoginRequest {
                            client_ip: None,
                            user_agent: None,
                            email: "ann@example.com".into(),
                            password: PW.into(),
                        },
                        Duration::from_secs(60),
                    )
                    .await
            })
        })
        .collect();

    // Stop once the worker is busy with the flood.
    for _ in 0..400 {
        if env.metrics().received >= before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = env.stop_worker().await;
    let started = last.received;
    assert!(started >= before + 3, "the worker took part of the flood");
    assert_eq!(
        last.replied_ok + last.replied_error + last.expired + last.dead_lettered,
        started,
        "every request the worker started was answered before it stopped"
    );

    // The rest waited in the broker; the next worker answers it.
    env.restart_worker().await;
    for call in calls {
        call.await.unwrap().expect("every login succeeds");
    }
    env.stop().await;
}
