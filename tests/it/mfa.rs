//! The TOTP second factor: enrolment and confirmation, `mfa_required` logins finished by
//! `mfa_verify`, the acceptance window on a ManualClock, replay, the attempt limit, recovery
//! codes under concurrency, `mfa_disable`, and a stolen password through every flow (login,
//! social login, reset) yielding no session.

use crate::events::{next_event, subscribe};
use crate::harness::{TestEnv, assert_code};
use crate::provider::{Person, Provider};
use authq::types::UserRef;
use authq::{Client, ClientError, ErrorCode};
use authq_protocol::events::EventKind;
use futures_util::future::join_all;
use std::time::Duration;
use totp_rs::TOTP;

pub(crate) const PW: &str = "correct horse battery";
const ANN: &str = "ann@example.com";
const STEP: Duration = Duration::from_secs(30);

/// A user with the second factor on.
pub(crate) struct Enrolled {
    pub(crate) user_id: String,
    /// A session opened before enrolment.
    session: String,
    pub(crate) totp: TOTP,
    recovery: Vec<String>,
}

/// The code of the time step `steps` away from now on the worker's clock.
pub(crate) fn code(env: &TestEnv, totp: &TOTP, steps: i64) -> String {
    let secs = env.clock_now().div_euclid(1000) + steps * 30;
    totp.generate(u64::try_from(secs).unwrap())
}

/// Registers `email`, enrols and confirms its second factor, then moves the clock one step on
/// (the confirming code's step is used up).
pub(crate) async fn enrolled(env: &TestEnv, email: &str) -> Enrolled {
    let user_id = env.active_user(email, PW).await;
    let session = env.login(email, PW).await;
    let c = &env.client;
    let enrol = c.mfa_enroll(&session).await.unwrap();
    assert!(enrol.uri.expose().starts_with("otpauth://totp/"));
    assert!(enrol.uri.expose().contains(enrol.secret.expose()));
    assert_eq!((enrol.digits, enrol.period), (6, 30));
    let totp = TOTP::from_url_unchecked(enrol.uri.expose()).expect("an otpauth URI");
    assert_code(
        c.mfa_confirm(&session, &code(env, &totp, 3)).await,
        ErrorCode::InvalidCode,
    );
    let confirmed = c.mfa_confirm(&session, &code(env, &totp, 0)).await.unwrap();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    env.clock.advance(STEP);
    Enrolled {
        user_id,
        session,
        totp,
        recovery: confirmed
            .recovery_codes
            .iter()
            .map(|c| c.expose().to_owned())
            .collect(),
    }
}

/// The pending handle of an `mfa_required` answer.
#[track_caller]
pub(crate) fn pending<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::MfaRequired(p)) => p.handle.expose().to_owned(),
        other => panic!("expected mfa_required, got {other:?}"),
    }
}

/// Logs in with the password: `mfa_required`'s handle.
async fn handle(c: &Client) -> String {
    pending(c.login(ANN, PW).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_user_logs_in_with_the_password_then_a_code() {
    let env = TestEnv::start().await;
    let queue = format!("{}.test-mfa-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["mfa.changed", "auth.login.succeeded"]).await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let (_, seen) = next_event(&mut events).await; // enrolled()'s own login, before enrolment
    assert_eq!(seen.kind, EventKind::LoginSucceeded);
    for (change, left) in [("enrollment_started", None), ("enabled", Some(10))] {
        let (_, seen) = next_event(&mut events).await;
        assert_eq!(seen.kind, EventKind::MfaChanged);
        assert_eq!(seen.data.change.as_deref(), Some(change));
        assert_eq!(seen.data.recovery_codes_left, left);
        assert_eq!(seen.data.user_id.as_deref(), Some(e.user_id.as_str()));
    }
    // Enrolled: a second enrolment or confirmation is refused.
    assert_code(c.mfa_enroll(&e.session).await, ErrorCode::MfaEnabled);
    // The secret is sealed at rest, the recovery codes kept as digests.
    let secret = e.totp.secret.clone();
    let (sealed, digests) = env.db(|tx| {
        let sealed: Option<Vec<u8>> = tx.query_value("SELECT secret_sealed FROM mfa_totp", &[])?;
        let digests = tx.query_all("SELECT digest FROM mfa_recovery_codes", &[], |r| {
            r.get::<Vec<u8>>(0)
        })?;
        Ok((sealed.unwrap(), digests))
    });
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert_eq!(digests.len(), 10);
    for code in &e.recovery {
        assert!(
            !digests
                .iter()
                .any(|d| d.windows(4).any(|w| w == &code.as_bytes()[..4]))
        );
    }

    let sessions = env.count(&format!("sessions WHERE user_id = '{}'", e.user_id));
    let handle = pending(
        c.login_from(ANN, PW, Some("203.0.113.7"), Some("Phone/1.0"))
            .await,
    );
    assert_eq!(
        env.count(&format!("sessions WHERE user_id = '{}'", e.user_id)),
        sessions,
        "mfa_required opens no session"
    );
    let login = c
        .mfa_verify(&handle, &code(&env, &e.totp, 0))
        .await
        .unwrap();
    assert_eq!(login.user.id, e.user_id);
    c.check(login.session.expose()).await.unwrap();
    // The session carries the login's device metadata.
    let listed = c.list_sessions(login.session.expose()).await.unwrap();
    let current = listed.sessions.iter().find(|s| s.current).unwrap();
    assert_eq!(current.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(current.client_ip.as_deref(), Some("203.0.113.7"));
    let (_, seen) = next_event(&mut events).await;
    assert_eq!(seen.kind, EventKind::LoginSucceeded);
    assert_eq!(seen.data.method.as_deref(), Some("password"));

    // The handle is single use, whatever the code.
    env.clock.advance(STEP);
    assert_code(
        c.mfa_verify(&handle, &code(&env, &e.totp, 0)).await,
        ErrorCode::InvalidCode,
    );
    // And short-lived.
    let late = self::handle(c).await;
    env.clock.advance(Duration::from_secs(6 * 60));
    assert_code(
        c.mfa_verify(&late, &code(&env, &e.totp, 0)).await,
        ErrorCode::InvalidCode,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_one_step_off_are_accepted_two_off_refused_and_none_twice() {
    let env = TestEnv::start().await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    // The ManualClock also moves with real time: place it 2 s into a step, so the test has
    // seconds of margin before the next boundary.
    let into_step = env.clock_now().rem_euclid(30_000);
    env.clock.advance(Duration::from_millis(
        u64::try_from(30_000 - into_step + 2_000).unwrap(),
    ));
    let h = handle(c).await;
    for steps in [-2, 2, 3] {
        assert_code(
            c.mfa_verify(&h, &code(&env, &e.totp, steps)).await,
            ErrorCode::InvalidCode,
        );
    }
    // The previous step's code, early in this step.
    let previous = code(&env, &e.totp, -1);
    c.mfa_verify(&h, &previous).await.unwrap();
    // A replay, within its window, on a fresh handle: refused.
    let h = handle(c).await;
    assert_code(c.mfa_verify(&h, &previous).await, ErrorCode::InvalidCode);
    // The next step's code, late in this step.
    env.clock.advance(Duration::from_secs(25));
    let next = code(&env, &e.totp, 1);
    c.mfa_verify(&h, &next).await.unwrap();
    // The current code is of a step before the one accepted last: refused too.
    let h = handle(c).await;
    assert_code(
        c.mfa_verify(&h, &code(&env, &e.totp, 0)).await,
        ErrorCode::InvalidCode,
    );
    // In the next step, `next` is the current step's code: still used up.
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(code(&env, &e.totp, 0), next);
    assert_code(c.mfa_verify(&h, &next).await, ErrorCode::InvalidCode);
    c.mfa_verify(&h, &code(&env, &e.totp, 1)).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_lock_the_second_factor_until_the_window_ends() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 3).await;
    let queue = format!("{}.test-mfa-failed", env.config.namespace);
    let mut failed = subscribe(&env, &queue, &["auth.login.failed"]).await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let h = handle(c).await;
    let wrong = |n: i64| code(&env, &e.totp, 5 + n);
    for n in 0..3 {
        assert_code(c.mfa_verify(&h, &wrong(n)).await, ErrorCode::InvalidCode);
        let (_, seen) = next_event(&mut failed).await;
        assert_eq!(seen.data.reason.as_deref(), Some("invalid_code"));
        assert_eq!(seen.data.user_id.as_deref(), Some(e.user_id.as_str()));
    }
    // Locked: even the right code, and a recovery code, are refused unchecked.
    assert_code(
        c.mfa_verify(&h, &code(&env, &e.totp, 0)).await,
        ErrorCode::TooManyAttempts,
    );
    assert_code(
        c.mfa_recover(&h, &e.recovery[0]).await,
        ErrorCode::TooManyAttempts,
    );
    let (_, seen) = next_event(&mut failed).await;
    assert_eq!(seen.data.reason.as_deref(), Some("too_many_attempts"));
    // The lock is the user's, not the handle's: a new login's handle is locked too.
    let h2 = handle(c).await;
    assert_code(
        c.mfa_verify(&h2, &code(&env, &e.totp, 0)).await,
        ErrorCode::TooManyAttempts,
    );
    // mfa_disable's checks count on the same counter.
    assert_code(
        c.mfa_disable_with_password(&e.session, PW).await,
        ErrorCode::TooManyAttempts,
    );
    env.clock.advance(env.config.limits.login_window);
    let h = handle(c).await;
    c.mfa_verify(&h, &code(&env, &e.totp, 0)).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_used_sixteen_times_at_once_works_exactly_once() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 24).await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let mut handles = Vec::new();
    for _ in 0..16 {
        handles.push(handle(c).await);
    }
    let code = e.recovery[0].clone();
    let results = join_all(handles.iter().map(|h| c.mfa_recover(h, &code))).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_code(r, ErrorCode::InvalidCode);
    }
    assert_eq!(env.count("mfa_recovery_codes"), 9);
    // Used up; another code works once, written with other case and spacing.
    let h = handle(c).await;
    assert_code(c.mfa_recover(&h, &code).await, ErrorCode::InvalidCode);
    let other = e.recovery[1].to_uppercase().replace('-', " ");
    c.mfa_recover(&h, &other).await.unwrap();
    let h = handle(c).await;
    assert_code(
        c.mfa_recover(&h, &e.recovery[1]).await,
        ErrorCode::InvalidCode,
    );
    // Exactly one of code and recovery code.
    let both = c
        .call(&authq_protocol::ops::MfaVerifyRequest {
            handle: h.as_str().into(),
            code: Some(self::code(&env, &e.totp, 0).as_str().into()),
            recovery_code: Some(e.recovery[2].as_str().into()),
        })
        .await;
    assert_code(both, ErrorCode::BadRequest);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_sixteen_times_at_once_to_two_workers_opens_one_session() {
    let env = TestEnv::start_with(|c| c.limits.login_failures = 24).await;
    let _second = env.second_worker().await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let mut handles = Vec::new();
    for _ in 0..16 {
        handles.push(handle(c).await);
    }
    let now = code(&env, &e.totp, 0);
    let results = join_all(handles.iter().map(|h| c.mfa_verify(h, &now))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.into_iter().filter(Result::is_err) {
        assert_code(r, ErrorCode::InvalidCode);
    }
    // Deleting the user takes the second factor with it.
    c.delete_user(authq_protocol::ops::UserRef::email(ANN))
        .await
        .unwrap();
    assert_eq!(env.count("mfa_totp"), 0);
    assert_eq!(env.count("mfa_recovery_codes"), 0);
    assert_eq!(env.count("mfa_pending"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_disable_takes_a_fresh_code_or_the_password() {
    let env = TestEnv::start().await;
    let queue = format!("{}.test-mfa-disable", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["mfa.changed"]).await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    // An administrator sees the factor on (`get_user`, `authq user show`), then off.
    let mfa_on = || async { c.get_user(UserRef::email(ANN)).await.unwrap().mfa };
    assert!(mfa_on().await);
    assert_code(
        c.mfa_disable_with_password(&e.session, "not the password")
            .await,
        ErrorCode::InvalidCredentials,
    );
    c.mfa_disable_with_password(&e.session, PW).await.unwrap();
    assert!(!mfa_on().await);
    assert_code(
        c.mfa_disable_with_password(&e.session, PW).await,
        ErrorCode::MfaNotEnabled,
    );
    // Off: the password alone logs in again, and nothing of the factor is left.
    c.login(ANN, PW).await.unwrap();
    assert_eq!(env.count("mfa_totp"), 0);
    assert_eq!(env.count("mfa_recovery_codes"), 0);
    for change in ["enrollment_started", "enabled", "disabled"] {
        let (_, seen) = next_event(&mut events).await;
        assert_eq!(seen.data.change.as_deref(), Some(change));
    }

    // On again, with a new secret; then off with a code.
    let enrol = c.mfa_enroll(&e.session).await.unwrap();
    let totp = TOTP::from_url_unchecked(enrol.uri.expose()).unwrap();
    assert_ne!(totp.secret, e.totp.secret);
    let first = code(&env, &totp, 0);
    c.mfa_confirm(&e.session, &first).await.unwrap();
    // The confirming code is used up, and a wrong one is no proof.
    assert_code(
        c.mfa_disable_with_code(&e.session, &first).await,
        ErrorCode::InvalidCode,
    );
    assert_code(
        c.mfa_disable_with_code(&e.session, &code(&env, &totp, 4))
            .await,
        ErrorCode::InvalidCode,
    );
    c.mfa_disable_with_code(&e.session, &code(&env, &totp, 1))
        .await
        .unwrap();
    c.login(ANN, PW).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_password_yields_no_session_through_login_or_reset() {
    let env = TestEnv::start().await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let sessions = || env.count(&format!("sessions WHERE user_id = '{}'", e.user_id));
    let before = sessions();
    pending(c.login(ANN, PW).await);
    pending(c.login_from(ANN, PW, Some("198.51.100.1"), None).await);
    assert_eq!(sessions(), before);
    // A reset (the attacker controls the mailbox too, say) sets a password but opens no
    // session, ends the others, and leaves the second factor on.
    let reset = c.start_reset(ANN).await.unwrap();
    let done = c
        .complete_reset(ANN, reset.token.expose(), "a brand new password")
        .await
        .unwrap();
    assert_eq!(done.sessions_ended, before as u64);
    assert_eq!(sessions(), 0);
    pending(c.login(ANN, "a brand new password").await);
    assert_eq!(sessions(), 0);
    assert_eq!(env.count("mfa_totp WHERE enabled_at IS NOT NULL"), 1);
    // With the code, the owner gets in.
    let h = pending(c.login(ANN, "a brand new password").await);
    c.mfa_verify(&h, &code(&env, &e.totp, 0)).await.unwrap();
    assert_eq!(sessions(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_social_login_of_an_enrolled_user_stops_at_mfa_required() {
    let p = Provider::start().await;
    let social = authq_worker::config::social::from_toml(
        &format!("[social]\n{}", p.toml("loop", "")),
        &|_| None,
    )
    .unwrap();
    let env = TestEnv::start_with(|c| c.social = social).await;
    let queue = format!("{}.test-mfa-social", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["auth.login.succeeded"]).await;
    let e = enrolled(&env, ANN).await;
    let c = &env.client;
    let (_, first) = next_event(&mut events).await; // enrolled()'s own login
    assert_eq!(first.data.method.as_deref(), Some("password"));
    // Ann links her provider account (with her live session).
    let round_trip = || async {
        p.next_person(Person::verified("s-1", ANN, "Ann"));
        let url = c.social_url("loop", None).await.unwrap();
        p.browse(&url.url).await
    };
    let (code_, state) = round_trip().await;
    c.link_social(&e.session, "loop", &code_, &state)
        .await
        .unwrap();
    let (_, linked) = next_event(&mut events).await;
    assert_eq!(linked.data.method.as_deref(), Some("social"));

    let sessions = || env.count(&format!("sessions WHERE user_id = '{}'", e.user_id));
    let before = sessions();
    let (code_, state) = round_trip().await;
    let h = pending(c.social_login("loop", &code_, &state).await);
    assert_eq!(sessions(), before, "no session before the second factor");
    assert_eq!(env.count("social_sessions"), 0);
    let login = c.mfa_verify(&h, &code(&env, &e.totp, 0)).await.unwrap();
    assert_eq!(login.user.id, e.user_id);
    assert_eq!(sessions(), before + 1);
    let (_, seen) = next_event(&mut events).await;
    assert_eq!(seen.kind, EventKind::LoginSucceeded);
    assert_eq!(
        (seen.data.method.as_deref(), seen.data.provider.as_deref()),
        (Some("social"), Some("loop"))
    );
    env.stop().await;
}
