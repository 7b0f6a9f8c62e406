//! Operations that run argon2 (default tube `password`): `login`, `confirm_registration`,
//! `change_password`, `complete_reset`.
//!
//! Each checks everything cheap first (input, codes, sessions), so a wrong code or an unknown
//! session costs no argon2 run; `login` alone always runs exactly one, known user or not.

use super::login_failure::{Attempt, login_failed_event};
use super::{Call, record_user, require_active};
use crate::clock::duration_ms;
use crate::crypto::{self, Digest};
use crate::domain::{Email, check_new_password, normalize_password, too_long};
use crate::error::HandlerError;
use crate::policy::PolicyQuestion;
use crate::store::{CodePurpose, CodeRecord, NewSession, RequestClaim};
use authq_protocol::Secret;
use authq_protocol::events::{
    EventBody, LoginMethod, LoginSucceeded, PasswordChangeReason, PasswordChanged, UserEmail,
};
use authq_protocol::ops::{
    ChangePasswordReply, ChangePasswordRequest, CompleteResetReply, CompleteResetRequest,
    ConfirmRegistrationReply, ConfirmRegistrationRequest, LoginReply, LoginRequest, UserState,
};
use std::sync::Arc;

/// `login`: verifies the password and opens a fresh session; for a user with a second factor,
/// answers `mfa_required` with a pending handle instead ([`super::mfa`]).
///
/// An unknown email, a pending user and a wrong password all give `invalid_credentials` after
/// one argon2 verification (against a dummy hash when there is no real one), so neither the
/// reply nor its timing tells them apart. Before that run, the request claims a place under the
/// email's limit (and `client_ip`'s, when given): a pending claim keyed by the request's
/// identity, which every delivery of the same request shares ([`Call::identity`]). Once the
/// email's failures and the other logins in flight reach the limit, attempts are refused with
/// `too_many_attempts` without running argon2 until the window ends — for unknown emails exactly
/// as for known ones. Only a verified failure counts (once per request: the same request again
/// is answered `invalid_credentials` without another argon2 run); a success clears the email's
/// failures; a claim whose worker died lapses uncounted ([`crate::store::Tx::claim_for_request`]).
pub async fn login(ctx: &Call<'_>, req: LoginRequest) -> Result<LoginReply, HandlerError> {
    let email = Email::parse(&req.email)?;
    let source = req.client_ip.as_deref().map(source_key).transpose()?;
    let user_agent = super::session::user_agent(req.user_agent.as_deref())?;
    // Kept with the session as the address parsed (validated above).
    let session_ip = req
        .client_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string());
    if too_long(&ctx.config.passwords, &req.password) {
        // No password this long was ever accepted: refuse before argon2 sees a megabyte.
        return Err(HandlerError::InvalidCredentials);
    }
    let limits = &ctx.config.limits;
    let account_key = login_key(&email.key);
    let mut claims = vec![(
        account_key.clone(),
        limits.login_failures,
        limits.login_window,
    )];
    if let Some(source) = &source {
        claims.push((source.clone(), limits.source_failures, limits.login_window));
    }
    let client_ip = req.client_ip.clone();
    // Without an identity from the delivery path, this call is a request of its own.
    let request = match ctx.identity() {
        Some(identity) => identity,
        None => crypto::new_token()?.1,
    };
    let lease = duration_ms(limits.claim_lease);
    // One store call: claim the attempts (committed before argon2 runs, so parallel requests
    // cannot slip past the limit) and, if granted, read the credentials.
    let (key, now) = (email.key, ctx.now());
    let race_key = key.clone();
    let failing = claims.clone();
    let claimed = ctx
        .write(move |s| {
            match s.claim_for_request(&super::attempt_limits(&claims), &request, lease, now)? {
                RequestClaim::Refused => Ok(None),
                claim => Ok(Some((claim, s.credentials(&key)?))),
            }
        })
        .await?;
    let Some((claim, credentials)) = claimed else {
        tracing::debug!("attempt limit reached");
        // Not even a look-up: the event names the email only.
        let refused = HandlerError::TooManyAttempts;
        return login_failed(ctx, refused, None, email.address, client_ip).await;
    };
    if claim == RequestClaim::Failed {
        // This request was checked before, and the password was wrong: the same answer, not
        // counted again, and no argon2 run for a password already known to be wrong.
        tracing::debug!("a failed login delivered again");
        let user_id = credentials.map(|c| c.user.id);
        let failed = HandlerError::InvalidCredentials;
        return login_failed(ctx, failed, user_id, email.address, client_ip).await;
    }

    let password = normalize_password(&req.password);
    let stored = credentials.as_ref().and_then(|c| c.password_hash.clone());
    // An imported legacy hash was made from the password as typed (the old system did not
    // normalise it); the argon2id hash that replaces it below is of the normalised form.
    let presented = match &stored {
        Some(hash) if crate::hashing::legacy::is_legacy(hash) => req.password.clone(),
        _ => password.clone(),
    };
    let verified = ctx
        .hasher
        .verify_for_login(presented, stored.clone())
        .await?;
    let user = match credentials {
        Some(c) if verified.ok => c.user,
        other => {
            let user_id = other.map(|c| c.user.id);
            // A verified failure: the claim counts now, once for this request however often it
            // is delivered.
            let now = ctx.now();
            ctx.write(move |s| s.fail_claims(&super::attempt_limits(&failing), &request, now))
                .await?;
            return login_failed(
                ctx,
                HandlerError::InvalidCredentials,
                user_id,
                email.address,
                client_ip,
            )
            .await;
        }
    };
    record_user(&user.id);
    // The password was right: the account's failures are cleared and the request's claims
    // removed. In the session's own transaction below, or on its own when no session follows.
    let settle = move |s: &mut crate::store::Tx<'_>| {
        s.clear_claims(
            &[account_key.as_str()],
            &source.iter().map(String::as_str).collect::<Vec<_>>(),
            &request,
        )
    };
    if verified.needs_rehash
        && let Some(old_hash) = stored
    {
        // The policy's parameters changed since this hash was made: remake it now that the
        // password is known to be right.
        let new_hash = ctx.hasher.hash(password).await?;
        let (user_id, now) = (user.id.clone(), ctx.now());
        let replaced = ctx
            .write(move |s| s.rehash_password(&user_id, &old_hash, &new_hash, now))
            .await?;
        tracing::debug!(replaced, "password hash remade with the current parameters");
    }
    if user.state == UserState::Suspended {
        ctx.write(settle).await?;
        // Said only to someone who knows the password.
        return login_failed(
            ctx,
            HandlerError::UserSuspended,
            Some(user.id),
            email.address,
            client_ip,
        )
        .await;
    }
    // The policies have the last word before a session is issued (an `on_auth` trigger).
    let question = PolicyQuestion {
        event: "login",
        user_id: Some(user.id.clone()),
        email: user.email.clone(),
    };
    if let Err(reason) = ctx.policy.check(&question).await {
        ctx.write(settle).await?;
        return login_failed(
            ctx,
            HandlerError::PolicyDenied(reason),
            Some(user.id),
            email.address,
            client_ip,
        )
        .await;
    }

    let (token, digest) = crypto::new_token()?;
    let session_id = crypto::new_session_id()?;
    let now = ctx.now();
    // For a user with a second factor: no session, a pending handle for `mfa_verify`.
    let (mfa_pending, mfa_digest) = super::mfa::issue_pending(now)?;
    let expires_at = now.saturating_add(duration_ms(ctx.config.sessions.idle_timeout));
    let absolute_expires_at = now.saturating_add(duration_ms(ctx.config.sessions.max_lifetime));
    let limit = ctx.config.sessions.per_user;
    let user_id = user.id;
    let events = Arc::clone(&ctx.events);
    let address = email.address;
    // Access and refresh tokens (when the deployment issues them), prepared before the
    // transaction.
    let tokens = super::tokens::prepare(ctx).await?;
    let refresh_digest = tokens.as_ref().map(|p| p.refresh_digest);
    let sid = session_id.clone();
    ctx.commit(
        move |s| {
            settle(s)?;
            if s.mfa_enabled(&user_id)? {
                super::mfa::store_pending(
                    s,
                    &super::mfa::PendingLogin {
                        digest: &mfa_digest,
                        user_id: &user_id,
                        expires_at: mfa_pending.expires_at,
                        method: LoginMethod::Password,
                        provider: None,
                        user_agent: user_agent.as_deref(),
                        client_ip: session_ip.as_deref(),
                    },
                )?;
                return Ok(Some(Err(HandlerError::MfaRequired(mfa_pending))));
            }
            let user = s.create_session(&NewSession {
                user_id: &user_id,
                digest: &digest,
                now,
                expires_at,
                absolute_expires_at,
                session_id: &session_id,
                user_agent: user_agent.as_deref(),
                client_ip: session_ip.as_deref(),
                limited: limit.keep().is_some(),
            })?;
            let Some(user) = user else {
                // The user was suspended or deleted between the check and the insert. The
                // password was right, so a suspension is said as such (as before the race).
                let suspended = s
                    .credentials(&race_key)?
                    .filter(|c| c.user.state == UserState::Suspended);
                let Some(c) = suspended else {
                    return Ok(None);
                };
                let attempt = Attempt {
                    user_id: Some(c.user.id),
                    email: Some(address),
                    source: client_ip,
                    method: LoginMethod::Password,
                    provider: None,
                };
                events.record(s, attempt.failed(&HandlerError::UserSuspended), now)?;
                return Ok(Some(Err(HandlerError::UserSuspended)));
            };
            let body = EventBody::LoginSucceeded(LoginSucceeded {
                user_id: user.id.clone(),
                email: user.email.clone(),
                method: LoginMethod::Password,
                provider: None,
            });
            events.record(s, body, now)?;
            super::session::enforce_limit(s, &events, limit, &user.id, &session_id, now)?;
            let epoch = refresh_digest
                .map(|d| super::tokens::store(s, &d, &user.id, &session_id, now))
                .transpose()?;
            Ok(Some(Ok((user, epoch))))
        },
        move |opened| {
            // `None`: the user was deleted between the check and the insert.
            let (user, epoch) = opened.ok_or(HandlerError::InvalidCredentials)??;
            let issued = super::tokens::finish(tokens, epoch, &user.id, &sid, now)?;
            Ok(super::tokens::login_reply(
                token,
                expires_at,
                user.into_info(),
                issued,
            ))
        },
    )
    .await
}

/// Records an `auth.login.failed` event (with the user when the email belongs to one) and
/// returns `error`. The event is written on its own: the failure changed nothing else.
async fn login_failed<T>(
    ctx: &Call<'_>,
    error: HandlerError,
    user_id: Option<String>,
    email: String,
    source: Option<String>,
) -> Result<T, HandlerError> {
    let attempt = Attempt {
        user_id,
        email: Some(email),
        source,
        method: LoginMethod::Password,
        provider: None,
    };
    login_failed_event(ctx, error, attempt).await
}

/// `confirm_registration`: checks the code, hashes the password, activates the user.
pub async fn confirm_registration(
    ctx: &Call<'_>,
    req: ConfirmRegistrationRequest,
) -> Result<ConfirmRegistrationReply, HandlerError> {
    let r = redeem(
        ctx,
        &req.email,
        CodePurpose::Confirm,
        &req.code,
        req.password,
    )
    .await?;
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let user = s.confirm_registration(&r.user_id, &r.code, &r.hash, r.now)?;
            if let Some(user) = &user {
                let body = EventBody::UserConfirmed(UserEmail {
                    user_id: user.id.clone(),
                    email: user.email.clone(),
                });
                events.record(s, body, r.now)?;
            }
            Ok(user)
        },
        |user| {
            // `None`: consumed by a concurrent confirmation (single use means one success).
            let user = user.ok_or(HandlerError::InvalidCode)?;
            Ok(ConfirmRegistrationReply {
                user: user.into_info(),
            })
        },
    )
    .await
}

/// `complete_reset`: checks the token, sets the new password, ends every session.
pub async fn complete_reset(
    ctx: &Call<'_>,
    req: CompleteResetRequest,
) -> Result<CompleteResetReply, HandlerError> {
    let r = redeem(
        ctx,
        &req.email,
        CodePurpose::Reset,
        &req.token,
        req.password,
    )
    .await?;
    let events = Arc::clone(&ctx.events);
    let lock = login_key(&r.email_key);
    let reply = ctx
        .commit(
            move |s| {
                let done = s.complete_reset(&r.user_id, &r.code, &r.hash, r.now)?;
                if let Some((user, ended)) = &done {
                    let body = EventBody::PasswordChanged(PasswordChanged {
                        session_epoch: s.bump_session_epoch(&user.id)?,
                        user_id: user.id.clone(),
                        email: user.email.clone(),
                        sessions_ended: *ended,
                        reason: PasswordChangeReason::CompleteReset,
                    });
                    events.record(s, body, r.now)?;
                }
                Ok(done)
            },
            |done| {
                let (user, sessions_ended) = done.ok_or(HandlerError::InvalidCode)?;
                Ok(CompleteResetReply {
                    user: user.into_info(),
                    sessions_ended,
                })
            },
        )
        .await?;
    // The owner proved control of the email: a lockout an attacker caused must not keep them
    // out.
    ctx.write(move |s| s.settle_attempts(&[lock.as_str()], &[]))
        .await?;
    Ok(reply)
}

/// `change_password`: verifies the old password, sets the new one, ends the other sessions.
pub async fn change_password(
    ctx: &Call<'_>,
    req: ChangePasswordRequest,
) -> Result<ChangePasswordReply, HandlerError> {
    let session = crypto::digest(req.session.expose());
    let now = ctx.now();
    let credentials = ctx
        .read(move |s| s.session_credentials(&session, now))
        .await?
        .ok_or(HandlerError::SessionInvalid)?;
    record_user(&credentials.user.id);
    require_active(&credentials.user)?;
    let email = Email::parse(&credentials.user.email)?;
    let new_password = check_new_password(&ctx.config.passwords, &req.new_password, &email)?;
    let old_hash = credentials
        .password_hash
        .ok_or(HandlerError::InvalidCredentials)?;
    if too_long(&ctx.config.passwords, &req.old_password)
        || !ctx
            .hasher
            .verify(
                normalize_password(&req.old_password),
                Some(old_hash.clone()),
            )
            .await?
    {
        return Err(HandlerError::InvalidCredentials);
    }
    let new_hash = ctx.hasher.hash(new_password).await?;
    let (user_id, email) = (credentials.user.id, credentials.user.email);
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let ended = s.change_password(&user_id, &old_hash, &new_hash, &session, now)?;
            if let Some(ended) = ended {
                let body = EventBody::PasswordChanged(PasswordChanged {
                    session_epoch: s.bump_session_epoch(&user_id)?,
                    user_id,
                    email,
                    sessions_ended: ended,
                    reason: PasswordChangeReason::ChangePassword,
                });
                events.record(s, body, now)?;
            }
            Ok(ended)
        },
        |ended| {
            // `None`: the password changed concurrently; the old one is no longer current.
            let sessions_ended = ended.ok_or(HandlerError::InvalidCredentials)?;
            Ok(ChangePasswordReply { sessions_ended })
        },
    )
    .await
}

/// A verified one-time code and the new password's hash: what the store needs to consume the
/// code and apply the new password in one transaction.
struct Redeemed {
    user_id: String,
    email_key: String,
    code: Digest,
    hash: String,
    now: i64,
}

/// The shared first half of `confirm_registration` and `complete_reset`: validates the email
/// and the new password, verifies the code (no argon2 for a wrong one), then hashes the
/// password.
async fn redeem(
    ctx: &Call<'_>,
    email: &str,
    purpose: CodePurpose,
    presented: &Secret,
    password: Secret,
) -> Result<Redeemed, HandlerError> {
    let email = Email::parse(email)?;
    let password = check_new_password(&ctx.config.passwords, &password, &email)?;
    let (code, presented) = verify_code(ctx, &email, purpose, presented).await?;
    record_user(&code.user_id);
    let hash = ctx.hasher.hash(password).await?;
    Ok(Redeemed {
        user_id: code.user_id,
        email_key: email.key,
        code: presented,
        hash,
        now: ctx.now(),
    })
}

/// Finds the live code of `purpose` for `email` and compares it in constant time with the
/// presented one. A wrong guess counts against the code (which dies after the configured
/// number of wrong guesses). Returns the code and the presented digest.
async fn verify_code(
    ctx: &Call<'_>,
    email: &Email,
    purpose: CodePurpose,
    presented: &Secret,
) -> Result<(CodeRecord, Digest), HandlerError> {
    let presented = ctx.code_digest(purpose, &email.key, presented.expose());
    let key = email.key.clone();
    let now = ctx.now();
    let code = ctx
        .read(move |s| s.find_code(&key, purpose, now))
        .await?
        .ok_or(HandlerError::InvalidCode)?;
    if !crypto::digests_equal(&code.digest, &presented) {
        let (user_id, stored) = (code.user_id.clone(), code.digest);
        let max = ctx.config.codes.max_attempts;
        ctx.write(move |s| s.code_failed(&user_id, purpose, &stored, max))
            .await?;
        return Err(HandlerError::InvalidCode);
    }
    Ok((code, presented))
}

/// The key of an email's failed-login counter.
pub(crate) fn login_key(email_key: &str) -> String {
    format!("login:{email_key}")
}

/// The key of a source address's failed-login counter: the IPv4 address, or the IPv6 /64
/// (one host usually has a whole /64). A value that is not an IP address is a bad request.
fn source_key(client_ip: &str) -> Result<String, HandlerError> {
    let ip: std::net::IpAddr = client_ip
        .trim()
        .parse()
        .map_err(|_| HandlerError::bad_request("client_ip is not an IP address"))?;
    Ok(match ip {
        std::net::IpAddr::V4(v4) => format!("login-ip:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("login-ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("login-ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    })
}
