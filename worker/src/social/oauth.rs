//! The OAuth2 / OpenID Connect client: the authorization URL, the code and refresh-token
//! exchanges, the user-info call, and reading a profile out of the provider's JSON.
//!
//! Every call has the configured timeout, follows no redirects and reads at most
//! [`MAX_ANSWER_BYTES`]. Errors say what went wrong (an HTTP status, an OAuth error name)
//! and never carry a token, a code or a body.

use crate::config::social::{ProfileFields, ProviderConfig, UserinfoAuth};
use authq_protocol::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::time::Duration;

/// The largest provider answer read; beyond it the answer is malformed.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a provider call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider refused: an OAuth error, or a 4xx (a bad code, a revoked token).
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The provider could not be reached, timed out, or answered 5xx.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something else than the expected JSON.
    #[error("the provider's answer is malformed: {0}")]
    BadResponse(String),
    /// The profile has no subject.
    #[error("the profile has no subject")]
    MissingSubject,
}

/// What the token endpoint gave.
#[derive(Clone, PartialEq)]
pub struct Tokens {
    /// The access token.
    pub access: Secret,
    /// The refresh token, if the provider gave one.
    pub refresh: Option<Secret>,
    /// The whole answer (for profile fields some providers put there, e.g. VK's email).
    /// Holds tokens: never logged.
    pub answer: Value,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens([redacted])")
    }
}

/// The user as the provider describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's stable id at the provider.
    pub subject: String,
    /// The email, if any.
    pub email: Option<String>,
    /// Whether the provider says it verified the email.
    pub email_verified: bool,
    /// The display name.
    pub name: Option<String>,
    /// The picture URL.
    pub picture: Option<String>,
}

/// A fresh PKCE verifier's S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The URL to send the browser to. Every parameter is percent-encoded.
pub fn authorization_url(
    provider: &ProviderConfig,
    redirect_uri: &str,
    state: &str,
    verifier: &str,
) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(&provider.authorization_url)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &provider.scopes.join(" "))
            .append_pair("state", state);
        if provider.pkce {
            q.append_pair("code_challenge", &pkce_challenge(verifier))
                .append_pair("code_challenge_method", "S256");
        }
    }
    Ok(url.into())
}

/// The HTTP client every provider call goes through.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
}

impl OAuthClient {
    /// A client with `timeout` per call (connect, send and read the whole answer).
    pub fn new(timeout: Duration) -> Result<Self, String> {
        // reqwest is built without a TLS crypto provider of its own (its default would pull
        // aws-lc-rs, a long C build); ring is installed as the process default. Installing
        // twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http })
    }

    /// Exchanges an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        provider: &ProviderConfig,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<Tokens, ProviderError> {
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("client_id", &provider.client_id)
                .append_pair("client_secret", provider.client_secret.expose());
            if let Some(v) = verifier {
                form.append_pair("code_verifier", v);
            }
            form.finish()
        };
        self.token_call(provider, body).await
    }

    /// Uses a refresh token for new tokens (keeping the old refresh token when the provider
    /// does not send a new one).
    pub async fn refresh(
        &self,
        provider: &ProviderConfig,
        refresh_token: &Secret,
    ) -> Result<Tokens, ProviderError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .append_pair("client_id", &provider.client_id)
            .append_pair("client_secret", provider.client_secret.expose())
            .finish();
        let mut tokens = self.token_call(provider, body).await?;
        if tokens.refresh.is_none() {
            tokens.refresh = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    async fn token_call(
        &self,
        provider: &ProviderConfig,
        form: String,
    ) -> Result<Tokens, ProviderError> {
        let answer = self
            .http
            .post(&provider.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await;
        let json = read_json(answer, "token").await?;
        let access = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ProviderError::BadResponse("token answer without access_token".into())
            })?;
        let refresh = json
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::from);
        Ok(Tokens {
            access: Secret::from(access),
            refresh,
            answer: json,
        })
    }

    /// Fetches the profile with an access token and reads the identity out of it (fields
    /// missing from the user-info answer are looked up in the token answer).
    pub async fn identity(
        &self,
        provider: &ProviderConfig,
        tokens: &Tokens,
    ) -> Result<Identity, ProviderError> {
        let request = match provider.userinfo_auth {
            UserinfoAuth::Header => self
                .http
                .get(&provider.userinfo_url)
                .bearer_auth(tokens.access.expose()),
            UserinfoAuth::Query => {
                let mut url = url::Url::parse(&provider.userinfo_url)
                    .map_err(|e| ProviderError::BadResponse(format!("userinfo_url: {e}")))?;
                url.query_pairs_mut()
                    .append_pair("access_token", tokens.access.expose());
                self.http.get(url)
            }
        };
        let answer = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        let json = read_json(answer, "userinfo").await?;
        identity_from(&provider.fields, &json, &tokens.answer)
    }
}

/// Reads a provider's answer as a JSON object, classifying every failure.
async fn read_json(
    answer: Result<reqwest::Response, reqwest::Error>,
    call: &str,
) -> Result<Value, ProviderError> {
    let mut response = answer.map_err(|e| ProviderError::Unavailable(describe(call, &e)))?;
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(ProviderError::BadResponse(format!(
                        "{call}: answer too large"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(ProviderError::Unavailable(describe(call, &e))),
        }
    }
    if status.is_server_error() {
        return Err(ProviderError::Unavailable(format!("{call}: HTTP {status}")));
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status.is_client_error() {
        return Err(ProviderError::Refused(format!(
            "{call}: HTTP {status}{}",
            oauth_error(json.as_ref())
        )));
    }
    if !status.is_success() {
        return Err(ProviderError::BadResponse(format!("{call}: HTTP {status}")));
    }
    match json {
        // Some providers (GitHub, VK) answer 200 with an error object.
        Some(v) if v.get("error").is_some_and(|e| !e.is_null()) => Err(ProviderError::Refused(
            format!("{call}: error{}", oauth_error(Some(&v))),
        )),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(ProviderError::BadResponse(format!(
            "{call}: not a JSON object"
        ))),
        None => Err(ProviderError::BadResponse(format!("{call}: not JSON"))),
    }
}

/// `" (invalid_grant)"` when the answer names an OAuth error (a fixed vocabulary, safe to log).
fn oauth_error(json: Option<&Value>) -> String {
    let name = json.and_then(|v| v.get("error")).and_then(|e| {
        e.as_str()
            .or_else(|| e.get("error_code").and(Some("api_error")))
    });
    match name {
        Some(n) if n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            format!(" ({n})")
        }
        _ => String::new(),
    }
}

/// Describes a transport failure without the URL (which may carry a token in its query).
fn describe(call: &str, e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    format!("{call}: {what}")
}

/// Looks a dotted path (`response.0.id`) up in a JSON value.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn field<'a>(path: &str, userinfo: &'a Value, token: &'a Value) -> Option<&'a Value> {
    lookup(userinfo, path)
        .filter(|v| !v.is_null())
        .or_else(|| lookup(token, path).filter(|v| !v.is_null()))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the identity out of the user-info answer (then the token answer).
pub fn identity_from(
    fields: &ProfileFields,
    userinfo: &Value,
    token: &Value,
) -> Result<Identity, ProviderError> {
    let subject = text(field(&fields.subject, userinfo, token))
        .filter(|s| s.len() <= 255)
        .ok_or(ProviderError::MissingSubject)?;
    let email = text(field(&fields.email, userinfo, token));
    let email_verified = match fields
        .email_verified
        .as_deref()
        .and_then(|path| field(path, userinfo, token))
    {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => fields.email_verified_default,
    };
    Ok(Identity {
        subject,
        email_verified: email_verified && email.is_some(),
        email,
        name: text(field(&fields.name, userinfo, token)),
        picture: text(field(&fields.picture, userinfo, token)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> ProfileFields {
        ProfileFields {
            subject: "response.0.id".into(),
            email: "email".into(),
            email_verified: Some("email_verified".into()),
            email_verified_default: false,
            name: "response.0.first_name".into(),
            picture: "picture".into(),
        }
    }

    #[test]
    fn identities_come_from_paths_in_userinfo_then_the_token_answer() {
        let userinfo = json!({"response":[{"id":42,"first_name":"Ann"}]});
        let token = json!({"access_token":"t","email":"ann@example.com"});
        let id = identity_from(&fields(), &userinfo, &token).unwrap();
        assert_eq!(id.subject, "42");
        assert_eq!(id.email.as_deref(), Some("ann@example.com"));
        assert!(!id.email_verified);
        assert_eq!(id.name.as_deref(), Some("Ann"));

        let verified = json!({"response":[{"id":"7"}],"email":"a@b.c","email_verified":"true"});
        assert!(
            identity_from(&fields(), &verified, &json!({}))
                .unwrap()
                .email_verified
        );
        for no_subject in [
            json!({}),
            json!({"response":[{"id":""}]}),
            json!({"response":[{"id":null}]}),
        ] {
            assert_eq!(
                identity_from(&fields(), &no_subject, &json!({})),
                Err(ProviderError::MissingSubject)
            );
        }
    }

    #[test]
    fn the_authorization_url_encodes_every_parameter() {
        let provider = ProviderConfig {
            authorization_url: "https://p.example/auth?prompt=consent".into(),
            token_url: "https://p.example/token".into(),
            userinfo_url: "https://p.example/me".into(),
            scopes: vec!["openid".into(), "email".into()],
            client_id: "id&x".into(),
            client_secret: "s".into(),
            redirect_uri: "https://app.example/cb?a=1".into(),
            extra_redirect_uris: vec![],
            pkce: true,
            userinfo_auth: UserinfoAuth::Header,
            fields: fields(),
            link_verified_email: None,
        };
        let url = authorization_url(&provider, &provider.redirect_uri, "st&=ate", "v").unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["state"], "st&=ate");
        assert_eq!(q["client_id"], "id&x");
        assert_eq!(q["redirect_uri"], "https://app.example/cb?a=1");
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["code_challenge"], pkce_challenge("v"));
        assert_eq!(q["code_challenge_method"], "S256");
        // RFC 7636's example.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
