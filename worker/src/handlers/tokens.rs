//! Access tokens beside sessions: the signing key a login signs with (the store's active key,
//! created on demand), the `jwks` operation, and the JWKS file.
//!
//! A login that issues tokens takes the key and draws a refresh token before its transaction
//! ([`prepare`]), stores the refresh token and reads the user's session epoch inside it
//! ([`store`]), and signs in the transaction's reply ([`finish`], an Ed25519 signature: tens of
//! microseconds), so the tokens are part of the request's recorded outcome like the session
//! token. `refresh` trades a refresh token for new ones (`crate::store::refresh`).

use super::{Call, Ctx};
use crate::clock::duration_ms;
use crate::crypto::{self, Digest};
use crate::error::{HandlerError, InternalError};
use crate::store::StoreError;
use crate::store::Tx;
use crate::store::query::args;
use crate::store::refresh::RefreshUse;
use crate::tokens::{SignedAccess, SigningKey, Tokens};
use authq_protocol::Secret;
use authq_protocol::events::{EventBody, SessionEndReason, SessionEnded};
use authq_protocol::ops::{
    JwksReply, JwksRequest, LoginReply, RefreshReply, RefreshRequest, UserInfo,
};
use std::sync::Arc;

/// What a login signs its access token with.
#[derive(Debug, Clone)]
pub struct Signer {
    tokens: Arc<Tokens>,
    key: Arc<SigningKey>,
}

impl Signer {
    /// Signs the access token of service client `client_id` with `scope` at `now`.
    pub fn sign_service(
        &self,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<SignedAccess, HandlerError> {
        self.tokens
            .sign_service(&self.key, client_id, scope, now)
            .map_err(|e| HandlerError::from(InternalError::from(e)))
    }

    /// Signs the access token of user `sub` for session `sid` at `now`.
    pub fn sign(
        &self,
        sub: &str,
        sid: &str,
        session_epoch: u64,
        now: i64,
    ) -> Result<SignedAccess, HandlerError> {
        self.tokens
            .sign_user(&self.key, sub, sid, session_epoch, now)
            .map_err(|e| HandlerError::from(InternalError::from(e)))
    }
}

/// The signer for a login at this moment, or `None` when the deployment issues no tokens.
pub async fn signer(ctx: &Ctx) -> Result<Option<Signer>, HandlerError> {
    if !ctx.tokens.config().enabled {
        return Ok(None);
    }
    Ok(Some(Signer {
        tokens: Arc::clone(&ctx.tokens),
        key: active_key(ctx).await?,
    }))
}

/// The tokens a login is about to issue beside its session: the signer, and a fresh refresh
/// token (stored by its digest in the login's transaction, [`store`]).
#[derive(Debug)]
pub struct Pending {
    signer: Signer,
    refresh: Secret,
    /// The refresh token's digest, for [`store`].
    pub refresh_digest: Digest,
}

/// The tokens a login issues, or `None` when the deployment issues none. Before the login's
/// transaction: it may have to create a signing key.
pub async fn prepare(ctx: &Ctx) -> Result<Option<Pending>, HandlerError> {
    let Some(signer) = signer(ctx).await? else {
        return Ok(None);
    };
    let (refresh, refresh_digest) = crypto::new_token()?;
    Ok(Some(Pending {
        signer,
        refresh,
        refresh_digest,
    }))
}

/// In the login's transaction, once session `session_id` exists: stores the refresh token and
/// returns the user's session epoch for the access token.
pub fn store(
    s: &mut Tx<'_>,
    refresh_digest: &Digest,
    user_id: &str,
    session_id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    s.insert_refresh_token(refresh_digest, session_id, now)?;
    s.user_session_epoch(user_id)
}

/// The tokens a login issued.
#[derive(Debug)]
pub struct Issued {
    /// The access token.
    pub access_token: Secret,
    /// When it expires (Unix ms).
    pub access_expires_at: i64,
    /// The refresh token.
    pub refresh_token: Secret,
}

impl Issued {
    /// The reply fields of `login`, `social_login` and `mfa_verify`: `access_token`,
    /// `access_expires_at` and `refresh_token`, each absent when no tokens were issued.
    pub fn into_fields(issued: Option<Self>) -> (Option<Secret>, Option<i64>, Option<Secret>) {
        match issued {
            Some(i) => (
                Some(i.access_token),
                Some(i.access_expires_at),
                Some(i.refresh_token),
            ),
            None => (None, None, None),
        }
    }
}

/// `login`'s reply (and `mfa_verify`'s): the new session, with its tokens when issued.
pub fn login_reply(
    session: Secret,
    expires_at: i64,
    user: UserInfo,
    issued: Option<Issued>,
) -> LoginReply {
    let (access_token, access_expires_at, refresh_token) = Issued::into_fields(issued);
    LoginReply {
        session,
        expires_at,
        user,
        access_token,
        access_expires_at,
        refresh_token,
    }
}

/// Signs the access token of a login whose transaction stored the refresh token ([`store`]
/// gave `epoch`); `None` when no tokens are issued.
pub fn finish(
    pending: Option<Pending>,
    epoch: Option<u64>,
    user_id: &str,
    session_id: &str,
    now: i64,
) -> Result<Option<Issued>, HandlerError> {
    let (Some(pending), Some(epoch)) = (pending, epoch) else {
        return Ok(None);
    };
    let access = pending.signer.sign(user_id, session_id, epoch, now)?;
    Ok(Some(Issued {
        access_token: access.token,
        access_expires_at: access.expires_at,
        refresh_token: pending.refresh,
    }))
}

/// `refresh`: trades an unused refresh token for a new access token and refresh token, and
/// renews the session. A used one ends its session (and every refresh token of it) and records
/// a `session.ended` event with reason `refresh_token_reuse`; then, as for an unknown token or
/// an ended session, the answer is `session_invalid`.
pub async fn refresh(ctx: &Call<'_>, req: RefreshRequest) -> Result<RefreshReply, HandlerError> {
    let Some(pending) = prepare(ctx).await? else {
        // No deployment without tokens ever issued a refresh token.
        return Err(HandlerError::SessionInvalid);
    };
    let given = crypto::digest(req.refresh_token.expose());
    let next = pending.refresh_digest;
    let now = ctx.now();
    let idle_ms = duration_ms(ctx.config.sessions.idle_timeout);
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let used = s.use_refresh_token(&given, &next, now, idle_ms)?;
            if let RefreshUse::Reused {
                user_id,
                session_id,
                ended: true,
            } = &used
            {
                tracing::warn!("a used refresh token was presented again: its session ended");
                let body = EventBody::SessionEnded(SessionEnded {
                    user_id: user_id.clone(),
                    reason: SessionEndReason::RefreshTokenReuse,
                    session_epoch: None,
                    sessions_ended: 1,
                    session_ids: vec![session_id.clone()],
                });
                events.record(s, body, now)?;
            }
            Ok(used)
        },
        move |used| {
            let RefreshUse::Fresh {
                user_id,
                session_id,
                session_epoch,
            } = used
            else {
                return Err(HandlerError::SessionInvalid);
            };
            super::record_user(&user_id);
            let access = pending
                .signer
                .sign(&user_id, &session_id, session_epoch, now)?;
            Ok(RefreshReply {
                access_token: access.token,
                access_expires_at: access.expires_at,
                refresh_token: pending.refresh,
            })
        },
    )
    .await
}

/// The key signing now: the cached one while it has not retired, else the store's active key,
/// else a new one (created race-free: [`Tx::insert_signing_key_unless_active`]). A change of
/// key rewrites the JWKS file.
pub async fn active_key(ctx: &Ctx) -> Result<Arc<SigningKey>, HandlerError> {
    let now = ctx.now();
    if let Some(key) = ctx.tokens.cached(now) {
        return Ok(key);
    }
    let record = match ctx.read(move |s| s.active_signing_key(now)).await? {
        Some(record) => record,
        None => {
            let new = ctx.tokens.generate(now).map_err(InternalError::from)?;
            let kid = new.kid.clone();
            let record = ctx
                .write(move |s| s.insert_signing_key_unless_active(&new, now))
                .await?;
            if record.kid == kid {
                tracing::info!(kid = %kid, retire_at = record.retire_at, "new signing key");
            }
            record
        }
    };
    let key = ctx.tokens.activate(&record).map_err(InternalError::from)?;
    publish(ctx).await;
    Ok(key)
}

/// The published keys at `now`, as a JWKS.
async fn published(ctx: &Ctx) -> Result<JwksReply, HandlerError> {
    let now = ctx.now();
    let keys = ctx.read(move |s| s.published_signing_keys(now)).await?;
    Ok(Tokens::jwks(&keys))
}

/// Rewrites the JWKS file (if one is configured) when the published key set changed. A failure
/// is logged, not returned: the login that noticed the change still succeeds, and the next
/// change or maintenance pass tries again.
pub async fn publish(ctx: &Ctx) {
    let Some(path) = ctx.tokens.config().jwks_file.clone() else {
        return;
    };
    let jwks = match published(ctx).await {
        Ok(jwks) => jwks,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the signing keys for the JWKS file");
            return;
        }
    };
    if !ctx.tokens.file_outdated(&jwks) {
        return;
    }
    let target = path.clone();
    let written =
        tokio::task::spawn_blocking(move || crate::tokens::write_jwks_file(&target, &jwks)).await;
    match written {
        Ok(Ok(())) => tracing::debug!(path = %path.display(), "JWKS file written"),
        Ok(Err(e)) => {
            ctx.tokens.forget_written();
            tracing::warn!(path = %path.display(), error = %e, "cannot write the JWKS file");
        }
        Err(e) => {
            ctx.tokens.forget_written();
            tracing::warn!(error = %e, "the JWKS file task failed");
        }
    }
}

/// The maintenance pass (run with the purge): makes sure a key is active, deletes keys no
/// longer published, and brings the JWKS file up to date.
pub async fn maintain(ctx: &Ctx) {
    if !ctx.tokens.config().enabled {
        return;
    }
    if let Err(e) = active_key(ctx).await {
        tracing::warn!(error = %e, "cannot make a signing key active");
    }
    let now = ctx.now();
    if let Err(e) = ctx.write(move |s| s.purge_signing_keys(now)).await {
        tracing::warn!(error = %e, "cannot purge expired signing keys");
    }
    publish(ctx).await;
}

/// `jwks`: the published keys (none when the deployment issues no tokens).
pub async fn jwks(ctx: &Call<'_>, _req: JwksRequest) -> Result<JwksReply, HandlerError> {
    if !ctx.tokens.config().enabled {
        return Ok(JwksReply::default());
    }
    // A deployment that never signed yet publishes its first key now, so a gateway that
    // starts first has a key to expect.
    active_key(ctx).await?;
    published(ctx).await
}

impl Tx<'_> {
    /// The user's session epoch (0 for an unknown user).
    pub fn user_session_epoch(&mut self, user_id: &str) -> Result<u64, StoreError> {
        let epoch: Option<i64> = self.query_value(
            "SELECT session_epoch FROM users WHERE id = ?1",
            args![user_id],
        )?;
        Ok(u64::try_from(epoch.unwrap_or(0)).unwrap_or(0))
    }
}
