//! Cheap, hot operations (default tube `session`): `ping`, `check`, `logout`, `logout_all`,
//! `list_sessions`, `end_session`, `get_profile`. None of them runs argon2; each is one indexed look-up by token digest (plus,
//! when social login re-checks are on, one for the session's provider side).

use super::{Call, record_user, require_active};
use crate::crypto;
use crate::error::HandlerError;
use crate::store::Tx;
use authq_protocol::events::{EventBody, SessionEndReason, SessionEnded};
use authq_protocol::ops::{
    CheckReply, CheckRequest, Empty, EndSessionRequest, GetProfileRequest, ListSessionsReply,
    ListSessionsRequest, LogoutAllReply, LogoutAllRequest, LogoutRequest, MAX_LISTED_SESSIONS,
    MAX_USER_AGENT_BYTES, PingRequest, ProfileReply,
};
use std::sync::Arc;

/// The longest session id `end_session` looks up, in bytes (ids are 32 hex digits; anything
/// longer names no session).
const MAX_SESSION_ID_BYTES: usize = 64;

/// Checks the `user_agent` a login passes: at most [`MAX_USER_AGENT_BYTES`] bytes and no
/// control characters, else `bad_request`. Empty (after trimming) counts as absent.
pub(crate) fn user_agent(value: Option<&str>) -> Result<Option<String>, HandlerError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_USER_AGENT_BYTES {
        return Err(HandlerError::bad_request("user_agent is too long"));
    }
    if value.chars().any(char::is_control) {
        return Err(HandlerError::bad_request(
            "user_agent contains control characters",
        ));
    }
    Ok(Some(value.to_owned()))
}

/// After a login created session `newest` for `user_id`: under a session limit, ends the
/// user's oldest sessions beyond it and records their `session.ended` (reason
/// `session_limit`). In the login's transaction.
pub(crate) fn enforce_limit(
    s: &mut Tx<'_>,
    events: &crate::events::EventSink,
    limit: crate::config::SessionLimit,
    user_id: &str,
    newest: &str,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    let Some(keep) = limit.keep() else {
        return Ok(());
    };
    let ended = s.end_sessions_beyond(user_id, newest, keep, now)?;
    if !ended.is_empty() {
        let body = EventBody::SessionEnded(SessionEnded {
            user_id: user_id.to_owned(),
            reason: SessionEndReason::SessionLimit,
            session_epoch: None,
            sessions_ended: ended.len() as u64,
            session_ids: ended,
        });
        events.record(s, body, now)?;
    }
    Ok(())
}

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
                    session_ids: Vec::new(),
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
                    session_ids: Vec::new(),
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

/// `list_sessions`: the live sessions of the session's user, newest first. A read: it does
/// not renew the session it is called with.
pub async fn list_sessions(
    ctx: &Call<'_>,
    req: ListSessionsRequest,
) -> Result<ListSessionsReply, HandlerError> {
    let digest = crypto::digest(req.session.expose());
    let now = ctx.now();
    let found = ctx
        .read(move |s| {
            let Some(owner) = s.session_credentials(&digest, now)? else {
                return Ok(None);
            };
            if owner.user.state != authq_protocol::ops::UserState::Active {
                return Ok(Some((owner.user, Vec::new(), 0)));
            }
            let (sessions, total) =
                s.list_sessions(&owner.user.id, &digest, now, MAX_LISTED_SESSIONS)?;
            Ok(Some((owner.user, sessions, total)))
        })
        .await?;
    let (user, sessions, total) = found.ok_or(HandlerError::SessionInvalid)?;
    record_user(&user.id);
    require_active(&user)?;
    Ok(ListSessionsReply { sessions, total })
}

/// `end_session`: ends one live session of the session's user, by its id (the current one
/// included). An id that names no live session of this user — unknown, ended, expired, or
/// another user's — is `session_not_found`, the same answer for each.
pub async fn end_session(ctx: &Call<'_>, req: EndSessionRequest) -> Result<Empty, HandlerError> {
    let digest = crypto::digest(req.session.expose());
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    let session_id = req.session_id;
    /// What the transaction found.
    enum Ended {
        NoCaller,
        Inactive(crate::store::UserRecord),
        Done(bool),
    }
    ctx.commit(
        move |s| {
            let Some(owner) = s.session_credentials(&digest, now)? else {
                return Ok(Ended::NoCaller);
            };
            if owner.user.state != authq_protocol::ops::UserState::Active {
                return Ok(Ended::Inactive(owner.user));
            }
            let user_id = owner.user.id;
            record_user(&user_id);
            if session_id.len() > MAX_SESSION_ID_BYTES
                || !s.end_session_by_id(&user_id, &session_id, now)?
            {
                return Ok(Ended::Done(false));
            }
            let body = EventBody::SessionEnded(SessionEnded {
                user_id,
                reason: SessionEndReason::EndSession,
                session_epoch: None,
                sessions_ended: 1,
                session_ids: vec![session_id],
            });
            events.record(s, body, now)?;
            Ok(Ended::Done(true))
        },
        |ended| match ended {
            Ended::NoCaller => Err(HandlerError::SessionInvalid),
            Ended::Inactive(user) => {
                require_active(&user)?;
                Err(HandlerError::SessionInvalid)
            }
            Ended::Done(true) => Ok(Empty {}),
            Ended::Done(false) => Err(HandlerError::SessionNotFound),
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
