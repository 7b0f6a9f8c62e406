//! `refresh` (issue 17): refresh tokens are single use and rotate; a used one presented again
//! ends its session and every refresh token of it (reuse detection), concurrently too; and
//! every way a session ends also ends its refresh tokens.

use crate::events::{next_event, subscribe};
use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq::protocol::ops::{JwksRequest, RefreshReply, RefreshRequest, UserRef};
use authq::verify::Verifier;
use authq::{ClientError, Secret};
use authq_worker::config::SessionLimit;
use futures_util::future::join_all;
use std::time::Duration;

const PW: &str = "correct horse battery";
const PW2: &str = "another long secret";
const ANN: &str = "ann@example.com";

async fn start() -> TestEnv {
    TestEnv::start_with(|c| c.tokens.enabled = true).await
}

/// Logs Ann in; returns the session token and the refresh token.
async fn login(env: &TestEnv) -> (String, String) {
    let l = env.client.login(ANN, PW).await.unwrap();
    let refresh = l.refresh_token.expect("a refresh token");
    (l.session.expose().to_owned(), refresh.expose().to_owned())
}

async fn refresh(env: &TestEnv, token: &str) -> Result<RefreshReply, ClientError> {
    env.client
        .call(&RefreshRequest {
            refresh_token: Secret::from(token),
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_reused_token_ends_the_family_and_its_session() {
    let env = start().await;
    let queue = format!("{}.test-refresh-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["session.ended"]).await;
    let user_id = env.active_user(ANN, PW).await;
    let (session, first) = login(&env).await;
    let set = env.client.call(&JwksRequest {}).await.unwrap();
    let v = Verifier::new(&set, "authq", "authq").unwrap();
    let sid = env.client.list_sessions(&session).await.unwrap().sessions[0]
        .id
        .clone();

    let second = refresh(&env, &first).await.unwrap();
    assert_ne!(second.refresh_token.expose(), first);
    let claims = v
        .verify(second.access_token.expose(), env.clock_now() / 1000)
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.sid.as_deref()),
        (user_id.as_str(), Some(sid.as_str()))
    );
    assert_eq!(claims.exp * 1000, second.access_expires_at);
    let third = refresh(&env, second.refresh_token.expose()).await.unwrap();
    // Stored by digest only.
    assert_eq!(env.count("refresh_tokens"), 3);
    let token = third.refresh_token.expose().to_owned();
    let stored: Vec<Vec<u8>> =
        env.db(|tx| tx.query_all("SELECT digest FROM refresh_tokens", &[], |r| r.get(0)));
    for digest in &stored {
        assert_eq!(digest.len(), 32);
        assert_ne!(digest.as_slice(), token.as_bytes());
    }

    // The first token again: theft assumed, the family and the session end.
    assert_code(refresh(&env, &first).await, ErrorCode::SessionInvalid);
    assert_code(env.client.check(&session).await, ErrorCode::SessionInvalid);
    assert_code(refresh(&env, &token).await, ErrorCode::SessionInvalid);
    assert_eq!(env.count("refresh_tokens"), 0);
    let (_, ended) = next_event(&mut events).await;
    assert_eq!(ended.data.user_id.as_deref(), Some(user_id.as_str()));
    assert_eq!(ended.data.reason.as_deref(), Some("refresh_token_reuse"));
    assert_eq!(ended.data.sessions_ended, Some(1));
    // An unknown token is refused the same way.
    assert_code(refresh(&env, "nope").await, ErrorCode::SessionInvalid);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_refreshes_of_one_token_give_exactly_one_success() {
    let env = start().await;
    let second = env.second_worker().await;
    env.active_user(ANN, PW).await;
    let (session, token) = login(&env).await;
    let results = join_all((0..16).map(|_| refresh(&env, &token))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_code(r, ErrorCode::SessionInvalid);
    }
    // The others were the same token presented again: the session ended with its family.
    assert_code(env.client.check(&session).await, ErrorCode::SessionInvalid);
    assert_eq!(env.count("refresh_tokens"), 0);
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_renews_the_session_and_an_expired_session_refreshes_nothing() {
    let env = start().await;
    env.active_user(ANN, PW).await;
    let (session, token) = login(&env).await;
    let before = env.client.check(&session).await.unwrap().expires_at;
    env.clock.advance(Duration::from_secs(3600));
    let next = refresh(&env, &token).await.unwrap();
    let after = env.client.check(&session).await.unwrap().expires_at;
    assert!(after > before, "renewed by the refresh");
    env.clock
        .advance(env.config.sessions.idle_timeout + Duration::from_secs(1));
    assert_code(
        refresh(&env, next.refresh_token.expose()).await,
        ErrorCode::SessionInvalid,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_session_ends_ends_its_refresh_tokens() {
    let env = start().await;
    let c = &env.client;
    let ann = env.active_user(ANN, PW).await;

    // logout
    let (s, r) = login(&env).await;
    c.logout(&s).await.unwrap();
    assert_code(refresh(&env, &r).await, ErrorCode::SessionInvalid);

    // end_session
    let (s, r) = login(&env).await;
    let (other, _) = login(&env).await;
    let id = c.list_sessions(&s).await.unwrap().sessions[1].id.clone();
    c.end_session(&other, &id).await.unwrap();
    assert_code(refresh(&env, &r).await, ErrorCode::SessionInvalid);

    // logout_all
    let (s1, r1) = login(&env).await;
    let (_, r2) = login(&env).await;
    c.logout_all(&s1).await.unwrap();
    assert_code(refresh(&env, &r1).await, ErrorCode::SessionInvalid);
    assert_code(refresh(&env, &r2).await, ErrorCode::SessionInvalid);

    // change_password: the other sessions end, the caller's own keeps its refresh token.
    let (mine, r_mine) = login(&env).await;
    let (_, r_other) = login(&env).await;
    c.change_password(&mine, PW, PW2).await.unwrap();
    assert_code(refresh(&env, &r_other).await, ErrorCode::SessionInvalid);
    refresh(&env, &r_mine).await.unwrap();
    c.change_password(&mine, PW2, PW).await.unwrap();

    // complete_reset
    let (_, r) = login(&env).await;
    let reset = c.start_reset(ANN).await.unwrap();
    c.complete_reset(ANN, reset.token.expose(), PW2)
        .await
        .unwrap();
    assert_code(refresh(&env, &r).await, ErrorCode::SessionInvalid);
    let reset = c.start_reset(ANN).await.unwrap();
    c.complete_reset(ANN, reset.token.expose(), PW)
        .await
        .unwrap();

    // suspend
    let (_, r) = login(&env).await;
    c.suspend(UserRef::id(ann.clone())).await.unwrap();
    assert_code(refresh(&env, &r).await, ErrorCode::SessionInvalid);
    c.unsuspend(UserRef::id(ann.clone())).await.unwrap();

    // delete_user
    let (_, r) = login(&env).await;
    c.delete_user(UserRef::id(ann)).await.unwrap();
    assert_code(refresh(&env, &r).await, ErrorCode::SessionInvalid);
    assert_eq!(env.count("refresh_tokens"), 0, "none left behind");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_ends_the_refresh_tokens_of_the_sessions_it_ends() {
    let env = TestEnv::start_with(|c| {
        c.tokens.enabled = true;
        c.sessions.per_user = SessionLimit::At(1);
    })
    .await;
    env.active_user(ANN, PW).await;
    let (_, old) = login(&env).await;
    let (_, new) = login(&env).await;
    assert_code(refresh(&env, &old).await, ErrorCode::SessionInvalid);
    refresh(&env, &new).await.unwrap();
    env.stop().await;
}
