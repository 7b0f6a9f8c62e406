//! The TOTP second factor (RFC 6238): `mfa_enroll`, `mfa_confirm`, `mfa_verify` (default tube
//! `account`) and `mfa_disable` (tube `password`: it may verify the password with argon2).
//!
//! - **Codes**: 6 digits, 30 s steps, HMAC-SHA1 (what every authenticator app reads from the
//!   `otpauth://` URI). A code of the current step or of one step either side is accepted
//!   ([`SKEW_STEPS`]), each step once per user: accepting a code records its step, and a code
//!   of that step or an earlier one is refused afterwards ([`crate::store::Tx::mfa_accept_step`],
//!   one conditional `UPDATE`, so two workers cannot both accept it).
//! - **At rest**: the secret is sealed under its own derived key ([`SEALING_LABEL`]), bound to
//!   its user; recovery codes are keyed digests ([`crate::crypto::code_digest`]); pending
//!   handles are digests, like session tokens.
//! - **Attempts**: every code or password check claims an attempt on the user's counter
//!   `mfa:{user_id}` (the login limits: `login_failures` per `login_window`); a success clears
//!   it.
//! - **Login**: `login` and `social_login` stop at `mfa_required` for an enrolled user and
//!   store a pending handle ([`issue_pending`]); `mfa_verify` turns it, with a code, into the
//!   session the login would have opened.

use super::login_failure::Attempt;
use super::{Call, record_user, require_active};
use crate::clock::duration_ms;
use crate::crypto::{self, Digest};
use crate::domain::{normalize_password, too_long};
use crate::error::HandlerError;
use crate::sealing::Sealer;
use crate::store::{MfaRecord, NewMfaPending, NewSession, Tx, UserRecord};
use authq_protocol::Secret;
use authq_protocol::events::{EventBody, LoginMethod, LoginSucceeded, MfaChange, MfaChanged};
use authq_protocol::ops::{
    Empty, LoginReply, MfaConfirmReply, MfaConfirmRequest, MfaDisableRequest, MfaEnrollReply,
    MfaEnrollRequest, MfaPending, MfaVerifyRequest, RECOVERY_CODES,
};
use std::sync::Arc;
use totp_rs::{Algorithm, TOTP};

/// The label the TOTP secrets' sealing key is derived from the server key by.
pub const SEALING_LABEL: &str = "authq totp secret v1";
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Steps either side of the current one whose codes are accepted (clock drift, typing time).
pub const SKEW_STEPS: i64 = 1;
/// How long a pending handle lives (ms).
pub const PENDING_TTL_MS: i64 = 5 * 60 * 1000;
/// The secret's length: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// The issuer authenticator apps show beside the account.
const ISSUER: &str = "authq";

/// The sealer of TOTP secrets, derived from the server key.
pub fn sealer(server: &crate::keys::ServerKey) -> Sealer {
    Sealer::derived(server, SEALING_LABEL)
}

/// The attempt counter of a user's code checks.
fn attempts_key(user_id: &str) -> String {
    format!("mfa:{user_id}")
}

/// The TOTP generator of `secret` for `account`.
fn totp(secret: Vec<u8>, account: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS as usize,
        1,
        PERIOD,
        secret,
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
}

/// The time step of `now` (Unix ms).
fn step_of(now: i64) -> i64 {
    now.div_euclid(1000) / PERIOD as i64
}

/// The time step (within [`SKEW_STEPS`] of now, after `last_step`) whose code `code` is, if
/// any; each candidate compared in constant time.
fn matching_step(totp: &TOTP, code: &str, now: i64, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut found = None;
    for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
        let Ok(at) = u64::try_from(step) else {
            continue;
        };
        let expected = totp.generate(at * PERIOD);
        if crypto::digests_equal(expected.as_bytes(), code.as_bytes())
            && step > last_step
            && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

/// The user's secret, opened.
fn open_secret(ctx: &Call<'_>, user_id: &str, record: &MfaRecord) -> Result<Vec<u8>, HandlerError> {
    Ok(ctx
        .mfa_sealer
        .open(&record.secret_sealed, user_id.as_bytes())?)
}

/// The live, active user behind `session`, with the password hash.
async fn session_user(
    ctx: &Call<'_>,
    session: &Secret,
) -> Result<crate::store::Credentials, HandlerError> {
    let digest = crypto::digest(session.expose());
    let now = ctx.now();
    let credentials = ctx
        .read(move |s| s.session_credentials(&digest, now))
        .await?
        .ok_or(HandlerError::SessionInvalid)?;
    record_user(&credentials.user.id);
    require_active(&credentials.user)?;
    Ok(credentials)
}

/// Claims one attempt on the user's code-check counter.
async fn claim(ctx: &Call<'_>, user_id: &str) -> Result<(), HandlerError> {
    let limits = &ctx.config.limits;
    ctx.claim(vec![(
        attempts_key(user_id),
        limits.login_failures,
        limits.login_window,
    )])
    .await
}

/// Forgets the user's code-check counter (after a success).
fn clear_attempts(s: &mut Tx<'_>, user_id: &str) -> Result<(), crate::store::StoreError> {
    s.settle_attempts(&[attempts_key(user_id).as_str()], &[])
}

/// The user's enrolment, which must be enabled.
async fn enabled_record(ctx: &Call<'_>, user_id: &str) -> Result<MfaRecord, HandlerError> {
    let id = user_id.to_owned();
    ctx.read(move |s| s.mfa_record(&id))
        .await?
        .filter(|r| r.enabled)
        .ok_or(HandlerError::MfaNotEnabled)
}

/// The `mfa.changed` event.
fn changed(user_id: &str, change: MfaChange, left: Option<u64>) -> EventBody {
    EventBody::MfaChanged(MfaChanged {
        user_id: user_id.to_owned(),
        change,
        recovery_codes_left: left,
    })
}

/// A fresh pending handle for a login that passed its first factor: the handle for the reply
/// and its digest for the store ([`store_pending`]).
pub(crate) fn issue_pending(now: i64) -> Result<(MfaPending, Digest), HandlerError> {
    let (handle, digest) = crypto::new_token()?;
    Ok((
        MfaPending {
            handle,
            expires_at: now.saturating_add(PENDING_TTL_MS),
        },
        digest,
    ))
}

/// The login method a pending handle records.
fn method_str(method: LoginMethod) -> &'static str {
    match method {
        LoginMethod::Password => "password",
        LoginMethod::Social => "social",
    }
}

/// What a login stores with its pending handle (in its own transaction): who, how, and the
/// session metadata the session will carry.
pub(crate) struct PendingLogin<'a> {
    /// The handle's digest.
    pub digest: &'a Digest,
    /// The user.
    pub user_id: &'a str,
    /// The handle's expiry.
    pub expires_at: i64,
    /// Password or social.
    pub method: LoginMethod,
    /// The social provider.
    pub provider: Option<&'a str>,
    /// The login's user agent.
    pub user_agent: Option<&'a str>,
    /// The login's client address.
    pub client_ip: Option<&'a str>,
}

/// Stores a login's pending handle.
pub(crate) fn store_pending(
    s: &mut Tx<'_>,
    p: &PendingLogin<'_>,
) -> Result<(), crate::store::StoreError> {
    s.insert_mfa_pending(&NewMfaPending {
        digest: p.digest,
        user_id: p.user_id,
        expires_at: p.expires_at,
        method: method_str(p.method),
        provider: p.provider,
        user_agent: p.user_agent,
        client_ip: p.client_ip,
    })
}

/// `mfa_enroll`: a new secret for the session's user, inactive until `mfa_confirm`. Calling it
/// again before confirming replaces the secret; once confirmed it is `mfa_enabled`.
pub async fn mfa_enroll(
    ctx: &Call<'_>,
    req: MfaEnrollRequest,
) -> Result<MfaEnrollReply, HandlerError> {
    let credentials = session_user(ctx, &req.session).await?;
    let user = credentials.user;
    let secret = crypto::random_bytes::<SECRET_BYTES>()?.to_vec();
    let sealed = ctx.mfa_sealer.seal(&secret, user.id.as_bytes())?;
    let generator = totp(secret, &user.email);
    let reply = MfaEnrollReply {
        secret: Secret::new(generator.get_secret_base32()),
        uri: Secret::new(generator.get_url()),
        digits: DIGITS,
        period: PERIOD,
    };
    let (events, now, user_id) = (Arc::clone(&ctx.events), ctx.now(), user.id);
    ctx.commit(
        move |s| {
            let begun = s.mfa_begin_enrollment(&user_id, &sealed, now)?;
            if begun {
                events.record(
                    s,
                    changed(&user_id, MfaChange::EnrollmentStarted, None),
                    now,
                )?;
            }
            Ok(begun)
        },
        move |begun| {
            if begun {
                Ok(reply)
            } else {
                Err(HandlerError::MfaEnabled)
            }
        },
    )
    .await
}

/// `mfa_confirm`: the first code activates the enrolment; the reply has the recovery codes.
pub async fn mfa_confirm(
    ctx: &Call<'_>,
    req: MfaConfirmRequest,
) -> Result<MfaConfirmReply, HandlerError> {
    let credentials = session_user(ctx, &req.session).await?;
    let user_id = credentials.user.id;
    let id = user_id.clone();
    let record = ctx
        .read(move |s| s.mfa_record(&id))
        .await?
        .ok_or(HandlerError::MfaNotEnabled)?;
    if record.enabled {
        return Err(HandlerError::MfaEnabled);
    }
    claim(ctx, &user_id).await?;
    let secret = open_secret(ctx, &user_id, &record)?;
    let now = ctx.now();
    let step = matching_step(&totp(secret, ""), req.code.expose(), now, record.last_step)
        .ok_or(HandlerError::InvalidCode)?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut digests = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let code = new_recovery_code()?;
        digests.push(recovery_digest(ctx, &user_id, &code));
        codes.push(Secret::new(code));
    }
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let enabled = s.mfa_enable(&user_id, &record.secret_sealed, step, &digests, now)?;
            if enabled {
                clear_attempts(s, &user_id)?;
                let left = Some(RECOVERY_CODES as u64);
                events.record(s, changed(&user_id, MfaChange::Enabled, left), now)?;
            }
            Ok(enabled)
        },
        move |enabled| {
            if enabled {
                Ok(MfaConfirmReply {
                    recovery_codes: codes,
                })
            } else {
                // Re-enrolled or confirmed concurrently: this code was for another secret.
                Err(HandlerError::InvalidCode)
            }
        },
    )
    .await
}

/// A recovery code: 16 hex digits in groups of four (64 random bits).
fn new_recovery_code() -> Result<String, HandlerError> {
    use std::fmt::Write as _;
    let bytes = crypto::random_bytes::<8>()?;
    let mut code = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 2 == 0 {
            code.push('-');
        }
        let _ = write!(code, "{b:02x}");
    }
    Ok(code)
}

/// The keyed digest a recovery code is stored under: case, spaces and dashes do not matter.
fn recovery_digest(ctx: &Call<'_>, user_id: &str, code: &str) -> Digest {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    crypto::code_digest(ctx.code_key.expose(), "mfa_recovery", user_id, &normal)
}

/// Which second factor a request presents.
enum Factor {
    /// A TOTP code of this step.
    Step(i64),
    /// A recovery code with this digest.
    Recovery(Digest),
}

/// `mfa_verify`: the pending handle of an `mfa_required` login and a code (or a recovery code)
/// to the session that login would have opened, with its metadata, under the session limit,
/// with the same `auth.login.succeeded` event. A wrong code keeps the handle (until it
/// expires), counts an attempt and records `auth.login.failed` (reason `invalid_code`).
pub async fn mfa_verify(ctx: &Call<'_>, req: MfaVerifyRequest) -> Result<LoginReply, HandlerError> {
    if req.code.is_some() == req.recovery_code.is_some() {
        return Err(HandlerError::bad_request(
            "give exactly one of code and recovery_code",
        ));
    }
    let handle = crypto::digest(req.handle.expose());
    let now = ctx.now();
    let pending = ctx
        .read(move |s| s.mfa_pending(&handle, now))
        .await?
        .ok_or(HandlerError::InvalidCode)?;
    let user_id = pending.user_id.clone();
    record_user(&user_id);
    let method = if pending.method == "social" {
        LoginMethod::Social
    } else {
        LoginMethod::Password
    };
    let attempt = move |pending: &crate::store::MfaPendingRecord| Attempt {
        user_id: Some(pending.user_id.clone()),
        email: None,
        source: pending.client_ip.clone(),
        method,
        provider: pending.provider.clone(),
    };
    if let Err(e) = claim(ctx, &user_id).await {
        return super::login_failure::login_failed_event(ctx, e, attempt(&pending)).await;
    }
    let factor = match (&req.code, &req.recovery_code) {
        (Some(code), _) => {
            // Turned off since the login (which deleted its handles): the handle is dead.
            let record = enabled_record(ctx, &user_id).await.map_err(|e| match e {
                HandlerError::MfaNotEnabled => HandlerError::InvalidCode,
                e => e,
            })?;
            let secret = open_secret(ctx, &user_id, &record)?;
            match matching_step(&totp(secret, ""), code.expose(), now, record.last_step) {
                Some(step) => Factor::Step(step),
                None => {
                    let failed = HandlerError::InvalidCode;
                    return super::login_failure::login_failed_event(
                        ctx,
                        failed,
                        attempt(&pending),
                    )
                    .await;
                }
            }
        }
        (None, Some(code)) => Factor::Recovery(recovery_digest(ctx, &user_id, code.expose())),
        (None, None) => unreachable!("checked above"),
    };

    let (token, digest) = crypto::new_token()?;
    let session_id = crypto::new_session_id()?;
    let expires_at = now.saturating_add(duration_ms(ctx.config.sessions.idle_timeout));
    let absolute_expires_at = now.saturating_add(duration_ms(ctx.config.sessions.max_lifetime));
    let limit = ctx.config.sessions.per_user;
    let events = Arc::clone(&ctx.events);
    // Access and refresh tokens (when the deployment issues them), as `login` issues them.
    let tokens = super::tokens::prepare(ctx).await?;
    let refresh_digest = tokens.as_ref().map(|p| p.refresh_digest);
    let sid = session_id.clone();
    /// What the transaction found.
    enum Verified {
        Wrong,
        Gone,
        Inactive,
        /// The session's user, and its session epoch when tokens are issued.
        Opened(UserRecord, Option<u64>),
    }
    ctx.commit(
        move |s| {
            // The handle first, locked: a concurrent verify of it waits, then finds it gone.
            let lock = s.dialect(
                "SELECT expires_at FROM mfa_pending WHERE handle_digest = ?1 AND expires_at > ?2",
                "SELECT expires_at FROM mfa_pending WHERE handle_digest = ?1 AND expires_at > ?2
                 FOR UPDATE",
            );
            let live: Option<i64> =
                s.query_value(lock, crate::store::query::args![&handle, now])?;
            if live.is_none() {
                return Ok(Verified::Gone);
            }
            let accepted = match &factor {
                Factor::Step(step) => s.mfa_accept_step(&pending.user_id, *step)?,
                Factor::Recovery(code) => match s.mfa_use_recovery_code(&pending.user_id, code)? {
                    Some(left) => {
                        let body =
                            changed(&pending.user_id, MfaChange::RecoveryCodeUsed, Some(left));
                        events.record(s, body, now)?;
                        true
                    }
                    None => false,
                },
            };
            if !accepted {
                // A wrong recovery code, or a TOTP code accepted once already (a replay).
                let body = attempt(&pending).failed(&HandlerError::InvalidCode);
                events.record(s, body, now)?;
                return Ok(Verified::Wrong);
            }
            s.consume_mfa_pending(&handle, now)?;
            clear_attempts(s, &pending.user_id)?;
            let user = s.create_session(&NewSession {
                user_id: &pending.user_id,
                digest: &digest,
                now,
                expires_at,
                absolute_expires_at,
                session_id: &session_id,
                user_agent: pending.user_agent.as_deref(),
                client_ip: pending.client_ip.as_deref(),
                limited: limit.keep().is_some(),
            })?;
            let Some(user) = user else {
                return Ok(Verified::Inactive);
            };
            let body = EventBody::LoginSucceeded(LoginSucceeded {
                user_id: user.id.clone(),
                email: user.email.clone(),
                method,
                provider: pending.provider.clone(),
            });
            events.record(s, body, now)?;
            super::session::enforce_limit(s, &events, limit, &user.id, &session_id, now)?;
            let epoch = refresh_digest
                .map(|d| super::tokens::store(s, &d, &user.id, &session_id, now))
                .transpose()?;
            Ok(Verified::Opened(user, epoch))
        },
        move |verified| match verified {
            Verified::Wrong | Verified::Gone => Err(HandlerError::InvalidCode),
            // Suspended or deleted since the login: no session.
            Verified::Inactive => Err(HandlerError::InvalidCode),
            Verified::Opened(user, epoch) => {
                let issued = super::tokens::finish(tokens, epoch, &user.id, &sid, now)?;
                Ok(super::tokens::login_reply(
                    token,
                    expires_at,
                    user.into_info(),
                    issued,
                ))
            }
        },
    )
    .await
}

/// `mfa_disable`: turns the session's user's second factor off, proven by a current code
/// (accepted once, like any) or by the password (argon2, on the hash pool).
pub async fn mfa_disable(ctx: &Call<'_>, req: MfaDisableRequest) -> Result<Empty, HandlerError> {
    if req.code.is_some() == req.password.is_some() {
        return Err(HandlerError::bad_request(
            "give exactly one of code and password",
        ));
    }
    let credentials = session_user(ctx, &req.session).await?;
    let user_id = credentials.user.id;
    let record = enabled_record(ctx, &user_id).await?;
    claim(ctx, &user_id).await?;
    let now = ctx.now();
    let step = match (&req.code, &req.password) {
        (Some(code), _) => {
            let secret = open_secret(ctx, &user_id, &record)?;
            let step = matching_step(&totp(secret, ""), code.expose(), now, record.last_step)
                .ok_or(HandlerError::InvalidCode)?;
            Some(step)
        }
        (None, Some(password)) => {
            let stored = credentials.password_hash;
            if too_long(&ctx.config.passwords, password)
                || stored.is_none()
                || !ctx
                    .hasher
                    .verify(normalize_password(password), stored)
                    .await?
            {
                return Err(HandlerError::InvalidCredentials);
            }
            None
        }
        (None, None) => unreachable!("checked above"),
    };
    let events = Arc::clone(&ctx.events);
    /// What the transaction found.
    enum Disabled {
        Replayed,
        NotEnabled,
        Done,
    }
    ctx.commit(
        move |s| {
            if let Some(step) = step
                && !s.mfa_accept_step(&user_id, step)?
            {
                return Ok(Disabled::Replayed);
            }
            if !s.mfa_disable(&user_id)? {
                return Ok(Disabled::NotEnabled);
            }
            clear_attempts(s, &user_id)?;
            events.record(s, changed(&user_id, MfaChange::Disabled, None), now)?;
            Ok(Disabled::Done)
        },
        |disabled| match disabled {
            Disabled::Replayed => Err(HandlerError::InvalidCode),
            Disabled::NotEnabled => Err(HandlerError::MfaNotEnabled),
            Disabled::Done => Ok(Empty {}),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's SHA-1 test secret and vectors (8 digits there; the last 6 here).
    #[test]
    fn codes_match_rfc_6238_vectors() {
        let t = totp(b"12345678901234567890".to_vec(), "a@b.c");
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1_111_111_109), "081804");
        assert_eq!(t.generate(1_234_567_890), "005924");
    }

    #[test]
    fn steps_within_the_skew_match_once_and_only_after_the_last() {
        let t = totp(b"12345678901234567890".to_vec(), "a@b.c");
        let now = 1_111_111_109_000;
        let step = step_of(now);
        let code = |s: i64| t.generate((s as u64) * PERIOD);
        assert_eq!(matching_step(&t, &code(step), now, -1), Some(step));
        assert_eq!(matching_step(&t, &code(step - 1), now, -1), Some(step - 1));
        assert_eq!(matching_step(&t, &code(step + 1), now, -1), Some(step + 1));
        assert_eq!(matching_step(&t, &code(step - 2), now, -1), None);
        assert_eq!(matching_step(&t, &code(step + 2), now, -1), None);
        assert_eq!(matching_step(&t, &code(step), now, step), None, "replay");
        assert_eq!(matching_step(&t, "12345", now, -1), None);
        assert_eq!(matching_step(&t, "abcdef", now, -1), None);
    }

    #[test]
    fn recovery_codes_have_64_bits_in_groups() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
    }
}
