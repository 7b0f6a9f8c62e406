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

/// `check`'s look-up on PostgreSQL runs through the async driver (`store::pg_reads`). When
/// PostgreSQL ends those connections (a restart, an administrator), no look-up fails: each
/// one the async path cannot answer is answered by the synchronous pool, and the async path
/// comes back by itself. Runs on PostgreSQL in both passes of the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_postgres_survives_the_end_of_its_async_connections() {
    use authq_worker::store::{NewSession, Renewal, Store, StoreLocation};
    use std::sync::Arc;

    struct Database(String);
    impl Drop for Database {
        fn drop(&mut self) {
            crate::harness::drop_postgres_database(&self.0);
        }
    }
    let db = Database(format!("authq_test_{}", uuid::Uuid::new_v4().simple()));
    let url = crate::harness::create_postgres_database(&db.0);
    let store = tokio::task::spawn_blocking(move || {
        let store = Store::open(&StoreLocation::Postgres(url), 4).expect("the store opens");
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
                     VALUES ('u', 'ann@example.com', 'ann@example.com', 'active', 0, 0)",
                    &[],
                )?;
                tx.create_session(&NewSession {
                    user_id: "u",
                    digest: &[7; 32],
                    now: 0,
                    expires_at: 1_000_000,
                    absolute_expires_at: 1_000_000,
                    session_id: &uuid::Uuid::new_v4().simple().to_string(),
                    user_agent: None,
                    client_ip: None,
                    limited: false,
                })?;
                // Idle-expired at 1,500 (for the batch below).
                tx.create_session(&NewSession {
                    user_id: "u",
                    digest: &[8; 32],
                    now: 0,
                    expires_at: 1_500,
                    absolute_expires_at: 1_000_000,
                    session_id: "s8",
                    user_agent: None,
                    client_ip: None,
                    limited: false,
                })
            })
            .expect("a user and a session");
        Arc::new(store)
    })
    .await
    .unwrap();
    let renewal = Renewal {
        renew_window_ms: 0,
        idle_timeout_ms: 0,
    };
    // One look-up as `check` makes it: the async path, else the synchronous pool; every one
    // must find the session. `true` when the async path answered.
    let look_up = async || match store.check_session_now(&[7; 32], 1, renewal).await {
        Some(found) => {
            assert_eq!(found.expect("no error").expect("live").user.id, "u");
            true
        }
        None => {
            let store = Arc::clone(&store);
            let found = tokio::task::spawn_blocking(move || {
                store.read(|tx| tx.check_session(&[7; 32], 1, renewal))
            })
            .await
            .unwrap();
            assert_eq!(found.expect("no error").expect("live").user.id, "u");
            false
        }
    };
    let (mut on_async, mut on_pool) = (0, 0);
    let mut count = |answered_async: bool| {
        if answered_async {
            on_async += 1
        } else {
            on_pool += 1
        }
        (on_async, on_pool)
    };
    // Bounded polling: the async connections are made in the background on first use.
    // Bounded polling until every async connection answers (64 in a row, round-robin).
    let (mut counts, mut in_a_row) = ((0, 0), 0);
    for _ in 0..5000 {
        let answered_async = look_up().await;
        counts = count(answered_async);
        in_a_row = if answered_async { in_a_row + 1 } else { 0 };
        if in_a_row >= 64 {
            break;
        }
    }
    assert!(
        in_a_row >= 64,
        "the async path never answered steadily: {counts:?}"
    );

    // Look-ups queued together share a query; each gets its own answer, held to its own `now`:
    // the live session, an unknown digest, a session live at 1 and expired at 2,000.
    let cases: Vec<([u8; 32], i64, bool)> = (0..600)
        .map(|i| match i % 4 {
            0 => ([7; 32], 1, true),
            1 => ([9; 32], 1, false),
            2 => ([8; 32], 1, true),
            _ => ([8; 32], 2_000, false),
        })
        .collect();
    let answers = futures_util::future::join_all(
        cases
            .iter()
            .map(|(digest, now, _)| store.check_session_now(digest, *now, renewal)),
    )
    .await;
    let mut answered = 0;
    for ((digest, now, live), answer) in cases.iter().zip(answers) {
        if let Some(found) = answer {
            let found = found.expect("no error");
            assert_eq!(found.is_some(), *live, "digest {} at {now}", digest[0]);
            answered += 1;
        }
    }
    assert!(
        answered >= 300,
        "{answered} of 600 answered by the async path"
    );

    // PostgreSQL ends every connection to the database (the async ones and the pool's).
    let admin = crate::harness::postgres_admin_url();
    let name = db.0.clone();
    let ended = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap()
        .len()
    })
    .await
    .unwrap();
    assert!(ended >= 2, "{ended} connections ended");

    // Every look-up still finds the session; some went to the pool while the async
    // connections were made anew, and then the async path answers again.
    let before = counts;
    for _ in 0..2000 {
        counts = count(look_up().await);
        if counts.1 > before.1 && counts.0 >= before.0 + 10 {
            break;
        }
    }
    assert!(
        counts.1 > before.1,
        "no look-up fell back to the pool: {counts:?}"
    );
    assert!(
        counts.0 >= before.0 + 10,
        "the async path never came back: {counts:?}"
    );
    let store = Arc::into_inner(store).expect("the last handle");
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .unwrap();
}
