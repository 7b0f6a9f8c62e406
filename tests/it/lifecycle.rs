//! The whole account lifecycle, one happy path per operation, through the client library.

use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq::protocol::ops::{ProfileMode, UserRef, UserState};
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers() {
    let env = TestEnv::start().await;
    env.client.ping().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_confirm_login_check_logout() {
    let env = TestEnv::start().await;
    let c = &env.client;

    let reg = c.register("Ann@Example.com").await.unwrap();
    assert_eq!(reg.code.expose().len(), 8);
    assert!(reg.expires_at > env.clock_now());

    let confirmed = c
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap();
    assert_eq!(confirmed.user.id, reg.user_id);
    assert_eq!(
        confirmed.user.email, "Ann@Example.com",
        "the email as registered"
    );
    assert_eq!(confirmed.user.state, UserState::Active);

    let login = c.login("ANN@example.COM", PW).await.unwrap();
    assert_eq!(login.session.expose().len(), 43);
    assert_eq!(login.user.id, reg.user_id);

    let check = c.check(login.session.expose()).await.unwrap();
    assert_eq!(check.user.id, reg.user_id);
    assert_eq!(check.user.email, "Ann@Example.com");
    assert_eq!(check.user.state, UserState::Active);
    assert_eq!(check.user.profile.as_json(), "{}");
    assert_eq!(check.expires_at, login.expires_at);
    assert!(!check.renewed);

    c.logout(login.session.expose()).await.unwrap();
    assert_code(
        c.check(login.session.expose()).await,
        ErrorCode::SessionInvalid,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_issues_a_fresh_session() {
    let env = TestEnv::start().await;
    let a = env.session("ann@example.com", PW).await;
    let b = env.login("ann@example.com", PW).await;
    assert_ne!(a, b);
    env.client.check(&a).await.unwrap();
    env.client.check(&b).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_every_session_of_the_user_only() {
    let env = TestEnv::start().await;
    let a1 = env.session("ann@example.com", PW).await;
    let a2 = env.login("ann@example.com", PW).await;
    let b = env.session("bob@example.com", PW).await;

    let out = env.client.logout_all(&a2).await.unwrap();
    assert_eq!(out.ended, 2);
    assert_code(env.client.check(&a1).await, ErrorCode::SessionInvalid);
    assert_code(env.client.check(&a2).await, ErrorCode::SessionInvalid);
    env.client.check(&b).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_sets_the_new_password_and_ends_every_session() {
    let env = TestEnv::start().await;
    let s = env.session("ann@example.com", PW).await;
    let reset = env.client.start_reset("ann@example.com").await.unwrap();
    assert_eq!(reset.token.expose().len(), 43);

    let done = env
        .client
        .complete_reset(
            "ann@example.com",
            reset.token.expose(),
            "a brand new secret",
        )
        .await
        .unwrap();
    assert_eq!(done.sessions_ended, 1);
    assert_code(env.client.check(&s).await, ErrorCode::SessionInvalid);
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::InvalidCredentials,
    );
    env.login("ann@example.com", "a brand new secret").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_keeps_this_session_and_ends_the_others() {
    let env = TestEnv::start().await;
    let mine = env.session("ann@example.com", PW).await;
    let other = env.login("ann@example.com", PW).await;

    let out = env
        .client
        .change_password(&mine, PW, "another long secret")
        .await
        .unwrap();
    assert_eq!(out.sessions_ended, 1);
    env.client.check(&mine).await.unwrap();
    assert_code(env.client.check(&other).await, ErrorCode::SessionInvalid);
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::InvalidCredentials,
    );
    env.login("ann@example.com", "another long secret").await;

    assert_code(
        env.client
            .change_password(&mine, "not the password", "plenty of pelicans")
            .await,
        ErrorCode::InvalidCredentials,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_merge_by_default_and_replace_on_request() {
    let env = TestEnv::start().await;
    let reg = env
        .client
        .register_with_profile(
            "ann@example.com",
            json!({"name": "Ann", "prefs": {"lang": "en", "theme": "dark"}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    env.client
        .confirm_registration("ann@example.com", reg.code.expose(), PW)
        .await
        .unwrap();
    let s = env.login("ann@example.com", PW).await;

    let got = env.client.get_profile(&s).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(got.user.profile.to_map()),
        json!({"name": "Ann", "prefs": {"lang": "en", "theme": "dark"}})
    );

    let merged = env
        .client
        .set_profile(
            &s,
            json!({"prefs": {"theme": null, "tz": "UTC"}, "age": 33})
                .as_object()
                .unwrap()
                .clone(),
            ProfileMode::Merge,
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(merged.user.profile.to_map()),
        json!({"name": "Ann", "prefs": {"lang": "en", "tz": "UTC"}, "age": 33})
    );

    let replaced = env
        .client
        .set_profile(
            &s,
            json!({"only": true}).as_object().unwrap().clone(),
            ProfileMode::Replace,
        )
        .await
        .unwrap();
    assert_eq!(replaced.user.profile.as_json(), r#"{"only":true}"#);
    let checked = env.client.check(&s).await.unwrap();
    assert_eq!(checked.user.profile.as_json(), r#"{"only":true}"#);

    // Over the profile limit (16 KiB) after merging: refused, nothing changes.
    let big = json!({"bio": "x".repeat(20_000)})
        .as_object()
        .unwrap()
        .clone();
    assert_code(
        env.client.set_profile(&s, big, ProfileMode::Merge).await,
        ErrorCode::BadRequest,
    );
    let unchanged = env.client.get_profile(&s).await.unwrap();
    assert_eq!(unchanged.user.profile.as_json(), r#"{"only":true}"#);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_ends_sessions_at_once_and_unsuspend_restores_login() {
    let env = TestEnv::start().await;
    let s = env.session("ann@example.com", PW).await;

    let out = env
        .client
        .suspend(UserRef::email("ann@example.com"))
        .await
        .unwrap();
    assert_eq!(out.user.state, UserState::Suspended);
    assert_eq!(out.sessions_ended, 1);
    assert_code(env.client.check(&s).await, ErrorCode::SessionInvalid);
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::UserSuspended,
    );
    assert_code(
        env.client
            .login("ann@example.com", "a wrong password")
            .await,
        ErrorCode::InvalidCredentials,
    );

    let back = env
        .client
        .unsuspend(UserRef::id(out.user.id.clone()))
        .await
        .unwrap();
    assert_eq!(back.user.state, UserState::Active);
    let s2 = env.login("ann@example.com", PW).await;
    env.client.check(&s2).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_user_removes_the_user_sessions_and_codes() {
    let env = TestEnv::start().await;
    let s = env.session("ann@example.com", PW).await;
    let reset = env.client.start_reset("ann@example.com").await.unwrap();

    let deleted = env
        .client
        .delete_user(UserRef::email("ann@example.com"))
        .await
        .unwrap();
    assert_code(env.client.check(&s).await, ErrorCode::SessionInvalid);
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::InvalidCredentials,
    );
    assert_code(
        env.client
            .complete_reset(
                "ann@example.com",
                reset.token.expose(),
                "a brand new secret",
            )
            .await,
        ErrorCode::InvalidCode,
    );
    assert_code(
        env.client
            .delete_user(UserRef::id(deleted.user_id.clone()))
            .await,
        ErrorCode::NotFound,
    );
    // The email is free again.
    env.client.register("ann@example.com").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_on_one_client_each_get_their_own_reply() {
    let env = TestEnv::start().await;
    let ann = env.session("ann@example.com", PW).await;
    let bob = env.session("bob@example.com", PW).await;
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let client = env.client.clone();
            let (session, email) = if i % 2 == 0 {
                (ann.clone(), "ann@example.com")
            } else {
                (bob.clone(), "bob@example.com")
            };
            tokio::spawn(async move {
                let reply = client.check(&session).await.unwrap();
                assert_eq!(reply.user.email, email);
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    env.stop().await;
}
