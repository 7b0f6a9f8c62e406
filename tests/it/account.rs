//! Registration, codes and tokens: the error paths.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq::protocol::ops::UserRef;
use std::time::Duration;

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_email_cannot_register_again_in_any_case() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    assert_code(
        env.client.register("ann@example.com").await,
        ErrorCode::UserExists,
    );
    assert_code(
        env.client.register("ANN@EXAMPLE.COM").await,
        ErrorCode::UserExists,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_pending_email_again_replaces_its_code() {
    let env = TestEnv::start().await;
    let first = env.client.register("ann@example.com").await.unwrap();
    let second = env.client.register("ann@example.com").await.unwrap();
    assert_eq!(first.user_id, second.user_id);
    assert_code(
        env.client
            .confirm_registration("ann@example.com", first.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.client
        .confirm_registration("ann@example.com", second.code.expose(), PW)
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    env.clock
        .advance(env.config.codes.confirmation_ttl + Duration::from_secs(1));
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_works_once() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    env.client
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap();
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_code_give_exactly_one_success() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    let calls = (0..16).map(|_| {
        let client = env.client.clone();
        let code = reg.code.expose().to_owned();
        tokio::spawn(async move {
            client
                .confirm_registration("ann@example.com", &code, PW)
                .await
        })
    });
    let mut ok = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::InvalidCode), "{e}"),
        }
    }
    assert_eq!(ok, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_dies_after_too_many_wrong_guesses() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    let wrong = if reg.code.expose() == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for _ in 0..env.config.codes.max_attempts {
        assert_code(
            env.client
                .confirm_registration("ann@example.com", wrong, PW)
                .await,
            ErrorCode::InvalidCode,
        );
    }
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    // Wrong codes cost no argon2: only the start-up dummy hash ran.
    assert_eq!(env.metrics().argon2_runs, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_bound_to_its_email_and_its_flow() {
    let env = TestEnv::start().await;
    let ann = env.client.register("ann@example.com").await.unwrap();
    env.client.register("bob@example.com").await.unwrap();
    assert_code(
        env.client
            .confirm_registration("bob@example.com", ann.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    assert_code(
        env.client
            .complete_reset("ann@example.com", ann.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.client
        .confirm_registration("ann@example.com", ann.code.expose(), PW)
        .await
        .unwrap();

    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reset.token.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_tokens_expire_and_work_once() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;

    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    env.client
        .complete_reset("ann@example.com", reset.token.expose(), "new password one")
        .await
        .unwrap();
    assert_code(
        env.client
            .complete_reset("ann@example.com", reset.token.expose(), "new password two")
            .await,
        ErrorCode::InvalidCode,
    );

    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    env.clock
        .advance(env.config.codes.reset_ttl + Duration::from_secs(1));
    assert_code(
        env.client
            .complete_reset(
                "ann@example.com",
                reset.token.expose(),
                "new password three",
            )
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reset_replies_alike_for_unknown_emails() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let t0 = env.clock_now();
    let known = env.client.start_reset("ann@example.com").await.unwrap();
    let t1 = env.clock_now();
    let unknown = env.client.start_reset("nobody@example.com").await.unwrap();
    let t2 = env.clock_now();
    assert_eq!(known.token.expose().len(), unknown.token.expose().len());
    let ttl = i64::try_from(env.config.codes.reset_ttl.as_millis()).unwrap();
    assert!((t0 + ttl..=t1 + ttl).contains(&known.expires_at));
    assert!((t1 + ttl..=t2 + ttl).contains(&unknown.expires_at));
    // The decoy token works nowhere.
    assert_code(
        env.client
            .complete_reset(
                "nobody@example.com",
                unknown.token.expose(),
                "whatever password",
            )
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_are_indistinguishable() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    env.client.register("pending@example.com").await.unwrap();
    let before = env.metrics().argon2_runs;
    let mut messages = Vec::new();
    for (email, pw) in [
        ("ann@example.com", "wrong password"),
        ("nobody@example.com", PW),
        ("pending@example.com", PW),
    ] {
        let body =
            serde_json::to_vec(&serde_json::json!({"email": email, "password": pw})).unwrap();
        let reply = env
            .client
            .call_raw("login", &body, Duration::from_secs(20))
            .await
            .unwrap();
        messages.push(reply);
    }
    assert_eq!(messages[0], messages[1], "wrong password vs unknown email");
    assert_eq!(messages[0], messages[2], "wrong password vs pending user");
    assert_eq!(
        String::from_utf8_lossy(&messages[0]),
        r#"{"status":"error","error":{"code":"invalid_credentials","message":"email or password is wrong"}}"#
    );
    assert_eq!(
        env.metrics().argon2_runs - before,
        3,
        "one argon2 run on every path"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_before_hashing() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), "short")
            .await,
        ErrorCode::WeakPassword,
    );
    let long = "x".repeat(2000); // over the 1024-byte limit, under the body limit
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), &long)
            .await,
        ErrorCode::WeakPassword,
    );
    assert_code(
        env.client.login("ann@example.com", &long).await,
        ErrorCode::InvalidCredentials,
    );
    let huge = "x".repeat(1_000_000); // over the body limit: refused before parsing
    assert_code(
        env.client.login("ann@example.com", &huge).await,
        ErrorCode::PayloadTooLarge,
    );
    assert_eq!(env.metrics().argon2_runs, 0);
    // The code survived: policy failures are not wrong guesses.
    env.client
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_emails_are_bad_requests() {
    let env = TestEnv::start().await;
    for email in ["", "not-an-email", "a@", "Ann <ann@example.com>"] {
        assert_code(env.client.register(email).await, ErrorCode::BadRequest);
    }
    assert_code(env.client.login("nope", PW).await, ErrorCode::BadRequest);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_requests_name_exactly_one_existing_user() {
    let env = TestEnv::start().await;
    assert_code(
        env.client.suspend(UserRef::default()).await,
        ErrorCode::BadRequest,
    );
    assert_code(
        env.client
            .suspend(UserRef {
                user_id: Some("x".into()),
                email: Some("a@b.c".into()),
            })
            .await,
        ErrorCode::BadRequest,
    );
    assert_code(
        env.client.suspend(UserRef::id("no-such-id")).await,
        ErrorCode::NotFound,
    );
    assert_code(
        env.client
            .unsuspend(UserRef::email("nobody@example.com"))
            .await,
        ErrorCode::NotFound,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_pending_user_cannot_confirm() {
    let env = TestEnv::start().await;
    let reg = env.client.register("ann@example.com").await.unwrap();
    env.client
        .suspend(UserRef::id(reg.user_id.clone()))
        .await
        .unwrap();
    assert_code(
        env.client
            .confirm_registration("ann@example.com", reg.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    assert_code(
        env.client.register("ann@example.com").await,
        ErrorCode::UserExists,
    );
    let back = env
        .client
        .unsuspend(UserRef::id(reg.user_id))
        .await
        .unwrap();
    assert_eq!(back.user.state, authq::protocol::ops::UserState::Pending);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_right_password_racing_suspend_is_told_user_suspended_never_invalid_credentials() {
    let env = TestEnv::start().await;
    env.active_user("race@example.com", PW).await;
    let race = || UserRef {
        user_id: None,
        email: Some("race@example.com".into()),
    };
    let (mut before, mut after) = (0, 0);
    for round in 0..40 {
        let (login, suspended) = tokio::join!(
            env.client.login("race@example.com", PW),
            env.client.suspend(race())
        );
        suspended.unwrap();
        match login {
            // Opened before the suspension, which ended it.
            Ok(reply) => {
                before += 1;
                assert_code(
                    env.client.check(reply.session.expose()).await,
                    ErrorCode::SessionInvalid,
                );
            }
            Err(e) => {
                after += 1;
                assert_eq!(
                    e.code(),
                    Some(ErrorCode::UserSuspended),
                    "round {round}: {e}"
                );
            }
        }
        env.client.unsuspend(race()).await.unwrap();
    }
    assert_eq!(before + after, 40);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_email_is_user_exists_even_past_the_register_limit() {
    let env = TestEnv::start().await;
    env.active_user("ann@example.com", PW).await;
    let limit = env.config.limits.register_per_email;
    // The first registration used one; every further one, past the limit too, is user_exists.
    for i in 0..limit + 2 {
        assert_code(
            env.client.register("ann@example.com").await,
            ErrorCode::UserExists,
        );
        let _ = i;
    }
    // A pending email past the limit is still refused as too many attempts.
    for _ in 0..limit {
        env.client.register("pending@example.com").await.unwrap();
    }
    assert_code(
        env.client.register("pending@example.com").await,
        ErrorCode::TooManyAttempts,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_emails_make_no_second_account_and_share_one_identity() {
    let env = TestEnv::start().await;
    let n = uuid::Uuid::new_v4().as_u128() % 10_000;
    let plain = format!("a{n:04}@example.com");
    env.active_user(&plain, PW).await;
    let cyrillic = format!("\u{430}{n:04}@example.com");
    let fullwidth = format!("\u{FF41}{n:04}@example.com");
    let quoted = format!("\"a{n:04}\"@example.com");
    let quoted_at = format!("\"a{n:04}@x\"@example.com");
    // The same mailbox written another way: the existing account.
    for same in [&fullwidth, &quoted] {
        assert_code(env.client.register(same).await, ErrorCode::UserExists);
    }
    // A look-alike of another mailbox: refused outright.
    for other in [&cyrillic, &quoted_at] {
        assert_code(env.client.register(other).await, ErrorCode::BadRequest);
    }
    assert_eq!(env.count("users"), 1, "no second account");
    // Login, reset and the lockout counters go through the same canonical key.
    let session = env.login(&fullwidth, PW).await;
    let me = env.client.check(&session).await.unwrap();
    assert_eq!(me.user.email, plain);
    env.client.start_reset(&quoted).await.unwrap();
    assert_eq!(
        env.count("codes WHERE purpose = 'reset'"),
        1,
        "a token for the account"
    );
    for _ in 0..env.config.limits.login_failures {
        assert_code(
            env.client.login(&quoted, "wrong password!").await,
            ErrorCode::InvalidCredentials,
        );
    }
    assert_code(
        env.client.login(&plain, PW).await,
        ErrorCode::TooManyAttempts,
    );
    env.stop().await;
}
