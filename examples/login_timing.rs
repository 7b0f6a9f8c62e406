//! Login time for an unknown email vs a known email with a wrong password, over the same number
//! of runs, with production argon2 parameters (OWASP: m = 19 MiB, t = 2, p = 1), against the
//! local broker. A measurement to read, not a test: it prints and asserts nothing about time.
//!
//! ```sh
//! cargo run --release --example login_timing -- 200
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use authq::{Client, ClientOptions};
use authq_worker::config::{Config, DEFAULT_AMQP_URL};
use authq_worker::{ManualClock, WorkerHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("AUTHQ_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    let config = Config {
        amqp_url: url.clone(),
        namespace: format!("authq-timing-{}", uuid::Uuid::new_v4().simple()),
        database: dir.path().join("authq.db").into(),
        queue_expires: Some(Duration::from_secs(300)),
        // Lockout off the measurement's path: every attempt must reach argon2.
        limits: authq_worker::config::Limits {
            login_failures: 100,
            login_window: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Config::default()
    };
    let worker = WorkerHandle::start_with_clock(config.clone(), Arc::new(ManualClock::new()))
        .await
        .unwrap();
    let client = Client::connect_with(
        &url,
        ClientOptions::default()
            .namespace(config.namespace.clone())
            .timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let reg = client.register("known@example.com").await.unwrap();
    client
        .confirm_registration(
            "known@example.com",
            reg.code.expose(),
            "correct horse battery",
        )
        .await
        .unwrap();

    let mut known = Vec::with_capacity(runs);
    let mut unknown = Vec::with_capacity(runs);
    // Interleaved, so drift in machine load hits both equally; a new email per unknown run and
    // the known account's lock cleared by a success every 50 runs keep the lockout out of it.
    for i in 0..runs {
        let t = Instant::now();
        let _ = client
            .login("known@example.com", "wrong password here")
            .await;
        known.push(t.elapsed());
        let t = Instant::now();
        let _ = client
            .login(&format!("unknown{i}@example.com"), "wrong password here")
            .await;
        unknown.push(t.elapsed());
        if i % 50 == 49 {
            client
                .login("known@example.com", "correct horse battery")
                .await
                .unwrap();
        }
    }
    let m = worker.metrics().snapshot();
    println!(
        "runs per path: {runs} (argon2 m=19456 KiB, t=2, p=1; argon2 runs: {})",
        m.argon2_runs
    );
    for (name, mut v) in [
        ("known email, wrong password", known),
        ("unknown email", unknown),
    ] {
        v.sort();
        let mean = v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap();
        let pct = |p: usize| v[(v.len() - 1) * p / 100];
        println!(
            "{name:>28}: mean {:>6.2} ms  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms",
            ms(mean),
            ms(pct(50)),
            ms(pct(90)),
            ms(pct(99))
        );
    }
    let _ = client.close().await;
    worker.shutdown().await.unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
