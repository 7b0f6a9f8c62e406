//! The store under concurrent workers: what SQLite's single writer gives by construction must
//! also hold on PostgreSQL at READ COMMITTED. Every test here runs on both engines (the test
//! command runs the suite twice, the second time with `AUTHQ_TEST_STORE=postgres`), with two
//! worker pools on one namespace and one store, so requests race across workers.

use crate::harness::TestEnv;
use authq::ErrorCode;
use futures_util::future::join_all;
use std::time::Duration;

const PW: &str = "correct horse battery";
const ROUNDS: usize = 50;
const RACERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_uses_of_one_confirmation_code_give_exactly_one_success_each_round() {
    let env = TestEnv::start().await;
    let second = env.second_worker().await;
    for round in 0..ROUNDS {
        let email = format!("c{round}@example.com");
        let reg = env.client.register(&email).await.unwrap();
        let code = reg.code.expose().to_owned();
        let results = join_all((0..RACERS).map(|_| {
            let (client, email, code) = (env.client.clone(), email.clone(), code.clone());
            async move { client.confirm_registration(&email, &code, PW).await }
        }))
        .await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for lost in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(lost.code(), Some(ErrorCode::InvalidCode), "round {round}");
        }
    }
    println!("confirm: {ROUNDS} rounds of {RACERS}, one success each");
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_uses_of_one_reset_token_give_exactly_one_success_each_round() {
    let env = TestEnv::start_with(|c| c.limits.reset_per_email = RACERS as u32).await;
    let second = env.second_worker().await;
    for round in 0..ROUNDS {
        let email = format!("r{round}@example.com");
        env.active_user(&email, PW).await;
        let reset = env.client.start_reset(&email).await.unwrap();
        let token = reset.token.expose().to_owned();
        let results = join_all((0..RACERS).map(|i| {
            let (client, email, token) = (env.client.clone(), email.clone(), token.clone());
            async move {
                client
                    .complete_reset(&email, &token, &format!("brand new password {i}"))
                    .await
            }
        }))
        .await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
    }
    println!("reset: {ROUNDS} rounds of {RACERS}, one success each");
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_wrong_passwords_over_two_workers_run_argon2_at_most_the_threshold() {
    let env = TestEnv::start().await;
    let second = env.second_worker().await;
    env.active_user("ann@example.com", PW).await;
    let threshold = env.config.limits.login_failures;
    let before = env.metrics().argon2_runs + second.metrics().snapshot().argon2_runs;
    let results = join_all((0..50).map(|i| {
        let client = env.client.clone();
        async move {
            client
                .login("ann@example.com", &format!("wrong password {i}"))
                .await
        }
    }))
    .await;
    let after = env.metrics().argon2_runs + second.metrics().snapshot().argon2_runs;
    let refused = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .and_then(authq::ClientError::code)
                .is_some_and(|c| c == ErrorCode::TooManyAttempts)
        })
        .count();
    println!(
        "50 wrong passwords: {} argon2 runs (threshold {threshold}), {refused} refused unhashed",
        after - before
    );
    assert!(after - before <= u64::from(threshold), "{}", after - before);
    assert_eq!(refused as u64, 50 - (after - before));
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_retried_on_another_worker_gets_its_first_outcome_and_one_effect() {
    let env = TestEnv::start().await;
    let second = env.second_worker().await;
    for round in 0..20 {
        let body = format!(r#"{{"email":"m{round}@example.com"}}"#).into_bytes();
        let id = format!("retry-{round}");
        // Both deliveries race; with two pools consuming the tube, they usually land on
        // different workers.
        let replies = join_all((0..4).map(|_| {
            let (client, body, id) = (env.client.clone(), body.clone(), id.clone());
            async move {
                client
                    .call_raw_with_id("register", &body, Duration::from_secs(20), &id)
                    .await
                    .unwrap()
            }
        }))
        .await;
        assert!(
            replies.iter().all(|r| r == &replies[0]),
            "round {round}: every retry gets the first reply, byte for byte"
        );
        assert_eq!(
            env.count(&format!("users WHERE email_key = 'm{round}@example.com'")),
            1
        );
        assert_eq!(env.count(&format!("outcomes WHERE message_id = '{id}'")), 1);
    }
    // One effect each: one registration event per user, not one per delivery.
    assert_eq!(env.count("users"), 20);
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_address_and_its_case_variants_make_one_account() {
    // Every racer gets through the per-address spam limit: the race is the store's.
    let env = TestEnv::start_with(|c| c.limits.register_per_email = RACERS as u32).await;
    let second = env.second_worker().await;
    for round in 0..ROUNDS {
        let variants = [
            format!("v{round}@example.com"),
            format!("V{round}@example.com"),
            format!("v{round}@EXAMPLE.COM"),
            format!("V{round}@Example.Com"),
        ];
        let results = join_all((0..RACERS).map(|i| {
            let (client, email) = (env.client.clone(), variants[i % variants.len()].clone());
            async move { client.register(&email).await }
        }))
        .await;
        let ids: std::collections::BTreeSet<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.user_id.clone()))
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one user id for all: {results:?}"
        );
        assert_eq!(
            env.count(&format!("users WHERE email_key = 'v{round}@example.com'")),
            1,
            "round {round}"
        );
    }
    println!("register: {ROUNDS} rounds of {RACERS} (4 case variants), one account each");
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[test]
fn workers_starting_at_once_on_a_new_store_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::harness::TestStore::new(dir.path());
    let opened: Vec<_> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..6)
            .map(|_| s.spawn(|| authq_worker::store::Store::open(&store.location, 2)))
            .collect();
        starts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for o in &opened {
        assert!(o.is_ok(), "{:?}", o.as_ref().err());
    }
    // Every table is there once, at the current version: a raced migration would have failed
    // one of the openings above (a table created twice) or left the version behind.
    let version: i64 = crate::harness::run_on(&store.location, |tx| {
        tx.query_value(
            tx.dialect(
                "SELECT user_version FROM pragma_user_version",
                "SELECT max(version) FROM authq_schema",
            ),
            &[],
        )
    })
    .unwrap();
    assert_eq!(
        version,
        i64::from(authq_worker::store::migrations::SCHEMA_VERSION)
    );
    assert_eq!(store.count("users"), 0);
}
