//! Account administration (default tube `account`): `register`, `start_reset`,
//! `set_profile`, `delete_user`, `suspend`, `unsuspend`.
//!
//! # Decisions
//! - **Confirmation codes are 8 digits**, not long tokens: a person may type them. They are
//!   safe because each is bound to one email and flow, expires, is stored as an HMAC under a key
//!   derived from the server key, and dies after 5 wrong guesses (at most 5 in 10⁸ chances).
//! - **`register` of a pending email re-issues the code** (a user who lost the mail retries); of
//!   an active or suspended one it is `user_exists`: the caller is a trusted service and words
//!   its own reply to the person.
//! - **`start_reset` always returns a token**; for an unknown email it is random and stored
//!   nowhere, so the reply has the same shape and lifetime and reveals nothing.
//! - **Suspension ends every session** rather than hiding them until `unsuspend`: a suspended
//!   account may be a compromised one.
//! - **`set_profile` merges by RFC 7396** by default (`json-patch`'s `merge`, inside the
//!   profile's write transaction, on both engines); `mode: replace` replaces.
//! - **Administrative operations name a user by `user_id` or `email`** and need a role
//!   (`crate::caller`).

use super::{Call, record_user, session};
use crate::clock::duration_ms;
use crate::crypto;
use crate::domain::Email;
use crate::error::HandlerError;
use crate::store::{CodePurpose, NewRegistration, ProfileUpdate, Registration, UserKey};
use authq_protocol::events::{
    EventBody, PasswordResetRequested, UserDeleted, UserEmail, UserRegistered, UserSuspended,
};
use authq_protocol::ops::{
    CheckRequest, DeleteUserReply, DeleteUserRequest, ProfileReply, RegisterReply, RegisterRequest,
    SetProfileRequest, StartResetReply, StartResetRequest, SuspendRequest, UnsuspendRequest,
    UserRef, UserState, UserStateReply,
};
use std::sync::Arc;

/// `register`: a pending user and a fresh confirmation code (replacing any earlier code of a
/// still pending email); `user_exists` for an email that is active or suspended.
pub async fn register(ctx: &Call<'_>, req: RegisterRequest) -> Result<RegisterReply, HandlerError> {
    let email = Email::parse(&req.email)?;
    if ctx.policy.covers_registration() {
        let question = crate::policy::PolicyQuestion {
            event: "register",
            user_id: None,
            email: email.address.clone(),
        };
        ctx.policy
            .check(&question)
            .await
            .map_err(HandlerError::PolicyDenied)?;
    }
    let profile = match &req.profile {
        Some(map) => {
            let text = serde_json::to_string(map).map_err(crate::error::InternalError::from)?;
            if text.len() > ctx.config.max_profile_bytes {
                return Err(HandlerError::bad_request("the profile is too large"));
            }
            Some(text)
        }
        None => None,
    };
    let limits = &ctx.config.limits;
    let claimed = ctx
        .claim(vec![(
            format!("register:{}", email.key),
            limits.register_per_email,
            limits.spam_window,
        )])
        .await;
    if let Err(HandlerError::TooManyAttempts) = claimed {
        // The documented rule holds past the limit too: an active or suspended email is
        // `user_exists` (the limit is there to stop codes being re-issued to a pending one).
        let key = email.key.clone();
        let existing = ctx.read(move |s| s.credentials(&key)).await?;
        if existing.is_some_and(|c| c.user.state != UserState::Pending) {
            return Err(HandlerError::UserExists);
        }
    }
    claimed?;
    let (code, _) = crypto::new_code()?;
    let digest = ctx.code_digest(CodePurpose::Confirm, &email.key, code.expose());
    let now = ctx.now();
    let expires_at = now.saturating_add(duration_ms(ctx.config.codes.confirmation_ttl));
    let new_id = uuid::Uuid::now_v7().to_string();
    let (events, mailed) = (Arc::clone(&ctx.events), code.clone());
    ctx.commit(
        move |s| {
            let outcome = s.register(&NewRegistration {
                user_id: &new_id,
                email: &email.address,
                email_key: &email.key,
                profile: profile.as_deref(),
                code_digest: &digest,
                code_expires_at: expires_at,
                now,
            })?;
            if let Registration::Created { user_id } | Registration::CodeReissued { user_id } =
                &outcome
            {
                let body = EventBody::UserRegistered(UserRegistered {
                    user_id: user_id.clone(),
                    email: email.address.clone(),
                    code: mailed,
                    expires_at,
                });
                events.record(s, body, now)?;
            }
            Ok(outcome)
        },
        move |outcome| match outcome {
            Registration::Created { user_id } | Registration::CodeReissued { user_id } => {
                record_user(&user_id);
                Ok(RegisterReply {
                    user_id,
                    code,
                    expires_at,
                })
            }
            Registration::Exists => Err(HandlerError::UserExists),
        },
    )
    .await
}

/// `start_reset`: a reset token for an active user. The reply has the same shape whether or
/// not the email belongs to one: for an unknown email the token is random and stored nowhere.
pub async fn start_reset(
    ctx: &Call<'_>,
    req: StartResetRequest,
) -> Result<StartResetReply, HandlerError> {
    let email = Email::parse(&req.email)?;
    let limits = &ctx.config.limits;
    // Counted for unknown emails too, so the limit says nothing about who is a user.
    ctx.claim(vec![(
        format!("reset:{}", email.key),
        limits.reset_per_email,
        limits.spam_window,
    )])
    .await?;
    let (token, _) = crypto::new_token()?;
    let digest = ctx.code_digest(CodePurpose::Reset, &email.key, token.expose());
    let now = ctx.now();
    let expires_at = now.saturating_add(duration_ms(ctx.config.codes.reset_ttl));
    let (events, mailed) = (Arc::clone(&ctx.events), token.clone());
    ctx.commit(
        move |s| {
            if s.start_reset(&email.key, &digest, expires_at, now)? {
                let body = EventBody::PasswordResetRequested(PasswordResetRequested {
                    email: email.address.clone(),
                    token: mailed,
                    expires_at,
                });
                events.record(s, body, now)?;
            }
            Ok(())
        },
        move |_| Ok(StartResetReply { token, expires_at }),
    )
    .await
}

/// `set_profile`: merges (RFC 7396) or replaces the profile of the session's user.
pub async fn set_profile(
    ctx: &Call<'_>,
    req: SetProfileRequest,
) -> Result<ProfileReply, HandlerError> {
    let checked = session::check(
        ctx,
        CheckRequest {
            session: req.session,
        },
    )
    .await?;
    let patch = serde_json::to_string(&req.profile).map_err(crate::error::InternalError::from)?;
    let (user_id, mode, max, now) = (
        checked.user.id,
        req.mode,
        ctx.config.max_profile_bytes,
        ctx.now(),
    );
    ctx.commit(
        move |s| s.set_profile(&user_id, &patch, mode, max, now),
        |update| match update {
            ProfileUpdate::Updated(user) => Ok(ProfileReply {
                user: user.into_info(),
            }),
            ProfileUpdate::TooLarge => Err(HandlerError::bad_request("the profile is too large")),
            ProfileUpdate::NotFound => Err(HandlerError::SessionInvalid),
        },
    )
    .await
}

/// `delete_user`: the user, every session and every code, gone.
pub async fn delete_user(
    ctx: &Call<'_>,
    req: DeleteUserRequest,
) -> Result<DeleteUserReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let (events, now) = (Arc::clone(&ctx.events), ctx.now());
    let policy = ctx.config.deletion.clone();
    let deadline = now.saturating_add(duration_ms(policy.deadline));
    ctx.commit(
        move |s| {
            // The epoch moves before the row goes, so the event carries the final one.
            let epoch = match target.key() {
                UserKey::Id(id) => s.bump_session_epoch(id)?,
                UserKey::EmailKey(key) => match s.credentials(key)? {
                    Some(c) => s.bump_session_epoch(&c.user.id)?,
                    None => 0,
                },
            };
            let deleted = s.delete_user(target.key())?;
            if let Some(user_id) = &deleted {
                // The event is the deletion request to every service; the cascade tracks
                // their receipts (see `deletion_done`).
                if !policy.services.is_empty() {
                    s.begin_deletion(user_id, &policy.services, now, deadline)?;
                }
                let body = EventBody::UserDeleted(UserDeleted {
                    user_id: user_id.clone(),
                    session_epoch: epoch,
                    services: policy.services,
                });
                events.record(s, body, now)?;
            }
            Ok(deleted)
        },
        |deleted| {
            let user_id = deleted.ok_or(HandlerError::NotFound)?;
            record_user(&user_id);
            Ok(DeleteUserReply { user_id })
        },
    )
    .await
}

/// `suspend`: the user can no longer log in, and every session ends at once.
pub async fn suspend(ctx: &Call<'_>, req: SuspendRequest) -> Result<UserStateReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let done = s.suspend(target.key(), now)?;
            if let Some((user, ended)) = &done {
                let body = EventBody::UserSuspended(UserSuspended {
                    session_epoch: s.bump_session_epoch(&user.id)?,
                    user_id: user.id.clone(),
                    email: user.email.clone(),
                    sessions_ended: *ended,
                });
                events.record(s, body, now)?;
            }
            Ok(done)
        },
        |done| {
            let (user, sessions_ended) = done.ok_or(HandlerError::NotFound)?;
            record_user(&user.id);
            Ok(UserStateReply {
                user: user.into_info(),
                sessions_ended,
            })
        },
    )
    .await
}

/// `unsuspend`: lifts a suspension.
pub async fn unsuspend(
    ctx: &Call<'_>,
    req: UnsuspendRequest,
) -> Result<UserStateReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let user = s.unsuspend(target.key(), now)?;
            if let Some(user) = &user {
                let body = EventBody::UserUnsuspended(UserEmail {
                    user_id: user.id.clone(),
                    email: user.email.clone(),
                });
                events.record(s, body, now)?;
            }
            Ok(user)
        },
        |user| {
            let user = user.ok_or(HandlerError::NotFound)?;
            record_user(&user.id);
            Ok(UserStateReply {
                user: user.into_info(),
                sessions_ended: 0,
            })
        },
    )
    .await
}

/// A validated [`UserRef`], owned so it can move to the blocking pool.
pub(super) enum Target {
    Id(String),
    EmailKey(String),
}

impl Target {
    pub(super) fn parse(user: &UserRef) -> Result<Self, HandlerError> {
        match (&user.user_id, &user.email) {
            (Some(id), None) => Ok(Self::Id(id.clone())),
            (None, Some(email)) => Ok(Self::EmailKey(Email::parse(email)?.key)),
            _ => Err(HandlerError::bad_request(
                "name the user with exactly one of `user_id` and `email`",
            )),
        }
    }

    pub(super) fn key(&self) -> UserKey<'_> {
        match self {
            Self::Id(id) => UserKey::Id(id),
            Self::EmailKey(key) => UserKey::EmailKey(key),
        }
    }
}
