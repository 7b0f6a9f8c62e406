//! Secrets never leave: a full walk-through, every error path included, with the worker's and
//! the client's tracing output captured at TRACE level (lapin's too), then searched for every
//! secret the walk-through used. Its own test binary, so its global subscriber sees only it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;

use authq::ErrorCode;
use authq::protocol::ops::UserRef;
use harness::{Raw, TestEnv};
use lapin::BasicProperties;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` contains `secret` not embedded in a longer run of digits (codes are 8
/// digits; a timestamp may contain any 8 digits by chance).
fn contains_secret(text: &str, secret: &str) -> bool {
    let all_digits = secret.bytes().all(|b| b.is_ascii_digit());
    text.match_indices(secret).any(|(i, _)| {
        if !all_digits {
            return true;
        }
        let before = text[..i].chars().next_back();
        let after = text[i + secret.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_a_full_walk_through_appears_in_trace_logs_replies_or_dead_letters() {
    let capture = Capture::default();
    let writer = capture.clone();
    // The JSON format, as `authq serve --log-format json` writes it.
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut secrets: Vec<String> = Vec::new();
    let mut replies: Vec<String> = Vec::new();
    let pw = "Walkthrough-Secret-Passw0rd!";
    let pw2 = "Second-Secret-Passw0rd!";
    let pw3 = "Third-Secret-Passw0rd!";
    let wrong = "Wrong-Guess-Passw0rd!";
    secrets.extend([pw, pw2, pw3, wrong].map(str::to_owned));

    // A social login provider whose client secret and sealing key must not leak either; it
    // listens nowhere, so the login takes the provider-unavailable error path.
    let provider_secret = "Provider-Client-Secret-7777";
    let social_key = {
        use base64::Engine;
        let bytes: Vec<u8> = uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::new_v4().as_bytes())
            .copied()
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    secrets.extend([provider_secret.to_owned(), social_key.clone()]);
    let social = authq_worker::config::social::from_toml(
        &format!(
            "[social]\nkey = \"{social_key}\"\nhttp_timeout = \"2s\"\n\
             [social.providers.corp]\n\
             authorization_url = \"http://127.0.0.1:1/authorize\"\n\
             token_url = \"http://127.0.0.1:1/token\"\n\
             userinfo_url = \"http://127.0.0.1:1/userinfo\"\n\
             scopes = [\"openid\"]\n\
             client_id = \"authq\"\n\
             client_secret = \"{provider_secret}\"\n\
             redirect_uri = \"http://127.0.0.1:1/cb\"\n"
        ),
        &|_| None,
    )
    .unwrap();
    let env = TestEnv::start_with(|c| {
        c.limits.login_failures = 3;
        c.social = social;
        // Access tokens and their signing keys must not leak either.
        c.tokens.enabled = true;
    })
    .await;
    let server =
        authq_worker::keys::ServerKey::load_or_create(&env.config.key_path().unwrap()).unwrap();
    let key = authq_worker::crypto::CodeKey::from_server_key(&server)
        .expose()
        .to_vec();
    let c = &env.client;
    let mut note = |r: Result<String, authq::ClientError>| {
        replies.push(match r {
            Ok(s) => s,
            Err(e) => format!("{e} {e:?}"),
        })
    };

    // Registration: weak password, wrong code, right code.
    let reg = c.register("walk@example.com").await.unwrap();
    secrets.push(reg.code.expose().to_owned());
    note(
        c.confirm_registration("walk@example.com", reg.code.expose(), "password")
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.confirm_registration("walk@example.com", "00000000", pw)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.confirm_registration("walk@example.com", reg.code.expose(), pw)
            .await
            .map(|r| format!("{r:?}")),
    );

    // Logins: wrong password, unknown email, right password.
    note(
        c.login("walk@example.com", wrong)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.login("nobody@example.com", pw)
            .await
            .map(|r| format!("{r:?}")),
    );
    let login = c.login("walk@example.com", pw).await.unwrap();
    let session = login.session.expose().to_owned();
    secrets.push(session.clone());
    let access = login.access_token.as_ref().expect("an access token");
    secrets.push(access.expose().to_owned());
    // Its signature alone, and the payload alone (a log line might cut the token up).
    secrets.extend(access.expose().split('.').skip(1).map(str::to_owned));
    note(Ok(format!("{login:?}")));
    // Refresh tokens: the login's, a rotation's, and a reuse (which ends a session, logged).
    let extra = c.login("walk@example.com", pw).await.unwrap();
    let first = extra.refresh_token.expect("a refresh token");
    secrets.push(first.expose().to_owned());
    secrets.push(login.refresh_token.as_ref().unwrap().expose().to_owned());
    let rotated = c
        .call(&authq::protocol::ops::RefreshRequest {
            refresh_token: first.clone(),
        })
        .await
        .unwrap();
    secrets.push(rotated.refresh_token.expose().to_owned());
    secrets.push(rotated.access_token.expose().to_owned());
    note(Ok(format!("{rotated:?}")));
    // A service client: its secret (at creation and rotation) and its token.
    let svc = c
        .call(&authq::protocol::ops::CreateServiceClientRequest {
            name: "billing".into(),
            scopes: vec!["invoices:read".into()],
        })
        .await
        .unwrap();
    secrets.push(svc.client_secret.expose().to_owned());
    note(Ok(format!("{svc:?}")));
    let svc_token = c
        .call(&authq::protocol::ops::ServiceTokenRequest {
            client_id: svc.client_id.clone(),
            client_secret: svc.client_secret.clone(),
        })
        .await
        .unwrap();
    secrets.push(svc_token.access_token.expose().to_owned());
    note(Ok(format!("{svc_token:?}")));
    let svc_rotated = c
        .call(&authq::protocol::ops::RotateServiceClientSecretRequest {
            client_id: svc.client_id.clone(),
        })
        .await
        .unwrap();
    secrets.push(svc_rotated.client_secret.expose().to_owned());
    note(
        c.call(&authq::protocol::ops::ServiceTokenRequest {
            client_id: svc.client_id.clone(),
            client_secret: svc.client_secret.clone(),
        })
        .await
        .map(|r| format!("{r:?}")),
    );
    note(
        c.call(&authq::protocol::ops::RefreshRequest {
            refresh_token: first,
        })
        .await
        .map(|r| format!("{r:?}")),
    );
    note(c.check(&session).await.map(|r| format!("{r:?}")));

    // Password change: wrong old password, then right; the session survives.
    note(
        c.change_password(&session, wrong, pw2)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.change_password(&session, pw, pw2)
            .await
            .map(|r| format!("{r:?}")),
    );

    // Reset: wrong token, weak password, right token.
    let reset = c.start_reset("walk@example.com").await.unwrap();
    secrets.push(reset.token.expose().to_owned());
    let decoy = c.start_reset("nobody@example.com").await.unwrap();
    secrets.push(decoy.token.expose().to_owned());
    note(
        c.complete_reset("walk@example.com", "not-the-token", pw3)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.complete_reset("walk@example.com", reset.token.expose(), "qwerty123")
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.complete_reset("walk@example.com", reset.token.expose(), pw3)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(c.check(&session).await.map(|r| format!("{r:?}")));

    // Lockout: three wrong guesses, then even the right password is refused.
    for _ in 0..4 {
        note(
            c.login("walk@example.com", wrong)
                .await
                .map(|r| format!("{r:?}")),
        );
    }
    note(
        c.login("walk@example.com", pw3)
            .await
            .map(|r| format!("{r:?}")),
    );
    env.clock.advance(env.config.limits.login_window);
    let s2 = c.login("walk@example.com", pw3).await.unwrap();
    secrets.push(s2.session.expose().to_owned());
    note(
        c.logout(s2.session.expose())
            .await
            .map(|r| format!("{r:?}")),
    );
    note(
        c.logout(s2.session.expose())
            .await
            .map(|r| format!("{r:?}")),
    );

    // Administration.
    let user = || UserRef {
        user_id: None,
        email: Some("walk@example.com".into()),
    };
    note(c.suspend(user()).await.map(|r| format!("{r:?}")));
    note(
        c.login("walk@example.com", pw3)
            .await
            .map(|r| format!("{r:?}")),
    );
    note(c.delete_user(user()).await.map(|r| format!("{r:?}")));

    // Social login against a provider that is not there: the code and state are secrets too.
    let start = c.social_url("corp", None).await.unwrap();
    secrets.push(start.state.expose().to_owned());
    let auth_code = "Provider-Auth-Code-5555";
    secrets.push(auth_code.into());
    let social = c
        .social_login("corp", auth_code, start.state.expose())
        .await;
    assert_eq!(
        social.as_ref().err().and_then(authq::ClientError::code),
        Some(ErrorCode::ProviderUnavailable),
        "the provider error path ran"
    );
    note(social.map(|r| format!("{r:?}")));

    // Malformed requests carrying secrets: wrongly typed, truncated, oversized, unanswerable.
    let typed = br#"{"email":"walk@example.com","password":987654321987}"#;
    secrets.push("987654321987".into());
    let truncated = format!(r#"{{"email":"walk@example.com","password":"{pw}""#);
    for (op, body) in [
        ("login", typed.to_vec()),
        ("login", truncated.clone().into_bytes()),
    ] {
        let r = c
            .call_raw(op, &body, Duration::from_secs(20))
            .await
            .unwrap();
        replies.push(String::from_utf8_lossy(&r).into_owned());
    }
    let raw = env.raw().await;
    let mut dead = raw.dead_letters().await;
    let mut dead_bodies = Vec::new();
    for body in [typed.to_vec(), truncated.into_bytes()] {
        // No reply_to: dead-lettered.
        raw.publish("login", &body, BasicProperties::default())
            .await;
        let d = Raw::next(&mut dead).await;
        dead_bodies.push(String::from_utf8_lossy(&d.data).into_owned());
    }
    // A broker URL with a password that cannot connect.
    let url_pw = "Url-Secret-Pw-4242";
    secrets.push(url_pw.into());
    let mut bad = env.config.clone();
    bad.amqp_url = format!("amqp://guest:{url_pw}@127.0.0.1:1/%2f");
    let err = authq_worker::WorkerHandle::start(bad).await.unwrap_err();
    replies.push(format!("{err} {err:?}"));
    let cerr = authq::Client::connect(&format!("amqp://guest:{url_pw}@127.0.0.1:1/%2f"))
        .await
        .unwrap_err();
    replies.push(format!("{cerr} {cerr:?}"));
    replies.push(format!("{:?}", env.config));
    let shut = env.metrics();
    // The signing keys' private halves as stored (sealed): no log shows them either way.
    let sealed: Vec<Vec<u8>> =
        env.db(|tx| tx.query_all("SELECT sealed_private FROM signing_keys", &[], |r| r.get(0)));
    assert!(!sealed.is_empty(), "a signing key was made");
    for blob in &sealed {
        use base64::Engine as _;
        secrets.push(blob.iter().map(|b| format!("{b:02x}")).collect());
        secrets.push(base64::engine::general_purpose::STANDARD.encode(blob));
        secrets.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob));
    }
    env.stop().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("TRACE") && logs.contains("request"),
        "the capture saw trace output and request spans"
    );
    // Every line is one JSON object, and every line written while a request was handled carries
    // its operation and its request id (the `message_id`, or one the worker made).
    let mut in_requests = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let Some(request) = v["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        else {
            continue;
        };
        in_requests += 1;
        assert!(request["op"].is_string(), "no operation: {line}");
        assert!(request["request_id"].is_string(), "no request id: {line}");
    }
    assert!(in_requests > 100, "{in_requests} lines inside requests");
    assert!(shut.replied_error >= 15, "the error paths ran: {shut:?}");
    let hex_key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let key_text = String::from_utf8_lossy(&key).into_owned();
    for (what, text) in [
        ("logs", &logs),
        ("replies", &replies.join("\n")),
        ("dead letters", &dead_bodies.join("\n")),
    ] {
        for s in &secrets {
            assert!(!contains_secret(text, s), "{what} contain the secret {s:?}");
        }
        assert!(!text.contains(&hex_key), "{what} contain the code key");
        assert!(key_text.len() < 8 || !text.contains(&key_text));
    }
    assert!(
        dead_bodies[0].contains("[redacted]"),
        "dead letters keep the body with its secrets redacted: {}",
        dead_bodies[0]
    );
}
