//! A real OAuth2 / OpenID Connect provider on 127.0.0.1 for the social login tests: an
//! authorization endpoint (redirects with a code bound to the PKCE challenge), a token endpoint
//! (authorization_code and refresh_token grants, client secret and PKCE checked) and a
//! user-info endpoint, each with switches for failures.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The client secret the provider accepts.
pub const CLIENT_SECRET: &str = "loopback-client-secret";

/// Who the provider says the user is.
#[derive(Clone, Debug)]
pub struct Person {
    pub sub: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl Person {
    /// A person with a subject and a verified email.
    pub fn verified(sub: &str, email: &str, name: &str) -> Self {
        Self {
            sub: Some(sub.into()),
            email: Some(email.into()),
            email_verified: true,
            name: Some(name.into()),
        }
    }
}

/// How an endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normally.
    Ok,
    /// With this HTTP status and an OAuth error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Not until [`Provider::release`] (or never).
    Hang,
}

#[derive(Default)]
struct Inner {
    next_person: Option<Person>,
    codes: HashMap<String, (Person, Option<String>, String)>,
    access: HashMap<String, Person>,
    refresh: HashMap<String, Person>,
    token_mode: Option<Mode>,
    userinfo_mode: Option<Mode>,
    no_refresh_tokens: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    token_calls: AtomicUsize,
    userinfo_calls: AtomicUsize,
    refresh_calls: AtomicUsize,
    release: watch::Sender<bool>,
    counter: AtomicUsize,
}

/// The running provider.
#[derive(Clone)]
pub struct Provider {
    pub base: String,
    shared: Arc<Shared>,
}

impl Provider {
    /// Starts the provider on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let (release, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            token_calls: AtomicUsize::new(0),
            userinfo_calls: AtomicUsize::new(0),
            refresh_calls: AtomicUsize::new(0),
            release,
            counter: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, shared }
    }

    /// The `[social.providers.NAME]` table for this provider.
    pub fn toml(&self, name: &str, extra: &str) -> String {
        format!(
            r#"
            [social.providers.{name}]
            authorization_url = "{base}/authorize"
            token_url = "{base}/token"
            userinfo_url = "{base}/userinfo"
            client_id = "authq-test"
            client_secret = "{CLIENT_SECRET}"
            redirect_uri = "https://app.example/callback/{name}"
            {extra}
            "#,
            base = self.base
        )
    }

    /// Who the next authorization is for.
    pub fn next_person(&self, person: Person) {
        self.shared.inner.lock().unwrap().next_person = Some(person);
    }

    /// How the token endpoint answers from now on.
    pub fn token_mode(&self, mode: Mode) {
        self.shared.inner.lock().unwrap().token_mode = Some(mode);
    }

    /// How the user-info endpoint answers from now on.
    pub fn userinfo_mode(&self, mode: Mode) {
        self.shared.inner.lock().unwrap().userinfo_mode = Some(mode);
    }

    /// Whether the token endpoint issues refresh tokens (GitHub's classic apps do not).
    pub fn issue_refresh_tokens(&self, issue: bool) {
        self.shared.inner.lock().unwrap().no_refresh_tokens = !issue;
    }

    /// Lets every hanging request go on.
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Revokes every access and refresh token issued so far.
    pub fn revoke_all(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.access.clear();
        inner.refresh.clear();
    }

    pub fn token_calls(&self) -> usize {
        self.shared.token_calls.load(Ordering::SeqCst)
    }

    pub fn userinfo_calls(&self) -> usize {
        self.shared.userinfo_calls.load(Ordering::SeqCst)
    }

    pub fn refresh_calls(&self) -> usize {
        self.shared.refresh_calls.load(Ordering::SeqCst)
    }

    /// Waits (bounded: 10 s) until `f` holds.
    pub async fn wait_until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the provider never saw {what}");
    }

    /// Plays the browser: follows an authorization URL from `social_url` to the provider and
    /// returns the `code` and `state` of the redirect back.
    pub async fn browse(&self, authorization_url: &str) -> (String, String) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = http.get(authorization_url).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "the provider redirects"
        );
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        let back = url::Url::parse(location).unwrap();
        let q: HashMap<_, _> = back.query_pairs().into_owned().collect();
        (q["code"].clone(), q["state"].clone())
    }
}

fn fresh(shared: &Shared, prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        shared.counter.fetch_add(1, Ordering::SeqCst),
        uuid::Uuid::new_v4().simple()
    )
}

async fn behave(shared: &Shared, mode: Mode) -> Option<Response> {
    match mode {
        Mode::Ok => None,
        Mode::Status(code) => Some(
            (
                StatusCode::from_u16(code).unwrap(),
                Json(json!({"error": if code < 500 { "invalid_grant" } else { "server_error" }})),
            )
                .into_response(),
        ),
        Mode::Garbage => Some((StatusCode::OK, "<html>surprise</html>").into_response()),
        Mode::Hang => {
            let mut rx = shared.release.subscribe();
            let _ = rx.wait_for(|released| *released).await;
            None
        }
    }
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let person = shared
        .inner
        .lock()
        .unwrap()
        .next_person
        .clone()
        .expect("set next_person before authorizing");
    if q.get("response_type").map(String::as_str) != Some("code")
        || q.get("client_id").map(String::as_str) != Some("authq-test")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let challenge = match q.get("code_challenge_method").map(String::as_str) {
        Some("S256") => q.get("code_challenge").cloned(),
        _ => None,
    };
    let redirect = q["redirect_uri"].clone();
    let code = fresh(&shared, "code");
    shared
        .inner
        .lock()
        .unwrap()
        .codes
        .insert(code.clone(), (person, challenge, redirect.clone()));
    let mut back = url::Url::parse(&redirect).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.token_calls.fetch_add(1, Ordering::SeqCst);
    let mode = shared.inner.lock().unwrap().token_mode.unwrap_or(Mode::Ok);
    if let Some(r) = behave(&shared, mode).await {
        return r;
    }
    if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return oauth_error("invalid_client");
    }
    let person = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((person, challenge, redirect)) = shared
                .inner
                .lock()
                .unwrap()
                .codes
                .remove(form.get("code").map_or("", String::as_str))
            else {
                return oauth_error("invalid_grant");
            };
            if form.get("redirect_uri") != Some(&redirect) {
                return oauth_error("invalid_grant");
            }
            if let Some(challenge) = challenge {
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                    return oauth_error("invalid_grant");
                }
            }
            person
        }
        Some("refresh_token") => {
            shared.refresh_calls.fetch_add(1, Ordering::SeqCst);
            let found = shared
                .inner
                .lock()
                .unwrap()
                .refresh
                .get(form.get("refresh_token").map_or("", String::as_str))
                .cloned();
            match found {
                Some(p) => p,
                None => return oauth_error("invalid_grant"),
            }
        }
        _ => return oauth_error("unsupported_grant_type"),
    };
    let access = fresh(&shared, "access");
    let refresh = fresh(&shared, "refresh");
    let mut inner = shared.inner.lock().unwrap();
    inner.access.insert(access.clone(), person.clone());
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    if !inner.no_refresh_tokens {
        inner.refresh.insert(refresh.clone(), person);
        body["refresh_token"] = Value::String(refresh);
    }
    Json(body).into_response()
}

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.userinfo_calls.fetch_add(1, Ordering::SeqCst);
    let mode = shared
        .inner
        .lock()
        .unwrap()
        .userinfo_mode
        .unwrap_or(Mode::Ok);
    if let Some(r) = behave(&shared, mode).await {
        return r;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(person) = shared.inner.lock().unwrap().access.get(token).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response();
    };
    let mut body = json!({ "email_verified": person.email_verified });
    for (k, v) in [
        ("sub", person.sub),
        ("email", person.email),
        ("name", person.name),
    ] {
        if let Some(v) = v {
            body[k] = Value::String(v);
        }
    }
    Json(body).into_response()
}
