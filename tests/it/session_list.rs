//! Sessions a user can see (`list_sessions`, `end_session`) and the per-user session limit
//! (`unlimited`, `one`, a cap of N), with the `session.ended` events each publishes.

use crate::events::{next_event, subscribe};
use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq_protocol::events::EventKind;
use authq_worker::config::SessionLimit;
use futures_util::future::join_all;
use std::time::Duration;

const PW: &str = "correct horse battery";
const ANN: &str = "ann@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_their_own_sessions_across_two_workers_with_their_metadata() {
    let env = TestEnv::start().await;
    let second = env.second_worker().await;
    env.active_user(ANN, PW).await;
    env.active_user("bob@example.com", PW).await;
    let c = &env.client;
    let phone = c
        .login_from(ANN, PW, Some("203.0.113.7"), Some("Phone/1.0"))
        .await
        .unwrap()
        .session;
    env.clock.advance(Duration::from_secs(1));
    let laptop = c
        .login_from(ANN, PW, Some("2001:db8::1"), Some("Laptop Firefox/140"))
        .await
        .unwrap()
        .session;
    env.clock.advance(Duration::from_secs(1));
    let bare = c.login(ANN, PW).await.unwrap().session;
    let bob = c.login("bob@example.com", PW).await.unwrap().session;

    // Both workers serve the tube: every listing (whichever worker answers) is the same.
    let mut listings = Vec::new();
    for _ in 0..6 {
        listings.push(c.list_sessions(laptop.expose()).await.unwrap());
    }
    let list = listings[0].clone();
    for other in &listings {
        assert_eq!(other, &list);
    }
    assert_eq!(list.total, 3, "Bob's session is not Ann's");
    assert_eq!(list.sessions.len(), 3);
    // Newest first, the caller's own marked.
    let [newest, middle, oldest] = &list.sessions[..] else {
        panic!("three sessions")
    };
    assert!(newest.created_at > middle.created_at && middle.created_at > oldest.created_at);
    assert_eq!(
        (newest.user_agent.as_deref(), newest.client_ip.as_deref()),
        (None, None)
    );
    assert_eq!(middle.user_agent.as_deref(), Some("Laptop Firefox/140"));
    assert_eq!(middle.client_ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(oldest.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(oldest.client_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        list.sessions.iter().map(|s| s.current).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(oldest.last_seen_at, oldest.created_at);
    // Ids are not tokens, and name each session once.
    for s in &list.sessions {
        assert_eq!(s.id.len(), 32);
        for token in [&phone, &laptop, &bare] {
            assert!(!token.expose().contains(&s.id) && !s.id.contains(token.expose()));
        }
    }
    let ids: std::collections::BTreeSet<_> = list.sessions.iter().map(|s| &s.id).collect();
    assert_eq!(ids.len(), 3);

    // The other user sees only their own.
    let bobs = c.list_sessions(bob.expose()).await.unwrap();
    assert_eq!(bobs.total, 1);
    assert!(bobs.sessions[0].current && !ids.contains(&bobs.sessions[0].id));

    // A renewal moves `last_seen_at`; listing itself renews nothing.
    env.clock.advance(Duration::from_secs(13 * 3600));
    let before = c.list_sessions(phone.expose()).await.unwrap();
    assert_eq!(before.sessions[2].last_seen_at, oldest.last_seen_at);
    assert!(c.check(phone.expose()).await.unwrap().renewed);
    let after = c.list_sessions(phone.expose()).await.unwrap();
    assert_eq!(after.sessions[2].id, oldest.id);
    // The worker's clock runs on by itself between calls: within a few seconds of now.
    let seen = after.sessions[2].last_seen_at;
    assert!(seen > oldest.last_seen_at + 13 * 3_600_000 - 5_000);
    assert!((seen - env.clock_now()).abs() < 5_000);

    assert_code(
        c.list_sessions("not a session").await,
        ErrorCode::SessionInvalid,
    );
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_ends_only_the_callers_own_sessions_and_hides_the_rest() {
    let env = TestEnv::start().await;
    let queue = format!("{}.test-session-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["session.ended"]).await;
    let ann_id = env.active_user(ANN, PW).await;
    env.active_user("bob@example.com", PW).await;
    let c = &env.client;
    let mine = c.login(ANN, PW).await.unwrap().session;
    let other = c.login(ANN, PW).await.unwrap().session;
    let bob = c.login("bob@example.com", PW).await.unwrap().session;
    let id_of = async |token: &str| {
        c.list_sessions(token)
            .await
            .unwrap()
            .sessions
            .into_iter()
            .find(|s| s.current)
            .unwrap()
            .id
    };
    let other_id = id_of(other.expose()).await;
    let bob_id = id_of(bob.expose()).await;

    // Another user's session and an unknown id: the same answer, and nothing ends.
    assert_code(
        c.end_session(mine.expose(), &bob_id).await,
        ErrorCode::SessionNotFound,
    );
    assert_code(
        c.end_session(mine.expose(), "00000000000000000000000000000000")
            .await,
        ErrorCode::SessionNotFound,
    );
    assert_code(
        c.end_session(mine.expose(), &"f".repeat(10_000)).await,
        ErrorCode::SessionNotFound,
    );
    assert_code(
        c.end_session(mine.expose(), "nope").await,
        ErrorCode::SessionNotFound,
    );
    c.check(bob.expose()).await.unwrap();
    // Bob cannot end Ann's either.
    assert_code(
        c.end_session(bob.expose(), &other_id).await,
        ErrorCode::SessionNotFound,
    );
    c.check(other.expose()).await.unwrap();

    // One's own: it ends, once.
    c.end_session(mine.expose(), &other_id).await.unwrap();
    assert_code(c.check(other.expose()).await, ErrorCode::SessionInvalid);
    assert_code(
        c.end_session(mine.expose(), &other_id).await,
        ErrorCode::SessionNotFound,
    );
    assert_eq!(c.list_sessions(mine.expose()).await.unwrap().total, 1);
    // An ended session cannot end anything.
    assert_code(
        c.end_session(other.expose(), &bob_id).await,
        ErrorCode::SessionInvalid,
    );

    let (key, ended) = next_event(&mut events).await;
    assert_eq!(
        (key.as_str(), ended.kind),
        ("session.ended", EventKind::SessionEnded)
    );
    assert_eq!(ended.data.user_id.as_deref(), Some(ann_id.as_str()));
    assert_eq!(ended.data.reason.as_deref(), Some("end_session"));
    assert_eq!(ended.data.sessions_ended, Some(1));
    assert_eq!(ended.data.session_ids, Some(vec![other_id]));

    // The current session may end itself.
    let mine_id = id_of(mine.expose()).await;
    c.end_session(mine.expose(), &mine_id).await.unwrap();
    assert_code(c.check(mine.expose()).await, ErrorCode::SessionInvalid);
    let (_, ended) = next_event(&mut events).await;
    assert_eq!(ended.data.session_ids, Some(vec![mine_id]));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_metadata_is_bounded_and_validated() {
    let env = TestEnv::start().await;
    env.active_user(ANN, PW).await;
    let c = &env.client;
    let longest = "a".repeat(authq_protocol::ops::MAX_USER_AGENT_BYTES);
    let s = c
        .login_from(ANN, PW, None, Some(&longest))
        .await
        .unwrap()
        .session;
    let listed = c.list_sessions(s.expose()).await.unwrap();
    assert_eq!(
        listed.sessions[0].user_agent.as_deref(),
        Some(longest.as_str())
    );
    for bad_agent in [
        "a".repeat(authq_protocol::ops::MAX_USER_AGENT_BYTES + 1),
        "two\nlines".to_owned(),
    ] {
        assert_code(
            c.login_from(ANN, PW, None, Some(&bad_agent)).await,
            ErrorCode::BadRequest,
        );
    }
    assert_code(
        c.login_from(ANN, PW, Some(&"1".repeat(100)), None).await,
        ErrorCode::BadRequest,
    );
    assert_eq!(
        c.list_sessions(s.expose()).await.unwrap().total,
        1,
        "no session"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_sessions_by_default() {
    let env = TestEnv::start().await;
    assert_eq!(env.config.sessions.per_user, SessionLimit::Unlimited);
    env.active_user(ANN, PW).await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(env.login(ANN, PW).await);
    }
    for t in &tokens {
        env.client.check(t).await.unwrap();
    }
    assert_eq!(env.client.list_sessions(&tokens[0]).await.unwrap().total, 5);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_user_a_new_login_ends_the_others() {
    let env = TestEnv::start_with(|c| c.sessions.per_user = SessionLimit::At(1)).await;
    let queue = format!("{}.test-session-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["session.ended"]).await;
    let ann_id = env.active_user(ANN, PW).await;
    env.active_user("bob@example.com", PW).await;
    let bob = env.login("bob@example.com", PW).await;
    let first = env.login(ANN, PW).await;
    let first_id = env.client.list_sessions(&first).await.unwrap().sessions[0]
        .id
        .clone();
    let second = env.login(ANN, PW).await;
    assert_code(env.client.check(&first).await, ErrorCode::SessionInvalid);
    env.client.check(&second).await.unwrap();
    env.client.check(&bob).await.unwrap();
    assert_eq!(env.client.list_sessions(&second).await.unwrap().total, 1);

    let (_, ended) = next_event(&mut events).await;
    assert_eq!(ended.kind, EventKind::SessionEnded);
    assert_eq!(ended.data.user_id.as_deref(), Some(ann_id.as_str()));
    assert_eq!(ended.data.reason.as_deref(), Some("session_limit"));
    assert_eq!(ended.data.sessions_ended, Some(1));
    assert_eq!(ended.data.session_ids, Some(vec![first_id]));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_under_one_session_per_user_leave_one_session() {
    let env = TestEnv::start_with(|c| c.sessions.per_user = SessionLimit::At(1)).await;
    let second = env.second_worker().await;
    env.active_user(ANN, PW).await;
    for _round in 0..3 {
        let logins = join_all((0..4).map(|_| env.client.login(ANN, PW))).await;
        let tokens: Vec<_> = logins
            .into_iter()
            .map(|l| l.expect("every login succeeds").session)
            .collect();
        let mut live = Vec::new();
        for t in &tokens {
            if env.client.check(t.expose()).await.is_ok() {
                live.push(t);
            }
        }
        assert_eq!(
            live.len(),
            1,
            "exactly one of the racing logins keeps its session"
        );
        assert_eq!(
            env.client
                .list_sessions(live[0].expose())
                .await
                .unwrap()
                .total,
            1
        );
        assert_eq!(env.count("sessions"), 1);
    }
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_n_ends_the_oldest_beyond_it_even_under_concurrent_logins() {
    let env = TestEnv::start_with(|c| c.sessions.per_user = SessionLimit::At(3)).await;
    let queue = format!("{}.test-session-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["session.ended"]).await;
    env.active_user(ANN, PW).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(env.login(ANN, PW).await);
        env.clock.advance(Duration::from_millis(10));
    }
    let oldest_id = env.client.list_sessions(&tokens[0]).await.unwrap().sessions[2]
        .id
        .clone();
    // A fourth ends the oldest only.
    tokens.push(env.login(ANN, PW).await);
    assert_code(
        env.client.check(&tokens[0]).await,
        ErrorCode::SessionInvalid,
    );
    for t in &tokens[1..] {
        env.client.check(t).await.unwrap();
    }
    let (_, ended) = next_event(&mut events).await;
    assert_eq!(ended.data.reason.as_deref(), Some("session_limit"));
    assert_eq!(ended.data.session_ids, Some(vec![oldest_id]));

    // Six at once: three stay, whichever they are.
    let second = env.second_worker().await;
    let logins = join_all((0..6).map(|_| env.client.login(ANN, PW))).await;
    let mut live = 0;
    for l in logins {
        let t = l.expect("every login succeeds").session;
        if env.client.check(t.expose()).await.is_ok() {
            live += 1;
        }
    }
    assert!(
        (1..=3).contains(&live),
        "{live} of the racing logins kept a session"
    );
    assert_eq!(env.count("sessions"), 3);
    let mut ended_total = 0;
    while ended_total < 6 {
        let (_, ended) = next_event(&mut events).await;
        assert_eq!(ended.data.reason.as_deref(), Some("session_limit"));
        let n = ended.data.sessions_ended.unwrap();
        assert_eq!(
            ended.data.session_ids.as_ref().map(Vec::len),
            Some(n as usize)
        );
        ended_total += n;
    }
    assert_eq!(
        ended_total, 6,
        "the six sessions beyond the cap, each ended once"
    );
    second.shutdown().await.unwrap();
    env.stop().await;
}
