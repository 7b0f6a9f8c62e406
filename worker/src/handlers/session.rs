//! Cheap, hot operations (default tube `session`): `ping`, `check`, `logout`, `logout_all`,
//! `get_profile`. None of them runs argon2; each is one indexed look-up by token digest (plus,
//! when social login re-checks are on, one for the session's provider side).

use super::{Call, record_user, require_active};
use crate::crypto;
use crate::error::HandlerError;
use authq_protocol::events::{EventBody, SessionEndReason, SessionEnded};
use authq_protocol::ops::{
    CheckReply, CheckRequest, Empty, GetProfileRequest, LogoutAllReply, LogoutAllRequest,
    LogoutRequest, PingRequest, ProfileReply,
};
use std::sync::Arc;

/// `ping`: replies at once.
pub async fn ping(_ctx: &Call<'_>, _req: PingRequest) -> Result<Empty, HandlerError> {
    Ok(Empty {})
}

/// `check`: the session's user; renews the session once it is past the renewal point. The
/// look-up runs on the executor when it need not wait (see [`super::Ctx::read_now_or`]).
pub async fn check(ctx: &Call<'_>, req: CheckRequest) -> Result<CheckReply, HandlerError> {
    let digest = crypto::digest(req.session.expose());
    let (now, renewal) = (ctx.now(), ctx.renewal());
    let session = ctx
        .read_now_or(
            ctx.store.check_session_now(&digest, now, renewal),
            move |s| s.check_session(&digest, now, renewal),
        )
        .await?
        .ok_or(HandlerError::SessionInvalid)?;
    record_user(&session.user.id);
    require_active(&session.user)?;
    #[cfg(feature = "social")]
    if ctx.social.rechecks_enabled() {
        // A social session past its re-check interval is re-verified with its provider.
        super::social::recheck(ctx, digest).await?;
    }
    Ok(CheckReply {
        user: session.user.into_info(),
        expires_at: session.expires_at,
        renewed: session.renewed,
        session_epoch: session.session_epoch,
    })
}

/// `logout`: ends the session.
pub async fn logout(ctx: &Call<'_>, req: LogoutRequest) -> Result<Empty, HandlerError> {
    let digest = crypto::digest(req.session.expose());
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let owner = s.session_credentials(&digest, now)?;
            let ended = s.end_session(&digest, now)?;
            if let (true, Some(owner)) = (ended, owner) {
                let body = EventBody::SessionEnded(SessionEnded {
                    user_id: owner.user.id,
                    reason: SessionEndReason::Logout,
                    session_epoch: None,
                    sessions_ended: 1,
                });
                events.record(s, body, now)?;
            }
            Ok(ended)
        },
        |ended| {
            if ended {
                Ok(Empty {})
            } else {
                Err(HandlerError::SessionInvalid)
            }
        },
    )
    .await
}

/// `logout_all`: ends every session of the session's user.
pub async fn logout_all(
    ctx: &Call<'_>,
    req: LogoutAllRequest,
) -> Result<LogoutAllReply, HandlerError> {
    let digest = crypto::digest(req.session.expose());
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let owner = s.session_credentials(&digest, now)?;
            let ended = s.end_all_sessions(&digest, now)?;
            if let (Some(n), Some(owner)) = (ended, owner) {
                let body = EventBody::SessionEnded(SessionEnded {
                    session_epoch: Some(s.bump_session_epoch(&owner.user.id)?),
                    user_id: owner.user.id,
                    reason: SessionEndReason::LogoutAll,
                    sessions_ended: n,
                });
                events.record(s, body, now)?;
            }
            Ok(ended)
        },
        |ended| {
            let ended = ended.ok_or(HandlerError::SessionInvalid)?;
            Ok(LogoutAllReply { ended })
        },
    )
    .await
}

/// `get_profile`: the session's user with the profile (a use of the session: it may renew).
pub async fn get_profile(
    ctx: &Call<'_>,
    req: GetProfileRequest,
) -> Result<ProfileReply, HandlerError> {
    let reply = check(
        ctx,
        CheckRequest {
            session: req.session,
        },
    )
    .await?;
    Ok(ProfileReply { user: reply.user })
}
