//! The auth logic: one async function per operation, behind a single dispatching `match`.
//!
//! Handlers take a [`Call`] (the shared [`Ctx`] and what is particular to this request: where
//! its outcome is recorded) and a decoded request, and return a reply or a [`HandlerError`].
//! They never touch the broker. Store work runs on tokio's blocking pool, each call in the
//! transaction its name says ([`Ctx::read`]: autocommit, [`Ctx::write`]: one transaction,
//! [`Call::commit`]: one transaction with the request's outcome), and argon2 on its own pool
//! ([`HashPool`]); a handler itself only awaits.
//!
//! Files follow the default tubes: [`session`] (cheap, hot), [`password`] (argon2),
//! [`account`] (administration).
//!
//! # Decisions
//! - **Store calls are bounded by permits** (`Ctx::store_permits`, the store pool's size), so
//!   the rest wait as tasks: 128 checks in flight each parked a blocking-pool thread on r2d2's
//!   pool and grew the worker to ~140 threads; with permits it used about 20 % less CPU per
//!   `check`.
//! - **`check`'s look-up runs on the executor when it need not wait** ([`Ctx::read_now_or`]):
//!   a single indexed read costs less than the blocking pool's two thread hand-offs, which were
//!   most of the gap between `check` and the broker's echo (72–78 % of it before, 87–95 %
//!   after). Anything that might wait (no idle reader, a busy database, a renewal) takes the
//!   blocking pool as before.
//! - **Only `ping` and `check` run inline in the delivery's task**; every other handler's
//!   future is boxed, so the hot task does not carry (and copy at every spawn) the state of the
//!   biggest handler (4.5 → 3.5 KB per task).

pub mod account;
pub mod admin;
pub mod deletion;
mod login_failure;
pub mod mfa;
pub mod password;
pub mod service_clients;
pub mod session;
#[cfg(feature = "social")]
pub mod social;
pub mod tokens;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Digest;
use crate::error::{HandlerError, InternalError};
use crate::events::EventSink;
use crate::hashing::HashPool;
use crate::idempotency::{OutcomeScope, Sealing, encode_outcome};
use crate::metrics::Metrics;
use crate::social::Social;
use crate::store::{AttemptLimit, CodePurpose, Renewal, Store, StoreError, Tx, UserRecord};
use authq_protocol::Operation;
use authq_protocol::ops::UserState;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;
use tracing::Span;

/// What every handler needs: the store, the argon2 pool, the clock, the policies.
#[derive(Debug)]
pub struct Ctx {
    /// The user store.
    pub store: Arc<Store>,
    /// The argon2 pool.
    pub hasher: HashPool,
    /// The clock expiries are computed with.
    pub clock: Arc<dyn Clock>,
    /// The worker's counters.
    pub metrics: Arc<Metrics>,
    /// The configuration (policies and limits).
    pub config: Arc<Config>,
    /// The renewal rule of [`Config::sessions`], computed once.
    pub renewal: Renewal,
    /// Store calls running at once, at most the store's pool size: the rest wait here, as
    /// tasks, instead of each parking a blocking-pool thread on the connection pool (128 checks
    /// in flight grew tokio's blocking pool to ~130 threads).
    pub store_permits: Arc<Semaphore>,
    /// The key recorded outcomes are sealed with.
    pub sealing: Arc<Sealing>,
    /// Where handlers record auth events (the transactional outbox).
    pub events: Arc<EventSink>,
    /// The policies that may refuse a login or registration.
    pub policy: Arc<crate::policy::Policy>,
    /// Social login: providers, HTTP client, call bound.
    pub social: Arc<Social>,
    /// The key one-time codes are stored under (derived from the server key).
    pub code_key: crate::crypto::CodeKey,
    /// The sealer of TOTP secrets ([`mfa::sealer`], derived from the server key).
    pub mfa_sealer: crate::sealing::Sealer,
    /// Access token signing (`crate::tokens`).
    pub tokens: Arc<crate::tokens::Tokens>,
}

impl Ctx {
    /// Now, in Unix ms.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The keyed digest a one-time code of `purpose` for `email_key` is stored under
    /// ([`crate::crypto::code_digest`] with the configured code key).
    pub fn code_digest(&self, purpose: CodePurpose, email_key: &str, code: &str) -> Digest {
        crate::crypto::code_digest(self.code_key.expose(), purpose.as_str(), email_key, code)
    }

    /// Claims one attempt on each limit (all or nothing); `too_many_attempts` when any is
    /// exhausted. Runs before the work it guards, so parallel requests cannot slip past it.
    pub async fn claim(&self, limits: Vec<(String, u32, Duration)>) -> Result<(), HandlerError> {
        let now = self.now();
        let claimed = self
            .write(move |s| s.claim_attempts(&attempt_limits(&limits), now))
            .await?;
        if claimed {
            Ok(())
        } else {
            tracing::debug!("attempt limit reached");
            Err(HandlerError::TooManyAttempts)
        }
    }

    /// Outcomes recorded before this (Unix ms) are out of the idempotency window.
    pub fn outcomes_since(&self) -> i64 {
        self.now()
            .saturating_sub(crate::clock::duration_ms(self.config.idempotency_window))
    }

    /// When `check` renews a session (derived once from the session policy).
    pub fn renewal(&self) -> Renewal {
        self.renewal
    }

    /// Runs store work on the blocking pool, in the current span, on a connection in
    /// autocommit mode ([`Store::read`]): look-ups, and single-statement writes.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HandlerError> {
        self.on_store(move |store| store.read(f)).await
    }

    /// Like [`Ctx::read`], in one write transaction ([`Store::write`]), counted in
    /// [`Metrics::store_writes`].
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HandlerError> {
        self.metrics.store_writes.inc();
        self.on_store(move |store| store.write(f)).await
    }

    /// Runs `f` on the blocking pool once a store permit is free.
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HandlerError> {
        let store = Arc::clone(&self.store);
        let span = Span::current();
        let start = Instant::now();
        let permit = self
            .store_permits
            .acquire()
            .await
            .map_err(|e| InternalError::Join(e.to_string()))?;
        let outcome = tokio::task::spawn_blocking(move || span.in_scope(|| f(&store))).await;
        drop(permit);
        self.store_call_done(start, outcome.as_ref().is_ok_and(Result::is_ok));
        outcome
            .map_err(|e| InternalError::Join(e.to_string()))?
            .map_err(HandlerError::from)
    }

    /// Counts a store call that started at `start`.
    fn store_call_done(&self, start: Instant, ok: bool) {
        let took = start.elapsed();
        self.metrics.stages.store.add(took);
        self.metrics.store_calls.observe(took.as_secs_f64());
        if !ok {
            self.metrics.store_errors.inc();
        }
    }

    /// A read that may run right here on the executor: `now` is a store call that never blocks
    /// a thread (an indexed point look-up on an idle SQLite inline reader, microseconds, or on
    /// PostgreSQL's async driver) and gives `None` when it would have to; then `blocking` runs
    /// on the blocking pool as [`Ctx::read`] does. This saves the hot path two thread
    /// hand-offs, which cost more than the look-up itself.
    pub async fn read_now_or<T: Send + 'static>(
        &self,
        now: impl Future<Output = Option<Result<T, StoreError>>>,
        blocking: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HandlerError> {
        let start = Instant::now();
        if let Some(result) = now.await {
            self.store_call_done(start, result.is_ok());
            return result.map_err(HandlerError::from);
        }
        self.read(blocking).await
    }
}

/// One request as its handler sees it: the shared [`Ctx`] (through `Deref`) and where the
/// request's outcome is recorded, if it is mutating and carries a `message_id`.
#[derive(Debug)]
pub struct Call<'a> {
    ctx: &'a Ctx,
    outcome: Option<OutcomeScope>,
    identity: Option<Digest>,
}

impl std::ops::Deref for Call<'_> {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        self.ctx
    }
}

impl<'a> Call<'a> {
    /// A request handled with `ctx`, whose outcome (if any) is recorded under `outcome`, and
    /// whose deliveries share `identity` (`crate::idempotency::request_identity`).
    pub fn new(ctx: &'a Ctx, outcome: Option<OutcomeScope>, identity: Option<Digest>) -> Self {
        Self {
            ctx,
            outcome,
            identity,
        }
    }

    /// The request's identity across its deliveries and retries, if the delivery path gave
    /// one (it does for `login`).
    pub fn identity(&self) -> Option<Digest> {
        self.identity
    }

    /// A handler's final write and its reply, in one store transaction ([`Store::write`]):
    /// 1. with an outcome key, wait for any other delivery of the same request and answer with
    ///    its outcome if it committed one ([`Tx::begin_outcome`]);
    /// 2. `effect` runs the store calls (and records the change's events, see
    ///    `crate::events`);
    /// 3. `reply` turns their result into the handler's result;
    /// 4. with an outcome key, the encoded reply is recorded as the request's outcome
    ///    ([`Tx::record_outcome`]), sealed (see `crate::idempotency`);
    /// 5. the transaction commits: effect, events and outcome together or not at all.
    pub async fn commit<T, R>(
        &self,
        effect: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
        reply: impl FnOnce(T) -> Result<R, HandlerError> + Send + 'static,
    ) -> Result<R, HandlerError>
    where
        T: Send + 'static,
        R: Serialize + Send + 'static,
    {
        let scope = self.outcome.clone();
        let events = Arc::clone(&self.events);
        let now = self.now();
        let since = self.outcomes_since();
        /// What the transaction found or did.
        enum Committed<R> {
            Done(Result<R, HandlerError>),
            Recorded(crate::store::RecordedOutcome),
        }
        let committed = self
            .write(move |tx| {
                if let Some(scope) = &scope
                    && let Some(first) = tx.begin_outcome(&scope.key, since)?
                {
                    return Ok(Committed::Recorded(first));
                }
                let result = reply(effect(tx)?);
                if let Some(scope) = &scope {
                    tx.record_outcome(&scope.key, &scope.seal(&encode_outcome(&result))?, now)?;
                }
                Ok(Committed::Done(result))
            })
            .await?;
        match (committed, &self.outcome) {
            (Committed::Done(result), _) => {
                events.wake();
                result
            }
            (Committed::Recorded(first), Some(scope))
                if first.request_digest == scope.key.request_digest =>
            {
                Err(HandlerError::Replayed(
                    scope.open(&first.sealed).map_err(InternalError::from)?,
                ))
            }
            (Committed::Recorded(_), _) => Err(HandlerError::IdempotencyConflict),
        }
    }
}

/// The store's view of attempt limits given as (key, most attempts, window).
pub(crate) fn attempt_limits(limits: &[(String, u32, Duration)]) -> Vec<AttemptLimit<'_>> {
    limits
        .iter()
        .map(|(key, max, window)| AttemptLimit {
            key,
            max: *max,
            window_ms: crate::clock::duration_ms(*window),
        })
        .collect()
}

/// Refuses a session whose user is no longer active.
pub(crate) fn require_active(user: &UserRecord) -> Result<(), HandlerError> {
    match user.state {
        UserState::Active => Ok(()),
        UserState::Suspended => Err(HandlerError::UserSuspended),
        UserState::Pending => Err(HandlerError::SessionInvalid),
    }
}

/// Records the user a request acts for in the request's span.
pub(crate) fn record_user(user_id: &str) {
    Span::current().record("user_id", user_id);
}

/// Decodes a request body straight into its type (no intermediate JSON value).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(body)
        .map_err(|e| HandlerError::BadRequest(describe_decode_error::<T>(body, &e)))
}

/// Explains why a body did not decode, without echoing any value from it (a wrongly typed
/// password must not come back in an error reply or a log line).
fn describe_decode_error<T: DeserializeOwned>(
    body: &[u8],
    e: &serde_json::Error,
) -> Cow<'static, str> {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") || msg.starts_with("unknown variant") {
                // serde names the field or the accepted variants; neither is caller data…
                let end = msg.find(" at line").unwrap_or(msg.len());
                return Cow::Owned(msg[..end].to_owned());
            }
            // …but "invalid type: string \"hunter2\"" would be. Name the field instead.
            let mut de = serde_json::Deserializer::from_slice(body);
            let path = serde_path_to_error::deserialize::<_, T>(&mut de)
                .err()
                .map(|e| e.path().to_string());
            match path {
                Some(p) if p != "." => {
                    Cow::Owned(format!("field `{p}` has the wrong type or value"))
                }
                _ => Cow::Owned(format!(
                    "a field has the wrong type or value (line {}, column {})",
                    e.line(),
                    e.column()
                )),
            }
        }
        Category::Syntax | Category::Eof => {
            if e.to_string().contains("recursion limit") {
                Cow::Borrowed("the JSON is nested too deeply")
            } else if std::str::from_utf8(body).is_err() {
                Cow::Borrowed("the body is not valid UTF-8")
            } else {
                Cow::Owned(format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            }
        }
        Category::Io => Cow::Borrowed("the body could not be read"),
    }
}

/// Decodes, handles and encodes one request of operation `op`; a mutating request's outcome is
/// recorded under `outcome` (see [`Call::commit`]); `identity` names the request across its
/// deliveries ([`Call::identity`]).
pub async fn dispatch(
    ctx: &Ctx,
    op: Operation,
    body: &[u8],
    outcome: Option<OutcomeScope>,
    identity: Option<Digest>,
) -> Result<Vec<u8>, HandlerError> {
    let call = Call::new(ctx, outcome, identity);
    let ctx = &call;
    // The hot operations' futures are inlined into the delivery's task; every other one is
    // boxed, so a `check` task does not carry (and copy into the executor at spawn) the state
    // of the biggest handler.
    macro_rules! route {
        ($handler:path) => {
            route!(@ $handler, |f| f)
        };
        (boxed $handler:path) => {
            route!(@ $handler, Box::pin)
        };
        (@ $handler:path, $wrap:expr) => {{
            let stages = &ctx.metrics.stages;
            let start = Instant::now();
            let request = decode(body);
            stages.decode.since(start);
            let reply = ($wrap)($handler(ctx, request?)).await?;
            let start = Instant::now();
            let encoded = authq_protocol::encode_ok(&reply)
                .map_err(|e| HandlerError::from(InternalError::from(e)));
            stages.encode.since(start);
            encoded
        }};
    }
    match op {
        Operation::Ping => route!(session::ping),
        Operation::Check => route!(session::check),
        Operation::Logout => route!(boxed session::logout),
        Operation::LogoutAll => route!(boxed session::logout_all),
        Operation::ListSessions => route!(boxed session::list_sessions),
        Operation::EndSession => route!(boxed session::end_session),
        Operation::GetProfile => route!(boxed session::get_profile),
        Operation::Login => route!(boxed password::login),
        Operation::ConfirmRegistration => route!(boxed password::confirm_registration),
        Operation::ChangePassword => route!(boxed password::change_password),
        Operation::CompleteReset => route!(boxed password::complete_reset),
        Operation::Register => route!(boxed account::register),
        Operation::StartReset => route!(boxed account::start_reset),
        Operation::SetProfile => route!(boxed account::set_profile),
        Operation::DeleteUser => route!(boxed account::delete_user),
        Operation::Suspend => route!(boxed account::suspend),
        Operation::Unsuspend => route!(boxed account::unsuspend),
        #[cfg(feature = "social")]
        Operation::SocialUrl => route!(boxed social::social_url),
        #[cfg(feature = "social")]
        Operation::SocialLogin => route!(boxed social::social_login),
        #[cfg(feature = "social")]
        Operation::LinkSocial => route!(boxed social::link_social),
        // A build without social login has no provider at all.
        #[cfg(not(feature = "social"))]
        Operation::SocialUrl | Operation::SocialLogin | Operation::LinkSocial => {
            Err(HandlerError::UnknownProvider)
        }
        Operation::DeletionDone => route!(boxed deletion::deletion_done),
        Operation::DeletionStatus => route!(boxed deletion::deletion_status),
        Operation::ListUsers => route!(boxed admin::list_users),
        Operation::GetUser => route!(boxed admin::get_user),
        Operation::ImportUsers => route!(boxed admin::import_users),
        Operation::EndUserSessions => route!(boxed admin::end_user_sessions),
        Operation::MfaEnroll => route!(boxed mfa::mfa_enroll),
        Operation::MfaConfirm => route!(boxed mfa::mfa_confirm),
        Operation::MfaVerify => route!(boxed mfa::mfa_verify),
        Operation::MfaDisable => route!(boxed mfa::mfa_disable),
        Operation::ResetMfa => route!(boxed admin::reset_mfa),
        Operation::Jwks => route!(boxed tokens::jwks),
        Operation::Refresh => route!(boxed tokens::refresh),
        Operation::CreateServiceClient => route!(boxed service_clients::create_service_client),
        Operation::RevokeServiceClient => route!(boxed service_clients::revoke_service_client),
        Operation::ServiceToken => route!(boxed service_clients::service_token),
        Operation::ListServiceClients => route!(boxed service_clients::list_service_clients),
        Operation::RotateServiceClientSecret => {
            route!(boxed service_clients::rotate_service_client_secret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authq_protocol::ops::LoginRequest;

    fn message(body: &str) -> String {
        decode::<LoginRequest>(body.as_bytes())
            .unwrap_err()
            .public_message()
            .into_owned()
    }

    #[test]
    fn decode_errors_name_the_problem_without_echoing_values() {
        assert_eq!(message(r#"{"email":"a@b.c"}"#), "missing field `password`");
        let m = message(r#"{"email":"a@b.c","password":123456789}"#);
        assert_eq!(m, "field `password` has the wrong type or value");
        assert!(!m.contains("123456789"));
        assert!(message("{nope").starts_with("the body is not valid JSON"));
        assert_eq!(
            decode::<LoginRequest>(b"{\"email\":\"\xff\"}")
                .unwrap_err()
                .public_message(),
            "the body is not valid UTF-8"
        );
        let deep = format!(
            r#"{{"email":"a@b.c","profile":{{"a":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = decode::<authq_protocol::ops::RegisterRequest>(deep.as_bytes()).unwrap_err();
        assert_eq!(err.public_message(), "the JSON is nested too deeply");
    }
}
