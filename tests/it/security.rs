//! The security guarantees of `SECURITY.md`, each proved against the real broker and a real
//! SQLite file: hashing, password policy, enumeration, codes, brute force.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq_worker::WorkerHandle;
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery";
const T: Duration = Duration::from_secs(20);

async fn raw_login(env: &TestEnv, email: &str, password: &str) -> Vec<u8> {
    let body =
        serde_json::to_vec(&serde_json::json!({"email": email, "password": password})).unwrap();
    env.client.call_raw("login", &body, T).await.unwrap()
}

fn code_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"]["code"].as_str().unwrap_or("ok").to_owned()
}

// ---- 1. Password hashing -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_argon2_parameters_rehashes_at_the_next_login_and_only_then() {
    let mut env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let before = env.metrics().argon2_runs;
    env.login("ann@example.com", PW).await;
    assert_eq!(
        env.metrics().argon2_runs - before,
        1,
        "unchanged policy: no rehash"
    );

    env.stop_worker().await;
    env.config.hashing.params.memory_kib = 128;
    env.restart_worker().await;
    env.login("ann@example.com", PW).await;
    assert_eq!(
        env.metrics().argon2_runs,
        2,
        "verify with the old parameters, then rehash"
    );
    let hash: String = env
        .db(|tx| tx.query_value("SELECT password_hash FROM users", &[]))
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=128,t=1,p=1$"), "{hash}");
    env.login("ann@example.com", PW).await;
    assert_eq!(env.metrics().argon2_runs, 3, "rehashed once; now current");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hash_beyond_the_bound_is_refused_without_running_argon2() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    // A planted hash that would take 4 GiB and a thousand passes to verify.
    env.db(|tx| {
        tx.execute(
            "UPDATE users SET password_hash = replace(replace(password_hash, 'm=64,', 'm=4194304,'), 't=1,', 't=1000,')",
            &[],
        )
    });
    let before = env.metrics().argon2_runs;
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::Internal,
    );
    assert_eq!(env.metrics().argon2_runs, before);
    env.stop().await;
}

// ---- 2. Password policy --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_at_registration_change_and_reset() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann.smith@example.com").await.unwrap();
    for weak in [
        "password1",
        "iloveyou",
        "Ann.Smith@Example.com",
        "ann.smith2024",
        "short",
    ] {
        assert_code(
            env.client
                .confirm_registration("ann.smith@example.com", reg.code.expose(), weak)
                .await,
            ErrorCode::WeakPassword,
        );
    }
    // Weak-password refusals cost no argon2 run and do not burn the code.
    assert_eq!(env.metrics().argon2_runs, 0);
    env.client
        .confirm_registration("ann.smith@example.com", reg.code.expose(), PW)
        .await
        .unwrap();
    let session = env.login("ann.smith@example.com", PW).await;
    assert_code(
        env.client.change_password(&session, PW, "qwerty123").await,
        ErrorCode::WeakPassword,
    );
    assert_code(
        env.client
            .change_password(&session, PW, "example.com.ann.smith")
            .await,
        ErrorCode::WeakPassword,
    );
    let reset = env
        .client
        .start_reset("ann.smith@example.com")
        .await
        .unwrap();
    assert_code(
        env.client
            .complete_reset("ann.smith@example.com", reset.token.expose(), "sunshine1")
            .await,
        ErrorCode::WeakPassword,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_passwords_cost_no_argon2_run() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let before = env.metrics().argon2_runs;
    // Over the policy's byte limit (1024) but under the body limit: refused before hashing.
    let long = "x".repeat(2000);
    assert_code(
        env.client.login("ann@example.com", &long).await,
        ErrorCode::InvalidCredentials,
    );
    // A megabyte never even reaches the decoder.
    let mega = "y".repeat(1 << 20);
    assert_code(
        env.client.login("ann@example.com", &mega).await,
        ErrorCode::PayloadTooLarge,
    );
    let reg = env.client.register("bob@example.com").await.unwrap();
    assert_code(
        env.client
            .confirm_registration("bob@example.com", reg.code.expose(), &long)
            .await,
        ErrorCode::WeakPassword,
    );
    assert_eq!(env.metrics().argon2_runs, before);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_compared_in_nfkc_form() {
    let env = TestEnv::start().await;
    // Precomposed "é" at registration, "e" + combining acute at login: one password.
    env.active_user("ann@example.com", "caf\u{e9} lantern ferry")
        .await;
    env.login("ann@example.com", "cafe\u{301} lantern ferry")
        .await;
    env.stop().await;
}

// ---- 3. No account enumeration -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_cost_one_argon2_run_each_and_read_the_same() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let r0 = env.metrics().argon2_runs;
    let wrong = raw_login(&env, "ann@example.com", "not the password").await;
    let r1 = env.metrics().argon2_runs;
    let unknown = raw_login(&env, "nobody@example.com", "not the password").await;
    let r2 = env.metrics().argon2_runs;
    assert_eq!(wrong, unknown, "byte-identical replies");
    assert_eq!((r1 - r0, r2 - r1), (1, 1), "one argon2 run on each path");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reset_reads_the_same_for_known_and_unknown_emails() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let t0 = env.clock_now();
    let known = env.client.start_reset("ann@example.com").await.unwrap();
    let unknown = env.client.start_reset("nobody@example.com").await.unwrap();
    let t1 = env.clock_now();
    assert_eq!(known.token.expose().len(), unknown.token.expose().len());
    let ttl = i64::try_from(env.config.codes.reset_ttl.as_millis()).unwrap();
    for r in [&known, &unknown] {
        assert!(
            (t0 + ttl..=t1 + ttl).contains(&r.expires_at),
            "same lifetime"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_reads_the_same_as_a_locked_unknown_email() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 3).await;
    env.active_user("ann@example.com", PW).await;
    for email in ["ann@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let r = raw_login(&env, email, "not the password").await;
            assert_eq!(code_of(&r), "invalid_credentials");
        }
    }
    let before = env.metrics().argon2_runs;
    let known = raw_login(&env, "ann@example.com", PW).await;
    let unknown = raw_login(&env, "nobody@example.com", PW).await;
    assert_eq!(
        known, unknown,
        "the lock does not tell a user from a stranger"
    );
    assert_eq!(code_of(&known), "too_many_attempts");
    assert_eq!(
        env.metrics().argon2_runs,
        before,
        "no argon2 run while locked"
    );
    env.stop().await;
}

// ---- 4. Tokens and codes -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dump_holds_only_keyed_digests_of_codes() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    let stored: Vec<u8> = env
        .db(|tx| tx.query_value("SELECT digest FROM codes", &[]))
        .unwrap();
    let code = reg.code.expose();
    // Not the code, not its plain SHA-256 (which a dump could be searched against: 10^8 codes).
    assert_ne!(stored, code.as_bytes());
    assert_ne!(stored, authq_worker::crypto::digest(code).to_vec());
    // It is the HMAC under the key that lives outside the database…
    // The code key derives from the server key, in its own file next to (not in) the database.
    let server =
        authq_worker::keys::ServerKey::load_or_create(&env.config.key_path().unwrap()).unwrap();
    let code_key = authq_worker::crypto::CodeKey::from_server_key(&server);
    let key = code_key.expose();
    let keyed = authq_worker::crypto::code_digest(key, "confirm", "ann@example.com", code);
    assert_eq!(stored, keyed.to_vec());
    // …and no other key gives it.
    let other = authq_worker::crypto::code_digest(&[0u8; 32], "confirm", "ann@example.com", code);
    assert_ne!(stored, other.to_vec());
    // The key is in no table of the database.
    let dump: Vec<Vec<u8>> = env.db(|tx| {
        tx.query_all(
            "SELECT digest FROM codes UNION ALL SELECT token_digest FROM sessions",
            &[],
            |r| r.get(0),
        )
    });
    assert!(dump.iter().all(|d| d.as_slice() != key));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_reset_token_give_exactly_one_success() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    let calls = (0..16).map(|i| {
        let client = env.client.clone();
        let token = reset.token.expose().to_owned();
        async move {
            client
                .complete_reset(
                    "ann@example.com",
                    &token,
                    &format!("quiet ferry number {i}"),
                )
                .await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_code(r, ErrorCode::InvalidCode);
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_bound_to_their_email_and_flow_and_limited_in_attempts() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let bob = env.client.register("bob@example.com").await.unwrap();
    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    // Ann's reset token does not confirm Bob, and Bob's code does not reset Ann.
    assert_code(
        env.client
            .confirm_registration("bob@example.com", reset.token.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    assert_code(
        env.client
            .complete_reset("ann@example.com", bob.code.expose(), "quiet ferry lantern")
            .await,
        ErrorCode::InvalidCode,
    );
    // Five wrong guesses destroy the reset token: the right one no longer works.
    for _ in 0..5 {
        assert_code(
            env.client
                .complete_reset("ann@example.com", "wrong-token", "quiet ferry lantern")
                .await,
            ErrorCode::InvalidCode,
        );
    }
    assert_code(
        env.client
            .complete_reset(
                "ann@example.com",
                reset.token.expose(),
                "quiet ferry lantern",
            )
            .await,
        ErrorCode::InvalidCode,
    );
    // Reset tokens expire.
    let again = env.client.start_reset("ann@example.com").await.unwrap();
    env.clock
        .advance(env.config.codes.reset_ttl + Duration::from_secs(1));
    assert_code(
        env.client
            .complete_reset(
                "ann@example.com",
                again.token.expose(),
                "quiet ferry lantern",
            )
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

// ---- 5. Brute force, shared by every worker ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_wrong_passwords_over_two_workers_cost_at_most_n_argon2_runs() {
    const N: u32 = 5;
    let env = TestEnv::start_with(|c| c.limits.login_failures = N).await;
    env.active_user("ann@example.com", PW).await;
    // A second worker on the same namespace and SQLite file.
    let second = WorkerHandle::start_with_clock(env.config.clone(), Arc::new(env.clock.clone()))
        .await
        .unwrap();
    let before = env.metrics().argon2_runs;
    let calls = (0..50).map(|_| {
        let client = env.client.clone();
        async move { client.login("ann@example.com", "not the password").await }
    });
    let results = futures_util::future::join_all(calls).await;
    let codes: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap_err().code().unwrap())
        .collect();
    let wrong = codes
        .iter()
        .filter(|c| **c == ErrorCode::InvalidCredentials)
        .count();
    let locked = codes
        .iter()
        .filter(|c| **c == ErrorCode::TooManyAttempts)
        .count();
    assert_eq!((wrong, locked), (N as usize, 50 - N as usize), "{codes:?}");
    let runs = env.metrics().argon2_runs - before + second.metrics().snapshot().argon2_runs;
    assert_eq!(
        runs,
        u64::from(N),
        "only the claimed attempts reached argon2"
    );
    assert!(
        second.metrics().snapshot().received > 0,
        "the second worker took part"
    );

    // During the lock even the right password is refused, and is not counted.
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::TooManyAttempts,
    );
    // After the window, the right password works again.
    env.clock.advance(env.config.limits.login_window);
    env.login("ann@example.com", PW).await;
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_reset_lifts_the_lock_so_an_attacker_cannot_keep_the_owner_out() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 3).await;
    env.active_user("ann@example.com", PW).await;
    for _ in 0..4 {
        let _ = env.client.login("ann@example.com", "attacker guess").await;
    }
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::TooManyAttempts,
    );
    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    env.client
        .complete_reset(
            "ann@example.com",
            reset.token.expose(),
            "quiet ferry lantern",
        )
        .await
        .unwrap();
    env.login("ann@example.com", "quiet ferry lantern").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_clears_the_failure_count() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 3).await;
    env.active_user("ann@example.com", PW).await;
    for _ in 0..5 {
        let _ = env.client.login("ann@example.com", "typo").await;
        let _ = env.client.login("ann@example.com", "typo").await;
        env.login("ann@example.com", PW).await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_also_limited_per_source_address() {
    let env = TestEnv::start_with(|c| c.limits.source_failures = 3).await;
    let login = |email: &'static str, ip: &'static str| {
        let body = serde_json::to_vec(&serde_json::json!({
            "email": email, "password": "guess", "client_ip": ip
        }))
        .unwrap();
        let client = env.client.clone();
        async move { code_of(&client.call_raw("login", &body, T).await.unwrap()) }
    };
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        assert_eq!(login(email, "203.0.113.7").await, "invalid_credentials");
    }
    // A fourth email from the same address is refused; another address is not.
    assert_eq!(
        login("d@example.com", "203.0.113.7").await,
        "too_many_attempts"
    );
    assert_eq!(
        login("d@example.com", "198.51.100.1").await,
        "invalid_credentials"
    );
    // IPv6 is limited per /64.
    for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
        assert_eq!(login("e@example.com", host).await, "invalid_credentials");
    }
    assert_eq!(
        login("f@example.com", "2001:db8::ffff").await,
        "too_many_attempts"
    );
    assert_eq!(login("f@example.com", "not an ip").await, "bad_request");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_start_reset_are_limited_per_email() {
    let env = TestEnv::start_with(|c| {
        c.limits.register_per_email = 2;
        c.limits.reset_per_email = 2;
    })
    .await;
    env.client.register("ann@example.com").await.unwrap();
    env.client.register("ann@example.com").await.unwrap();
    assert_code(
        env.client.register("ann@example.com").await,
        ErrorCode::TooManyAttempts,
    );
    env.client.register("bob@example.com").await.unwrap();
    for email in ["known@example.com", "unknown@example.com"] {
        if email.starts_with("known") {
            env.active_user(email, PW).await;
        }
        env.client.start_reset(email).await.unwrap();
        env.client.start_reset(email).await.unwrap();
        assert_code(
            env.client.start_reset(email).await,
            ErrorCode::TooManyAttempts,
        );
    }
    env.clock.advance(env.config.limits.spam_window);
    env.client.register("ann@example.com").await.unwrap();
    env.stop().await;
}

// ---- 6. Sessions end everywhere at once ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_fails_its_next_check_on_every_worker() {
    let env = TestEnv::start().await;
    let second = WorkerHandle::start_with_clock(env.config.clone(), Arc::new(env.clock.clone()))
        .await
        .unwrap();
    let ann = || authq::protocol::ops::UserRef {
        user_id: None,
        email: Some("ann@example.com".into()),
    };
    // Checks spread over both workers: every one of them must fail at once.
    async fn all_fail(env: &TestEnv, session: &str) {
        for _ in 0..8 {
            assert_code(env.client.check(session).await, ErrorCode::SessionInvalid);
        }
    }
    env.active_user("ann@example.com", PW).await;

    let s = env.login("ann@example.com", PW).await;
    env.client.logout(&s).await.unwrap();
    all_fail(&env, &s).await;

    let (a, b) = (
        env.login("ann@example.com", PW).await,
        env.login("ann@example.com", PW).await,
    );
    assert_ne!(a, b, "every login issues a fresh token");
    env.client.logout_all(&a).await.unwrap();
    all_fail(&env, &b).await;

    let (keep, other) = (
        env.login("ann@example.com", PW).await,
        env.login("ann@example.com", PW).await,
    );
    env.client
        .change_password(&keep, PW, "quiet ferry lantern")
        .await
        .unwrap();
    all_fail(&env, &other).await;
    env.client.check(&keep).await.unwrap();

    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    env.client
        .complete_reset(
            "ann@example.com",
            reset.token.expose(),
            "second quiet ferry",
        )
        .await
        .unwrap();
    all_fail(&env, &keep).await;

    let s = env.login("ann@example.com", "second quiet ferry").await;
    env.client.suspend(ann()).await.unwrap();
    all_fail(&env, &s).await;
    env.client.unsuspend(ann()).await.unwrap();

    let s = env.login("ann@example.com", "second quiet ferry").await;
    env.client.delete_user(ann()).await.unwrap();
    all_fail(&env, &s).await;

    assert!(
        second.metrics().snapshot().received > 0,
        "the second worker answered some of them"
    );
    second.shutdown().await.unwrap();
    env.stop().await;
}
