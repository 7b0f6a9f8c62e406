//! Social login against a real OAuth2 / OIDC provider on 127.0.0.1 (`provider.rs`), driven
//! through the queue: `social_url` → the provider's authorization endpoint (played by a plain
//! HTTP client) → `social_login` / `link_social`.

use crate::harness::{TestEnv, assert_code};
use crate::provider::{Mode, Person, Provider};
use authq::{ClientError, ErrorCode};
use authq_protocol::ops::{
    LinkSocialReply, SocialLoginReply, SocialLoginRequest, SocialUrlReply, SocialUrlRequest,
    UserRef,
};
use authq_worker::config::Config;
use authq_worker::config::SocialConfig;
use authq_worker::config::social::from_toml;
use std::time::Duration;

const PW: &str = "correct horse battery";

fn social_config(p: &Provider, global: &str, providers: &[(&str, &str)]) -> SocialConfig {
    // No `[social] key`: what social login seals is sealed under a key derived from the
    // server key.
    let mut text = format!("[social]\n{global}\n");
    for (name, extra) in providers {
        text.push_str(&p.toml(name, extra));
    }
    from_toml(&text, &|_| None).unwrap()
}

async fn start(
    p: &Provider,
    global: &str,
    providers: &[(&str, &str)],
    adjust: impl FnOnce(&mut Config),
) -> TestEnv {
    let social = social_config(p, global, providers);
    TestEnv::start_with(|c| {
        c.social = social;
        adjust(c);
    })
    .await
}

async fn social_url(env: &TestEnv, provider: &str) -> Result<SocialUrlReply, ClientError> {
    env.client.social_url(provider, None).await
}

/// `social_url`, then the browser's trip through the provider for `person`.
async fn round_trip(
    env: &TestEnv,
    p: &Provider,
    provider: &str,
    person: Person,
) -> (String, String) {
    p.next_person(person);
    let url = social_url(env, provider).await.unwrap();
    let (code, state) = p.browse(&url.url).await;
    assert_eq!(state, url.state.expose(), "state survives the round trip");
    (code, state)
}

async fn social_login(
    env: &TestEnv,
    provider: &str,
    code: &str,
    state: &str,
) -> Result<SocialLoginReply, ClientError> {
    env.client.social_login(provider, code, state).await
}

async fn link_social(
    env: &TestEnv,
    session: &str,
    provider: &str,
    code: &str,
    state: &str,
) -> Result<LinkSocialReply, ClientError> {
    env.client.link_social(session, provider, code, state).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_social_login_creates_the_user_and_a_second_updates_it() {
    let p = Provider::start().await;
    let env = start(&p, "", &[("loop", "")], |_| {}).await;

    let url = social_url(&env, "loop").await.unwrap();
    assert!(url.url.starts_with(&format!("{}/authorize?", p.base)));
    assert!(url.url.contains("code_challenge_method=S256"));

    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "Ann@Example.com", "Ann"),
    )
    .await;
    let first = social_login(&env, "loop", &code, &state).await.unwrap();
    assert!(first.created);
    assert_eq!(first.user.email, "Ann@Example.com");
    assert_eq!(first.user.state, authq_protocol::ops::UserState::Active);
    assert_eq!(first.user.profile.to_map()["name"], "Ann");
    let checked = env.client.check(first.session.expose()).await.unwrap();
    assert_eq!(checked.user.id, first.user.id);

    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann B."),
    )
    .await;
    let second = social_login(&env, "loop", &code, &state).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.user.id, first.user.id);
    assert_eq!(second.user.profile.to_map()["name"], "Ann B.");
    assert_ne!(second.session.expose(), first.session.expose());
    // Both sessions live; a social-only user has no password to log in with.
    env.client.check(first.session.expose()).await.unwrap();
    assert_code(
        env.client.login("ann@example.com", PW).await,
        ErrorCode::InvalidCredentials,
    );

    // Suspension ends the social sessions and refuses the social login; lifting it makes the
    // passwordless social user active again (not pending).
    env.client
        .suspend(UserRef::id(&first.user.id))
        .await
        .unwrap();
    assert_code(
        env.client.check(second.session.expose()).await,
        ErrorCode::SessionInvalid,
    );
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::UserSuspended,
    );
    let lifted = env
        .client
        .unsuspend(UserRef::id(&first.user.id))
        .await
        .unwrap();
    assert_eq!(lifted.user.state, authq_protocol::ops::UserState::Active);
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    assert_eq!(
        social_login(&env, "loop", &code, &state)
            .await
            .unwrap()
            .user
            .id,
        first.user.id
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_works_once_for_its_provider_and_expires() {
    let p = Provider::start().await;
    let env = start(
        &p,
        "state_ttl = \"10m\"",
        &[("loop", ""), ("other", "")],
        |_| {},
    )
    .await;
    let ann = || Person::verified("s-1", "ann@example.com", "Ann");

    assert_code(social_url(&env, "nope").await, ErrorCode::UnknownProvider);
    assert_code(
        social_login(&env, "nope", "c", "s").await,
        ErrorCode::UnknownProvider,
    );
    assert_code(
        env.client
            .call(&SocialUrlRequest {
                provider: "loop".into(),
                redirect_uri: Some("https://evil.example/steal".into()),
            })
            .await,
        ErrorCode::BadRequest,
    );

    // A state nobody issued.
    let (code, _) = round_trip(&env, &p, "loop", ann()).await;
    assert_code(
        social_login(&env, "loop", &code, "forged").await,
        ErrorCode::InvalidState,
    );

    // A state issued for another provider (and it is gone afterwards).
    let (code, state) = round_trip(&env, &p, "other", ann()).await;
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::InvalidState,
    );
    assert_code(
        social_login(&env, "other", &code, &state).await,
        ErrorCode::InvalidState,
    );

    // Used once, then refused.
    let (code, state) = round_trip(&env, &p, "loop", ann()).await;
    social_login(&env, "loop", &code, &state).await.unwrap();
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::InvalidState,
    );

    // Expired.
    let (code, state) = round_trip(&env, &p, "loop", ann()).await;
    env.clock.advance(Duration::from_secs(11 * 60));
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::InvalidState,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_email_links_to_the_existing_account_when_the_rule_allows() {
    let p = Provider::start().await;
    let env = start(&p, "link_verified_email = true", &[("loop", "")], |_| {}).await;
    let ann_id = env.active_user("ann@example.com", PW).await;

    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-9", "ANN@example.com", "Ann"),
    )
    .await;
    let login = social_login(&env, "loop", &code, &state).await.unwrap();
    assert!(!login.created);
    assert_eq!(login.user.id, ann_id);
    // The password still works, and it is one account.
    assert_eq!(
        env.client
            .login("ann@example.com", PW)
            .await
            .unwrap()
            .user
            .id,
        ann_id
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_needs_confirmation_when_the_rule_or_the_email_says_so() {
    let p = Provider::start().await;
    let env = start(
        &p,
        "link_verified_email = true",
        &[("strict", "link_verified_email = false"), ("loop", "")],
        |_| {},
    )
    .await;
    let ann_id = env.active_user("ann@example.com", PW).await;

    // Verified, but the provider's rule forbids automatic linking.
    let (code, state) = round_trip(
        &env,
        &p,
        "strict",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    assert_code(
        social_login(&env, "strict", &code, &state).await,
        ErrorCode::LinkRequired,
    );
    // Unverified on a provider whose rule would allow it.
    let mut unverified = Person::verified("s-2", "ann@example.com", "Ann");
    unverified.email_verified = false;
    let (code, state) = round_trip(&env, &p, "loop", unverified.clone()).await;
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::LinkRequired,
    );

    // Completing it: log in with the password, a fresh round trip, link_social.
    let session = env.login("ann@example.com", PW).await;
    let (code, state) = round_trip(
        &env,
        &p,
        "strict",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    let linked = link_social(&env, &session, "strict", &code, &state)
        .await
        .unwrap();
    assert_eq!(linked.user.id, ann_id);
    assert_eq!(linked.subject, "s-1");
    // From now on the social login goes straight to Ann's account.
    let (code, state) = round_trip(
        &env,
        &p,
        "strict",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    let login = social_login(&env, "strict", &code, &state).await.unwrap();
    assert_eq!(login.user.id, ann_id);
    assert!(!login.created);

    // link_social needs a live session, and a provider account links to one user only.
    let (code, state) = round_trip(&env, &p, "loop", unverified.clone()).await;
    assert_code(
        link_social(&env, "dead-session", "loop", &code, &state).await,
        ErrorCode::SessionInvalid,
    );
    let bob_session = env.session("bob@example.com", PW).await;
    let (code, state) = round_trip(
        &env,
        &p,
        "strict",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    assert_code(
        link_social(&env, &bob_session, "strict", &code, &state).await,
        ErrorCode::AlreadyLinked,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_of_nobody_is_not_claimed_by_the_new_user() {
    let p = Provider::start().await;
    let env = start(&p, "", &[("loop", "")], |_| {}).await;
    let mut eve = Person::verified("s-7", "victim@example.com", "Eve");
    eve.email_verified = false;
    let (code, state) = round_trip(&env, &p, "loop", eve).await;
    let login = social_login(&env, "loop", &code, &state).await.unwrap();
    assert!(login.created);
    assert_eq!(
        login.user.email, "",
        "an unverified email is not the user's"
    );
    // The address's owner can still register it.
    let victim = env.active_user("victim@example.com", PW).await;
    assert_ne!(victim, login.user.id);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_failure_has_its_own_code() {
    let p = Provider::start().await;
    let env = start(&p, "http_timeout = \"500ms\"", &[("loop", "")], |_| {}).await;
    let ann = || Person::verified("s-1", "ann@example.com", "Ann");

    let cases = [
        (Some(Mode::Status(400)), None, ErrorCode::ProviderRefused),
        (
            Some(Mode::Status(503)),
            None,
            ErrorCode::ProviderUnavailable,
        ),
        (Some(Mode::Garbage), None, ErrorCode::ProviderBadResponse),
        (None, Some(Mode::Status(401)), ErrorCode::ProviderRefused),
        (
            None,
            Some(Mode::Status(500)),
            ErrorCode::ProviderUnavailable,
        ),
        (None, Some(Mode::Garbage), ErrorCode::ProviderBadResponse),
        (Some(Mode::Hang), None, ErrorCode::ProviderUnavailable),
        (None, Some(Mode::Hang), ErrorCode::ProviderUnavailable),
    ];
    for (token, userinfo, expected) in cases {
        p.token_mode(token.unwrap_or(Mode::Ok));
        p.userinfo_mode(userinfo.unwrap_or(Mode::Ok));
        let (code, state) = round_trip(&env, &p, "loop", ann()).await;
        let result = social_login(&env, "loop", &code, &state).await;
        assert_eq!(
            result.as_ref().err().and_then(ClientError::code),
            Some(expected),
            "{token:?} {userinfo:?}"
        );
        // The state was spent by the failed attempt.
        p.token_mode(Mode::Ok);
        p.userinfo_mode(Mode::Ok);
        assert_code(
            social_login(&env, "loop", &code, &state).await,
            ErrorCode::InvalidState,
        );
    }

    // A wrong code (the provider does not know it).
    let (_, state) = round_trip(&env, &p, "loop", ann()).await;
    assert_code(
        social_login(&env, "loop", "not-a-code", &state).await,
        ErrorCode::ProviderRefused,
    );

    // A profile without a subject.
    let mut nobody = ann();
    nobody.sub = None;
    let (code, state) = round_trip(&env, &p, "loop", nobody).await;
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::MissingSubject,
    );

    // After all that, a normal login works.
    let (code, state) = round_trip(&env, &p, "loop", ann()).await;
    social_login(&env, "loop", &code, &state).await.unwrap();
    p.release();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_does_not_delay_checks_on_the_same_consumer() {
    let p = Provider::start().await;
    // social_login shares the session tube's only consumer with the checks.
    let env = start(&p, "http_timeout = \"60s\"", &[("loop", "")], |c| {
        c.routes.insert(
            authq_protocol::Operation::SocialLogin,
            authq_protocol::Tube::Session,
        );
        c.tubes
            .get_mut(&authq_protocol::Tube::Session)
            .unwrap()
            .consumers = 1;
    })
    .await;
    let session = env.session("bob@example.com", PW).await;
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;

    p.token_mode(Mode::Hang);
    let client = env.client.clone();
    let slow = tokio::spawn(async move {
        client
            .call(&SocialLoginRequest {
                provider: "loop".into(),
                code: code.as_str().into(),
                state: state.as_str().into(),
            })
            .await
    });
    p.wait_until("the token request", |p| p.token_calls() == 1)
        .await;
    for _ in 0..20 {
        env.client.check(&session).await.unwrap();
    }
    assert!(
        !slow.is_finished(),
        "the social login is still waiting for the provider"
    );
    assert_eq!(p.token_calls(), 1);

    p.release();
    let login = slow.await.unwrap().unwrap();
    assert!(login.created);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_beyond_the_bound_are_refused_at_once() {
    let p = Provider::start().await;
    let env = start(
        &p,
        "max_concurrent_calls = 1\nhttp_timeout = \"60s\"",
        &[("loop", "")],
        |_| {},
    )
    .await;
    let ann = || Person::verified("s-1", "ann@example.com", "Ann");
    let (code_a, state_a) = round_trip(&env, &p, "loop", ann()).await;
    let (code_b, state_b) = round_trip(&env, &p, "loop", ann()).await;

    p.token_mode(Mode::Hang);
    let client = env.client.clone();
    let first = tokio::spawn(async move {
        client
            .call(&SocialLoginRequest {
                provider: "loop".into(),
                code: code_a.as_str().into(),
                state: state_a.as_str().into(),
            })
            .await
    });
    p.wait_until("the first token request", |p| p.token_calls() == 1)
        .await;
    assert_code(
        social_login(&env, "loop", &code_b, &state_b).await,
        ErrorCode::ProviderUnavailable,
    );
    assert_eq!(
        p.token_calls(),
        1,
        "the second call never reached the provider"
    );
    p.release();
    first.await.unwrap().unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_sessions_are_rechecked_and_a_refusal_ends_them() {
    let p = Provider::start().await;
    let env = start(
        &p,
        "recheck_interval = \"1h\"\nrecheck_retry = \"10m\"",
        &[("loop", "")],
        |_| {},
    )
    .await;
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    let login = social_login(&env, "loop", &code, &state).await.unwrap();
    let s = login.session.expose();
    let password_session = env.session("bob@example.com", PW).await;

    // Within the interval: no provider call.
    let before = p.userinfo_calls();
    env.client.check(s).await.unwrap();
    assert_eq!(p.userinfo_calls(), before);

    // Past it: refreshed and verified with the provider.
    env.clock.advance(Duration::from_secs(61 * 60));
    env.client.check(s).await.unwrap();
    assert_eq!(p.refresh_calls(), 1);
    assert_eq!(p.userinfo_calls(), before + 1);
    env.client.check(s).await.unwrap();
    assert_eq!(
        p.refresh_calls(),
        1,
        "verified: the next re-check is an interval away"
    );

    // The provider is down at the next re-check: the session lives, the re-check is retried.
    env.clock.advance(Duration::from_secs(61 * 60));
    p.token_mode(Mode::Status(503));
    let token_calls = p.token_calls();
    env.client.check(s).await.unwrap();
    assert_eq!(p.token_calls(), token_calls + 1, "the re-check was tried");
    env.client.check(s).await.unwrap();
    assert_eq!(
        p.token_calls(),
        token_calls + 1,
        "and is retried only after recheck_retry"
    );
    p.token_mode(Mode::Ok);

    // The provider revokes the user's tokens: the next re-check ends the session.
    p.revoke_all();
    env.clock.advance(Duration::from_secs(11 * 60));
    assert_code(env.client.check(s).await, ErrorCode::SessionInvalid);
    assert_code(env.client.check(s).await, ErrorCode::SessionInvalid);
    // Password sessions are never re-checked.
    env.client.check(&password_session).await.unwrap();
    env.stop().await;
}

/// The provider's tokens at rest: sealed when re-checks need them, absent otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_are_kept_sealed_or_not_at_all() {
    let p = Provider::start().await;
    for (recheck, kept) in [("\"1h\"", true), ("\"off\"", false)] {
        let env = start(
            &p,
            &format!("recheck_interval = {recheck}"),
            &[("loop", "")],
            |_| {},
        )
        .await;
        let (code, state) = round_trip(
            &env,
            &p,
            "loop",
            Person::verified("s-1", "ann@example.com", "Ann"),
        )
        .await;
        social_login(&env, "loop", &code, &state).await.unwrap();
        let sealed: Option<Vec<u8>> = env
            .db(|tx| tx.query_value("SELECT tokens_sealed FROM social_sessions", &[]))
            .unwrap();
        assert_eq!(sealed.is_some(), kept, "recheck_interval = {recheck}");
        if let Some(sealed) = sealed {
            assert!(
                !sealed.windows(7).any(|w| w == b"access-"),
                "no token in clear"
            );
            assert!(
                !sealed.windows(8).any(|w| w == b"refresh-"),
                "no token in clear"
            );
        }
        assert_eq!(env.count("oauth_states"), 0, "the used state is gone");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_refresh_token_the_recheck_uses_the_access_token() {
    let p = Provider::start().await;
    p.issue_refresh_tokens(false);
    let env = start(&p, "recheck_interval = \"1h\"", &[("loop", "")], |_| {}).await;
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "ann@example.com", "Ann"),
    )
    .await;
    let login = social_login(&env, "loop", &code, &state).await.unwrap();
    let s = login.session.expose();

    env.clock.advance(Duration::from_secs(61 * 60));
    let (tokens, userinfo) = (p.token_calls(), p.userinfo_calls());
    env.client.check(s).await.unwrap();
    assert_eq!(p.token_calls(), tokens, "nothing to refresh");
    assert_eq!(p.userinfo_calls(), userinfo + 1);

    p.revoke_all();
    env.clock.advance(Duration::from_secs(61 * 60));
    assert_code(env.client.check(s).await, ErrorCode::SessionInvalid);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_social_login_completes_a_pending_registration() {
    let p = Provider::start().await;
    let env = start(&p, "", &[("loop", "")], |_| {}).await;
    let reg = env.client.register("carol@example.com").await.unwrap();

    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-3", "carol@example.com", "Carol"),
    )
    .await;
    let login = social_login(&env, "loop", &code, &state).await.unwrap();
    assert_eq!(login.user.id, reg.user_id);
    assert_eq!(login.user.state, authq_protocol::ops::UserState::Active);
    assert!(!login.created);
    // The registration's code is spent: the account is active and has no password yet.
    assert_code(
        env.client
            .confirm_registration("carol@example.com", reg.code.expose(), PW)
            .await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_policies_also_refuse_social_logins() {
    let p = Provider::start().await;
    let env = start(&p, "", &[("loop", "")], |c| {
        c.policy.deny = vec!["@blocked.example".into()];
    })
    .await;
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-9", "mal@blocked.example", "Mal"),
    )
    .await;
    let refused = social_login(&env, "loop", &code, &state).await.unwrap_err();
    assert_eq!(refused.code(), Some(authq::ErrorCode::PolicyDenied));
    assert_eq!(env.count("users"), 0, "no user was created");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_logins_and_links_publish_login_events_with_their_method() {
    use authq_protocol::events::EventKind;
    let p = Provider::start().await;
    let env = start(&p, "", &[("loop", "")], |_| {}).await;
    let queue = format!("{}.test-logins", env.config.namespace);
    let mut logins = crate::events::subscribe(&env, &queue, &["auth.login.#"]).await;
    let ann_id = env.active_user("ann@example.com", PW).await;

    // A password login: method `password`.
    let session = env.login("ann@example.com", PW).await;
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(e.kind, EventKind::LoginSucceeded);
    assert_eq!(e.data.method.as_deref(), Some("password"));
    assert_eq!(e.data.provider, None);

    // A social login that succeeds: method `social`, the provider, the user.
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "bob@example.com", "Bob"),
    )
    .await;
    let bob = social_login(&env, "loop", &code, &state).await.unwrap();
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(e.kind, EventKind::LoginSucceeded);
    assert_eq!(e.data.method.as_deref(), Some("social"));
    assert_eq!(e.data.provider.as_deref(), Some("loop"));
    assert_eq!(e.data.user_id.as_deref(), Some(bob.user.id.as_str()));

    // A social login that fails (the email is Ann's, unverified: link required).
    let mut unverified = Person::verified("s-2", "ann@example.com", "Ann");
    unverified.email_verified = false;
    let (code, state) = round_trip(&env, &p, "loop", unverified.clone()).await;
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::LinkRequired,
    );
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(e.kind, EventKind::LoginFailed);
    assert_eq!(e.data.reason.as_deref(), Some("link_required"));
    assert_eq!(e.data.method.as_deref(), Some("social"));
    assert_eq!(e.data.provider.as_deref(), Some("loop"));

    // A used state: a failed social login too.
    assert_code(
        social_login(&env, "loop", &code, &state).await,
        ErrorCode::InvalidState,
    );
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(
        (e.kind, e.data.reason.as_deref()),
        (EventKind::LoginFailed, Some("invalid_state"))
    );

    // link_social: Ann authenticates with the provider; an event with her id.
    let (code, state) = round_trip(&env, &p, "loop", unverified.clone()).await;
    link_social(&env, &session, "loop", &code, &state)
        .await
        .unwrap();
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(e.kind, EventKind::LoginSucceeded);
    assert_eq!(e.data.method.as_deref(), Some("social"));
    assert_eq!(e.data.user_id.as_deref(), Some(ann_id.as_str()));
    // …and a refused link (the provider account is Bob's) is a failed one.
    let (code, state) = round_trip(
        &env,
        &p,
        "loop",
        Person::verified("s-1", "bob@example.com", "Bob"),
    )
    .await;
    assert_code(
        link_social(&env, &session, "loop", &code, &state).await,
        ErrorCode::AlreadyLinked,
    );
    let (_, e) = crate::events::next_event(&mut logins).await;
    assert_eq!(
        (e.kind, e.data.reason.as_deref(), e.data.user_id.as_deref()),
        (
            EventKind::LoginFailed,
            Some("already_linked"),
            Some(ann_id.as_str())
        )
    );
    env.stop().await;
}

/// Serves a policy hook on `queue` that denies every question naming a user and sends each
/// question it gets to `seen`.
async fn serve_recording_hook(
    env: &TestEnv,
    queue: &str,
    seen: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) {
    use futures_util::StreamExt;
    use lapin::BasicProperties;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let raw = env.raw().await;
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    raw.channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let mut requests = raw
        .channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let q: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
            let answer = if q["user_id"].is_string() {
                serde_json::json!({"allow": false, "reason": "no such user here"})
            } else {
                serde_json::json!({"allow": true})
            };
            let _ = seen.send(q);
            let props = BasicProperties::default()
                .with_correlation_id(d.properties.correlation_id().clone().unwrap());
            raw.channel
                .basic_publish(
                    "".into(),
                    d.properties.reply_to().clone().unwrap(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(&answer).unwrap(),
                    props,
                )
                .await
                .unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_identity_without_email_still_goes_through_the_policy_hook_with_its_user() {
    use authq_protocol::events::EventKind;
    let p = Provider::start().await;
    let hook = format!("authq-test-hook-{}", uuid::Uuid::new_v4().simple());
    let env = start(&p, "", &[("loop", "")], |c| {
        c.policy.hook_queue = Some(hook.clone());
    })
    .await;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    serve_recording_hook(&env, &hook, tx).await;
    let queue = format!("{}.test-failed", env.config.namespace);
    let mut failed = crate::events::subscribe(&env, &queue, &["auth.login.failed"]).await;

    let nobody = Person {
        sub: Some("s-no-email".into()),
        email: None,
        email_verified: false,
        name: None,
    };
    let (code, state) = round_trip(&env, &p, "loop", nobody).await;
    let refused = social_login(&env, "loop", &code, &state).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::PolicyDenied), "{refused}");
    let question = tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("the hook was asked")
        .unwrap();
    assert_eq!(question["event"], "login");
    let user_id = question["user_id"]
        .as_str()
        .expect("the hook got the user id");
    let (_, e) = crate::events::next_event(&mut failed).await;
    assert_eq!(e.kind, EventKind::LoginFailed);
    assert_eq!(e.data.reason.as_deref(), Some("policy_denied"));
    assert_eq!(e.data.detail.as_deref(), Some("no such user here"));
    assert_eq!(e.data.user_id.as_deref(), Some(user_id));
    assert_eq!(e.data.method.as_deref(), Some("social"));
    assert_eq!(
        env.count("users"),
        0,
        "the refused first login left no account"
    );
    assert_eq!(env.count("sessions"), 0, "no session left");
    env.stop().await;
}
