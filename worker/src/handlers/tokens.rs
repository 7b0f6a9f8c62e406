//! Access tokens beside sessions: the signing key a login signs with (the store's active key,
//! created on demand), the `jwks` operation, and the JWKS file.
//!
//! A login that issues a token takes the key before its transaction ([`signer`]), reads the
//! user's session epoch inside it ([`Tx::user_session_epoch`]), and signs in the transaction's
//! reply ([`Signer::sign`], an Ed25519 signature: tens of microseconds), so the token is part
//! of the request's recorded outcome like the session token.

use super::{Call, Ctx};
use crate::error::{HandlerError, InternalError};
use crate::store::StoreError;
use crate::store::Tx;
use crate::store::query::args;
use crate::tokens::{SignedAccess, SigningKey, Tokens};
use authq_protocol::ops::{JwksReply, JwksRequest};
use std::sync::Arc;

/// What a login signs its access token with.
#[derive(Debug, Clone)]
pub struct Signer {
    tokens: Arc<Tokens>,
    key: Arc<SigningKey>,
}

impl Signer {
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
