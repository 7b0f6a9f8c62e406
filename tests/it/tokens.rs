//! Signed access tokens (issue 17): issued by `login` beside the session, verified locally
//! with the published keys (`jwks`, the JWKS file), expiry on the worker's clock, key rotation
//! (old tokens verify until their key leaves the set), workers agreeing on the active key, and
//! the verifier's refusals.

use crate::harness::TestEnv;
use authq::protocol::ops::{AccessClaims, JwksReply, JwksRequest};
use authq::verify::{Verifier, VerifyError};
use authq_worker::config::Config;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::join_all;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PW: &str = "correct horse battery";
const ANN: &str = "ann@example.com";

/// Tokens on, with a JWKS file in the test's own directory (`dir`).
fn enable(config: &mut Config, dir: &Path) {
    config.tokens.enabled = true;
    config.tokens.issuer = "https://auth.example".into();
    config.tokens.audience = "api.example".into();
    config.tokens.rotation_interval = Duration::from_secs(3600);
    config.tokens.jwks_file = Some(dir.join("jwks.json"));
}

async fn start(dir: &Path) -> TestEnv {
    let dir = dir.to_owned();
    TestEnv::start_with(move |c| enable(c, &dir)).await
}

async fn jwks(env: &TestEnv) -> JwksReply {
    env.client.call(&JwksRequest {}).await.expect("jwks")
}

fn verifier(set: &JwksReply) -> Verifier {
    Verifier::new(set, "https://auth.example", "api.example").expect("a verifier")
}

/// Now on the worker's clock, in Unix seconds.
fn now_secs(env: &TestEnv) -> i64 {
    env.clock_now() / 1000
}

/// The JWKS file once it lists exactly `kids` (the worker writes it in the background).
async fn jwks_file_with(path: &PathBuf, kids: &[&str]) -> JwksReply {
    let mut last = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read(path) {
            let set: JwksReply = serde_json::from_slice(&text).expect("the file is a JWKS");
            let found: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
            if found == kids {
                return set;
            }
            last = Some(set);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the JWKS file never listed {kids:?}: {last:?}");
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("a header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).unwrap();
    header["kid"].as_str().expect("a kid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_issues_an_access_token_that_verifies_with_the_published_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = start(dir.path()).await;
    let user_id = env.active_user(ANN, PW).await;
    let login = env.client.login(ANN, PW).await.unwrap();
    let token = login.access_token.expect("an access token");
    let expires_at = login.access_expires_at.expect("its expiry");

    let set = jwks(&env).await;
    assert_eq!(set.keys.len(), 1);
    let key = &set.keys[0];
    assert_eq!(
        (key.kty.as_str(), key.crv.as_str(), key.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    assert_eq!(kid_of(token.expose()), key.kid);

    let claims: AccessClaims = verifier(&set)
        .verify(token.expose(), now_secs(&env))
        .unwrap();
    let sessions = env
        .client
        .list_sessions(login.session.expose())
        .await
        .unwrap();
    assert_eq!(claims.sub, user_id);
    assert_eq!(
        claims.sid.as_deref(),
        Some(sessions.sessions[0].id.as_str()),
        "the session's id"
    );
    assert_ne!(
        claims.sid.as_deref(),
        Some(login.session.expose()),
        "never the session token"
    );
    assert_eq!(claims.scope, None);
    assert_eq!(claims.client_type, "user");
    assert_eq!(claims.iss, "https://auth.example");
    assert_eq!(claims.aud, "api.example");
    assert_eq!(claims.session_epoch, Some(0));
    assert_eq!(claims.exp - claims.iat, 300, "five minutes by default");
    assert_eq!(claims.exp * 1000, expires_at);
    assert_eq!(claims.jti.len(), 32);
    // The session is the same as without tokens.
    env.client.check(login.session.expose()).await.unwrap();

    // The file gateways read holds the same set.
    let file = jwks_file_with(&dir.path().join("jwks.json"), &[key.kid.as_str()]).await;
    assert_eq!(file, set);
    // What a gateway does with it (examples/verify.rs): no broker call.
    let text = std::fs::read(dir.path().join("jwks.json")).unwrap();
    let gateway = Verifier::from_jwks_json(&text, "https://auth.example", "api.example").unwrap();
    assert_eq!(
        gateway.verify(token.expose(), now_secs(&env)).unwrap(),
        claims
    );
    // A second login: the same key, another token id.
    let again = env.client.login(ANN, PW).await.unwrap();
    let again = verifier(&set)
        .verify(again.access_token.unwrap().expose(), now_secs(&env))
        .unwrap();
    assert_ne!(again.jti, claims.jti);
    assert_ne!(again.sid, claims.sid);

    // logout_all raises the epoch: the next token carries it.
    env.client.logout_all(login.session.expose()).await.unwrap();
    let after = env.client.login(ANN, PW).await.unwrap();
    let after = verifier(&set)
        .verify(after.access_token.unwrap().expose(), now_secs(&env))
        .unwrap();
    assert_eq!(after.session_epoch, Some(1));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_enabled_login_replies_as_before_and_the_key_set_is_empty() {
    let env = TestEnv::start().await;
    env.active_user(ANN, PW).await;
    let login = env.client.login(ANN, PW).await.unwrap();
    assert!(login.access_token.is_none() && login.access_expires_at.is_none());
    assert!(jwks(&env).await.keys.is_empty());
    assert_eq!(env.count("signing_keys"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expires_on_the_workers_clock() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::start_with({
        let dir = dir.path().to_owned();
        move |c| {
            enable(c, &dir);
            c.tokens.access_ttl = Duration::from_secs(60);
        }
    })
    .await;
    env.active_user(ANN, PW).await;
    let token = env
        .client
        .login(ANN, PW)
        .await
        .unwrap()
        .access_token
        .unwrap();
    let v = verifier(&jwks(&env).await);
    let claims = v.verify(token.expose(), now_secs(&env)).unwrap();
    assert_eq!(claims.exp - claims.iat, 60);
    env.clock.advance(Duration::from_secs(61));
    assert!(matches!(
        v.verify(token.expose(), now_secs(&env)),
        Err(VerifyError::Expired)
    ));
    assert!(matches!(
        v.verify(token.expose(), claims.exp),
        Err(VerifyError::Expired)
    ));
    v.verify(token.expose(), claims.exp - 1).unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_tokens_verifying_until_their_key_retires() {
    let dir = tempfile::tempdir().unwrap();
    let env = start(dir.path()).await;
    let file = dir.path().join("jwks.json");
    env.active_user(ANN, PW).await;
    let first = env
        .client
        .login(ANN, PW)
        .await
        .unwrap()
        .access_token
        .unwrap();
    let k1 = kid_of(first.expose());
    jwks_file_with(&file, &[k1.as_str()]).await;

    // Just before the rotation: still the first key.
    env.clock.advance(Duration::from_secs(3600 - 90));
    let old = env
        .client
        .login(ANN, PW)
        .await
        .unwrap()
        .access_token
        .unwrap();
    assert_eq!(kid_of(old.expose()), k1);
    // After it: a new key signs, the old one stays published.
    env.clock.advance(Duration::from_secs(120));
    let new = env
        .client
        .login(ANN, PW)
        .await
        .unwrap()
        .access_token
        .unwrap();
    let k2 = kid_of(new.expose());
    assert_ne!(k2, k1);
    let set = jwks(&env).await;
    let kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [k2.as_str(), k1.as_str()], "the active key first");
    jwks_file_with(&file, &[k2.as_str(), k1.as_str()]).await;
    let v = verifier(&set);
    let old_claims = v.verify(old.expose(), now_secs(&env)).unwrap();
    v.verify(new.expose(), now_secs(&env)).unwrap();
    // No token outlives its key: the old key's last token expires by its retirement + 5 min.
    assert!(old_claims.exp * 1000 <= env.clock_now() + 5 * 60 * 1000);

    // Once every token the old key signed has expired, it leaves the set; a token it signed is
    // then refused by a gateway with the new set, whatever time that gateway thinks it is.
    env.clock.advance(Duration::from_secs(5 * 60));
    let later = jwks(&env).await;
    let kids: Vec<&str> = later.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [k2.as_str()]);
    assert!(matches!(
        verifier(&later).verify(old.expose(), old_claims.iat),
        Err(VerifyError::UnknownKey)
    ));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_agree_on_the_active_key_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let env = start(dir.path()).await;
    let second = env.second_worker().await;
    for i in 0..4 {
        env.active_user(&format!("u{i}@example.com"), PW).await;
    }
    let round = || async {
        let logins = (0..16).map(|i| {
            let email = format!("u{}@example.com", i % 4);
            let client = &env.client;
            async move { client.login(&email, PW).await.unwrap() }
        });
        let kids: std::collections::BTreeSet<String> = join_all(logins)
            .await
            .into_iter()
            .map(|l| kid_of(l.access_token.unwrap().expose()))
            .collect();
        kids
    };
    let before = round().await;
    assert_eq!(before.len(), 1, "one key for both workers: {before:?}");
    env.clock.advance(Duration::from_secs(3601));
    let after = round().await;
    assert_eq!(after.len(), 1, "one new key for both workers: {after:?}");
    assert_ne!(before, after);
    assert_eq!(env.count("signing_keys"), 2, "no key created twice");
    second.shutdown().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_refuses_forged_altered_and_misaddressed_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let env = start(dir.path()).await;
    env.active_user(ANN, PW).await;
    let token = env
        .client
        .login(ANN, PW)
        .await
        .unwrap()
        .access_token
        .unwrap();
    let token = token.expose();
    let set = jwks(&env).await;
    let now = now_secs(&env);
    let v = verifier(&set);
    v.verify(token, now).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    // `alg: none`, no signature.
    let mut none = header.clone();
    none["alg"] = "none".into();
    let unsigned = format!("{}.{}.", b64(&none), parts[1]);
    // (jsonwebtoken does not even parse a header naming `none`.)
    assert!(matches!(
        v.verify(&unsigned, now),
        Err(VerifyError::Algorithm | VerifyError::Malformed)
    ));

    // HS256 keyed with the public key (the classic key confusion).
    let public = URL_SAFE_NO_PAD.decode(&set.keys[0].x).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(set.keys[0].kid.clone());
    let forged = jsonwebtoken::encode(
        &hs,
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&forged, now),
        Err(VerifyError::Algorithm)
    ));
    let forged_x = jsonwebtoken::encode(
        &hs,
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(set.keys[0].x.as_bytes()),
    )
    .unwrap();
    assert!(v.verify(&forged_x, now).is_err());

    // A tampered payload under the original signature.
    payload["sub"] = "someone-else".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    assert!(matches!(
        v.verify(&tampered, now),
        Err(VerifyError::Invalid(_))
    ));
    // A flipped signature byte.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert!(matches!(
        v.verify(&bad_sig, now),
        Err(VerifyError::Invalid(_))
    ));

    // Another audience or issuer.
    let other_aud = Verifier::new(&set, "https://auth.example", "other-api").unwrap();
    assert!(matches!(
        other_aud.verify(token, now),
        Err(VerifyError::Invalid(_))
    ));
    let other_iss = Verifier::new(&set, "https://evil.example", "api.example").unwrap();
    assert!(matches!(
        other_iss.verify(token, now),
        Err(VerifyError::Invalid(_))
    ));

    // A key set without its key, and garbage.
    let empty =
        Verifier::new(&JwksReply::default(), "https://auth.example", "api.example").unwrap();
    assert!(matches!(
        empty.verify(token, now),
        Err(VerifyError::UnknownKey)
    ));
    assert!(matches!(
        v.verify("not.a.jwt", now),
        Err(VerifyError::Malformed)
    ));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_a_second_factor_gets_its_tokens_from_mfa_verify_only() {
    let dir = tempfile::tempdir().unwrap();
    let env = start(dir.path()).await;
    let ann = crate::mfa::enrolled(&env, ANN).await;
    // The password alone: `mfa_required`, and no token of any kind.
    let before = env.count("refresh_tokens");
    let handle = crate::mfa::pending(env.client.login(ANN, crate::mfa::PW).await);
    assert_eq!(env.count("refresh_tokens"), before);
    let code = crate::mfa::code(&env, &ann.totp, 0);
    let login = env.client.mfa_verify(&handle, &code).await.unwrap();
    let token = login.access_token.expect("an access token from mfa_verify");
    assert!(login.refresh_token.is_some(), "and a refresh token");
    let claims = verifier(&jwks(&env).await)
        .verify(token.expose(), now_secs(&env))
        .unwrap();
    assert_eq!(claims.sub, ann.user_id);
    let sessions = env
        .client
        .list_sessions(login.session.expose())
        .await
        .unwrap();
    assert_eq!(
        claims.sid.as_deref(),
        Some(sessions.sessions[0].id.as_str())
    );
    assert_eq!(env.count("refresh_tokens"), before + 1);
    env.stop().await;
}
