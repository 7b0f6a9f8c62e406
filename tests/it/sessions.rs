//! Session lifetime: renewal, idle expiry, the absolute cap.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use std::time::Duration;

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_renews_a_session_past_the_renewal_point_only() {
    let env = TestEnv::start_with(|c| {
        c.sessions.idle_timeout = Duration::from_secs(3600);
        c.sessions.max_lifetime = Duration::from_secs(10 * 3600);
        c.sessions.renew_after = 0.5;
    })
    .await;
    let s = env.session("ann@example.com", PW).await;
    let first = env.client.check(&s).await.unwrap();
    assert!(!first.renewed);

    env.clock.advance(Duration::from_secs(20 * 60)); // a third of the window: no renewal
    let early = env.client.check(&s).await.unwrap();
    assert!(!early.renewed);
    assert_eq!(early.expires_at, first.expires_at);

    env.clock.advance(Duration::from_secs(20 * 60)); // two thirds: renewed to now + 1 h
    let renewed = env.client.check(&s).await.unwrap();
    assert!(renewed.renewed);
    let now = env.clock_now();
    assert!((renewed.expires_at - (now + 3_600_000)).abs() < 5_000);
    assert!(renewed.expires_at > first.expires_at);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires() {
    let env = TestEnv::start_with(|c| {
        c.sessions.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let s = env.session("ann@example.com", PW).await;
    env.clock.advance(Duration::from_secs(3601));
    assert_code(env.client.check(&s).await, ErrorCode::SessionInvalid);
    assert_code(env.client.logout(&s).await, ErrorCode::SessionInvalid);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_never_passes_the_absolute_lifetime() {
    let env = TestEnv::start_with(|c| {
        c.sessions.idle_timeout = Duration::from_secs(3600);
        c.sessions.max_lifetime = Duration::from_secs(2 * 3600);
        c.sessions.renew_after = 0.5;
    })
    .await;
    let s = env.session("ann@example.com", PW).await;
    let login_time = env.clock_now();
    // Keep the session busy: a check every 40 minutes renews it each time…
    for _ in 0..2 {
        env.clock.advance(Duration::from_secs(40 * 60));
        let c = env.client.check(&s).await.unwrap();
        assert!(c.expires_at <= login_time + 2 * 3_600_000 + 5_000);
    }
    // …but at 2 h 10 min it is over, however active.
    env.clock.advance(Duration::from_secs(50 * 60));
    assert_code(env.client.check(&s).await, ErrorCode::SessionInvalid);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_garbage_sessions_are_invalid() {
    let env = TestEnv::start().await;
    for token in ["", "nope", &"x".repeat(43), &"é".repeat(1000)] {
        assert_code(env.client.check(token).await, ErrorCode::SessionInvalid);
        assert_code(
            env.client.get_profile(token).await,
            ErrorCode::SessionInvalid,
        );
        assert_code(
            env.client.logout_all(token).await,
            ErrorCode::SessionInvalid,
        );
    }
    env.stop().await;
}
