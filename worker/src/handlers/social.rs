//! Social login (default tube `account`): `social_url`, `social_login`, `link_social`, and
//! the re-check of social sessions that `check` runs.
//!
//! The flow: `social_url` stores a single-use `state` with a sealed PKCE verifier and returns
//! the provider's authorization URL; the browser comes back with `code` and `state`;
//! `social_login` consumes the state (before any provider call, so a state works once even
//! when the provider then fails), exchanges the code, fetches the profile, and lets the store
//! find, link or create the user and open a session in one transaction.

use super::login_failure::{Attempt, login_failed_event};
use super::{Call, record_user, require_active};
use crate::clock::duration_ms;
use crate::config::ProviderConfig;
use crate::crypto::{self, Digest};
use crate::domain::Email;
use crate::error::{HandlerError, InternalError};
use crate::policy::PolicyQuestion;
use crate::social::{self, Identity, KeptTokens, OAuthClient, ProviderError, Tokens, oauth};
use crate::store::{
    LinkOutcome, NewOAuthState, NewSocialLogin, ProviderEmail, SocialLink, SocialLoginOutcome,
    UserKey,
};
use authq_protocol::Secret;
use authq_protocol::events::{EventBody, LoginMethod, LoginSucceeded};
use authq_protocol::ops::{
    LinkSocialReply, LinkSocialRequest, SocialLoginReply, SocialLoginRequest, SocialUrlReply,
    SocialUrlRequest,
};
use std::sync::Arc;
use tracing::{debug, info, warn};
use zeroize::Zeroize;

/// `social_url`: a fresh single-use `state` (with a sealed PKCE verifier) and the provider's
/// authorization URL carrying it.
pub async fn social_url(
    ctx: &Call<'_>,
    req: SocialUrlRequest,
) -> Result<SocialUrlReply, HandlerError> {
    let (provider, _, sealer) = ctx
        .social
        .provider(&req.provider)
        .ok_or(HandlerError::UnknownProvider)?;
    let redirect_uri = match req.redirect_uri {
        None => provider.redirect_uri.clone(),
        Some(uri) if provider.allows_redirect(&uri) => uri,
        Some(_) => {
            return Err(HandlerError::bad_request(
                "redirect_uri is not one of the provider's configured redirect URIs",
            ));
        }
    };
    let (state, digest) = crypto::new_token()?;
    let (verifier, _) = crypto::new_token()?;
    let verifier_sealed = sealer.seal(verifier.expose().as_bytes(), &social::state_aad(&digest))?;
    let url = oauth::authorization_url(provider, &redirect_uri, state.expose(), verifier.expose())
        .map_err(|_| InternalError::Social("the authorization URL does not parse"))?;
    let now = ctx.now();
    let expires_at = now.saturating_add(duration_ms(ctx.social.config().state_ttl));
    let name = req.provider;
    ctx.commit(
        move |s| {
            s.create_oauth_state(&NewOAuthState {
                digest: &digest,
                provider: &name,
                redirect_uri: &redirect_uri,
                verifier_sealed: &verifier_sealed,
                expires_at,
                now,
            })
        },
        move |()| {
            Ok(SocialUrlReply {
                url,
                state,
                expires_at,
            })
        },
    )
    .await
}

/// Consumes the state, exchanges the code and fetches the profile.
async fn authorize<'c>(
    ctx: &'c super::Ctx,
    provider_name: &str,
    code: &Secret,
    state: &Secret,
) -> Result<(&'c ProviderConfig, Identity, Tokens), HandlerError> {
    let (provider, client, sealer) = ctx
        .social
        .provider(provider_name)
        .ok_or(HandlerError::UnknownProvider)?;
    let digest = crypto::digest(state.expose());
    let now = ctx.now();
    let record = ctx
        .write(move |s| s.take_oauth_state(&digest, now))
        .await?
        .ok_or(HandlerError::InvalidState)?;
    if record.provider != provider_name {
        debug!("state issued for another provider");
        return Err(HandlerError::InvalidState);
    }
    let Some(verifier) = sealer
        .open(&record.verifier_sealed, &social::state_aad(&digest))
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
        .map(Secret::new)
    else {
        warn!("a state's PKCE verifier does not open (was the social key changed?)");
        return Err(HandlerError::InvalidState);
    };
    let _permit = ctx.social.try_permit().ok_or_else(|| {
        HandlerError::ProviderUnavailable("too many provider calls in flight".into())
    })?;
    let outcome = async {
        let tokens = client
            .exchange_code(
                provider,
                code.expose(),
                &record.redirect_uri,
                provider.pkce.then(|| verifier.expose()),
            )
            .await?;
        let identity = client.identity(provider, &tokens).await?;
        Ok::<_, ProviderError>((identity, tokens))
    }
    .await;
    match outcome {
        Ok((identity, tokens)) => Ok((provider, identity, tokens)),
        Err(e) => {
            // The detail (an HTTP status, an OAuth error name) is for the operator only.
            warn!(provider = provider_name, error = %e, "provider call failed");
            Err(e.into())
        }
    }
}

/// The provider's profile fields merged into the user's profile (only those it gave).
fn profile_patch(identity: &Identity) -> String {
    let mut patch = serde_json::Map::new();
    if let Some(name) = &identity.name {
        patch.insert("name".into(), name.clone().into());
    }
    if let Some(picture) = &identity.picture {
        patch.insert("picture".into(), picture.clone().into());
    }
    serde_json::Value::Object(patch).to_string()
}

/// Seals the provider tokens for re-checks, bound to the session.
fn seal_tokens(
    ctx: &Call<'_>,
    provider_name: &str,
    tokens: &Tokens,
    session: &Digest,
) -> Result<Vec<u8>, HandlerError> {
    let (_, _, sealer) = ctx
        .social
        .provider(provider_name)
        .ok_or(HandlerError::UnknownProvider)?;
    let kept = KeptTokens {
        access: tokens.access.clone(),
        refresh: tokens.refresh.clone(),
    };
    let mut plain = serde_json::to_vec(&kept).map_err(InternalError::from)?;
    let sealed = sealer.seal(&plain, &social::tokens_aad(session));
    plain.zeroize();
    Ok(sealed?)
}

/// A social login attempt through `provider`, for its `auth.login.failed` event.
fn social_event(provider: &str, user_id: Option<String>, email: Option<String>) -> Attempt {
    Attempt {
        user_id,
        email,
        source: None,
        method: LoginMethod::Social,
        provider: Some(provider.to_owned()),
    }
}

/// The `auth.login.succeeded` event of a social login through `provider`.
fn social_success(provider: &str, user_id: String, email: String) -> EventBody {
    EventBody::LoginSucceeded(LoginSucceeded {
        user_id,
        email,
        method: LoginMethod::Social,
        provider: Some(provider.to_owned()),
    })
}

/// Whether a failure is reported as `auth.login.failed` (a bug of authq or a request that
/// could not even be read is not a login attempt).
fn is_login_failure(e: &HandlerError) -> bool {
    !matches!(
        e,
        HandlerError::Internal(_) | HandlerError::BadRequest(_) | HandlerError::Replayed(_)
    )
}

/// `social_login`: `code` and `state` to a session; creates, links or updates the user.
///
/// Like `login`, every outcome is an `auth.login.succeeded` or `auth.login.failed` event
/// (method `social`, with the provider), and the policies (deny-list, hook) have their say with
/// the user known (id, and the provider's email or the account's) before the session is
/// handed out, whether or not the provider gave an email. A refused first login leaves no
/// account behind.
pub async fn social_login(
    ctx: &Call<'_>,
    req: SocialLoginRequest,
) -> Result<SocialLoginReply, HandlerError> {
    let name = req.provider.clone();
    let (provider, identity, tokens) =
        match authorize(ctx, &req.provider, &req.code, &req.state).await {
            Ok(found) => found,
            Err(e) if is_login_failure(&e) => {
                return login_failed_event(ctx, e, social_event(&name, None, None)).await;
            }
            Err(e) => return Err(e),
        };
    let email = identity.email.as_deref().and_then(|e| Email::parse(e).ok());
    // The deny-list first, on the provider's email, before anything is created or linked; the
    // whole chain (the hook too) runs below with the user known.
    if let Some(email) = &email
        && let Err(reason) = ctx.policy.deny_list(&email.address)
    {
        let data = social_event(&name, None, Some(email.address.clone()));
        return login_failed_event(ctx, HandlerError::PolicyDenied(reason), data).await;
    }
    let link_verified_email = ctx.social.config().may_link_verified_email(provider);
    let patch = profile_patch(&identity);

    let (session, digest) = crypto::new_token()?;
    let session_id = crypto::new_session_id()?;
    let limit = ctx.config.sessions.per_user;
    let now = ctx.now();
    let expires_at = now.saturating_add(duration_ms(ctx.config.sessions.idle_timeout));
    let absolute_expires_at = now.saturating_add(duration_ms(ctx.config.sessions.max_lifetime));
    let recheck_at = ctx
        .social
        .config()
        .recheck_interval
        .map(|d| now.saturating_add(duration_ms(d)));
    // Provider tokens are kept (sealed) only when re-checks need them.
    let tokens_sealed = match recheck_at {
        Some(_) => Some(seal_tokens(ctx, &req.provider, &tokens, &digest)?),
        None => None,
    };
    drop(tokens);
    let new_user_id = uuid::Uuid::now_v7().to_string();
    let max_profile_bytes = ctx.config.max_profile_bytes;
    let provider_name = req.provider;
    let subject = identity.subject;
    let verified = identity.email_verified;
    let provider_email = email.as_ref().map(|e| e.address.clone());
    let new_session_id = session_id.clone();
    // The session is opened here but its token stays in this function until the policies
    // allow it; a refusal ends it at once.
    let outcome = ctx
        .write(move |s| {
            s.social_login(&NewSocialLogin {
                provider: &provider_name,
                subject: &subject,
                email: email.as_ref().map(|e| ProviderEmail {
                    address: &e.address,
                    key: &e.key,
                    verified,
                }),
                link_verified_email,
                profile_patch: &patch,
                max_profile_bytes,
                new_user_id: &new_user_id,
                session_digest: &digest,
                expires_at,
                absolute_expires_at,
                session_id: &new_session_id,
                user_agent: None,
                client_ip: None,
                recheck_at,
                tokens_sealed: tokens_sealed.as_deref(),
                now,
            })
        })
        .await?;
    let (user, created) = match outcome {
        SocialLoginOutcome::LoggedIn { user, created } => (user, created),
        SocialLoginOutcome::LinkRequired => {
            let data = social_event(&name, None, provider_email);
            return login_failed_event(ctx, HandlerError::LinkRequired, data).await;
        }
        SocialLoginOutcome::Suspended => {
            let data = social_event(&name, None, provider_email);
            return login_failed_event(ctx, HandlerError::UserSuspended, data).await;
        }
    };
    record_user(&user.id);
    let email = provider_email.unwrap_or_else(|| user.email.clone());
    // The policies have the last word before the session is handed out, as for `login`.
    let question = PolicyQuestion {
        event: "login",
        user_id: Some(user.id.clone()),
        email: email.clone(),
    };
    if let Err(reason) = ctx.policy.check(&question).await {
        let (user_id, now) = (user.id.clone(), ctx.now());
        ctx.write(move |s| {
            s.end_session(&digest, now)?;
            if created {
                s.delete_user(UserKey::Id(&user_id))?;
            }
            Ok(())
        })
        .await?;
        let data = social_event(&name, Some(user.id), Some(email));
        return login_failed_event(ctx, HandlerError::PolicyDenied(reason), data).await;
    }
    let events = Arc::clone(&ctx.events);
    let body = social_success(&name, user.id.clone(), email);
    let user_id = user.id.clone();
    // For a user with a second factor: the session just opened ends unseen, and a pending
    // handle for `mfa_verify` is the answer.
    let (mfa_pending, mfa_digest) = super::mfa::issue_pending(now)?;
    // Access and refresh tokens (when the deployment issues them), as `login` issues them.
    let tokens = super::tokens::prepare(ctx).await?;
    let refresh_digest = tokens.as_ref().map(|p| p.refresh_digest);
    let sid = session_id.clone();
    ctx.commit(
        move |s| {
            if s.mfa_enabled(&user_id)? {
                s.end_session(&digest, now)?;
                super::mfa::store_pending(
                    s,
                    &super::mfa::PendingLogin {
                        digest: &mfa_digest,
                        user_id: &user_id,
                        expires_at: mfa_pending.expires_at,
                        method: LoginMethod::Social,
                        provider: Some(&name),
                        user_agent: None,
                        client_ip: None,
                    },
                )?;
                return Ok(Err(mfa_pending));
            }
            events.record(s, body, now)?;
            if limit.keep().is_some() {
                // Concurrent logins of the user under a session limit, one after the other.
                s.lock_user_sessions(&user_id)?;
            }
            super::session::enforce_limit(s, &events, limit, &user_id, &session_id, now)?;
            let epoch = refresh_digest
                .map(|d| super::tokens::store(s, &d, &user_id, &session_id, now))
                .transpose()?;
            Ok(Ok(epoch))
        },
        move |opened| {
            let epoch = opened.map_err(HandlerError::MfaRequired)?;
            let issued = super::tokens::finish(tokens, epoch, &user.id, &sid, now)?;
            let (access_token, access_expires_at, refresh_token) =
                super::tokens::Issued::into_fields(issued);
            Ok(SocialLoginReply {
                session,
                expires_at,
                user: user.into_info(),
                created,
                access_expires_at,
                access_token,
                refresh_token,
            })
        },
    )
    .await
}

/// `link_social`: links the provider account of a fresh `social_url` round trip to the user of
/// a live session (how a `link_required` login is completed). The user authenticates with the
/// provider, so it is reported and checked like a social login: `auth.login.succeeded` or
/// `auth.login.failed` (method `social`), and the policies run with the user before the link.
pub async fn link_social(
    ctx: &Call<'_>,
    req: LinkSocialRequest,
) -> Result<LinkSocialReply, HandlerError> {
    // The session first: a dead one costs no provider call and leaves the state unused.
    let session_digest = crypto::digest(req.session.expose());
    let (now, renewal) = (ctx.now(), ctx.renewal());
    let live = ctx
        .read(move |s| s.check_session(&session_digest, now, renewal))
        .await?
        .ok_or(HandlerError::SessionInvalid)?;
    record_user(&live.user.id);
    require_active(&live.user)?;
    let name = req.provider.clone();
    let (user_id, user_email) = (live.user.id.clone(), live.user.email.clone());
    let failed = |e: HandlerError| {
        let data = social_event(&name, Some(user_id.clone()), Some(user_email.clone()));
        login_failed_event::<LinkSocialReply>(ctx, e, data)
    };

    // The provider's tokens are not needed once the identity is known: dropped here.
    let identity = match authorize(ctx, &req.provider, &req.code, &req.state).await {
        Ok((_, identity, _)) => identity,
        Err(e) if is_login_failure(&e) => return failed(e).await,
        Err(e) => return Err(e),
    };
    let question = PolicyQuestion {
        event: "login",
        user_id: Some(live.user.id.clone()),
        email: live.user.email.clone(),
    };
    if let Err(reason) = ctx.policy.check(&question).await {
        return failed(HandlerError::PolicyDenied(reason)).await;
    }
    let now = ctx.now();
    let provider = req.provider.clone();
    let subject = identity.subject.clone();
    let email = identity.email;
    let reply_provider = req.provider;
    let reply_subject = identity.subject;
    let events = Arc::clone(&ctx.events);
    let body = social_success(&name, user_id.clone(), user_email.clone());
    let linked = ctx
        .commit(
            move |s| {
                let outcome = s.link_social(&SocialLink {
                    session_digest: &session_digest,
                    provider: &provider,
                    subject: &subject,
                    email: email.as_deref(),
                    now,
                })?;
                if let LinkOutcome::Linked(_) = &outcome {
                    events.record(s, body, now)?;
                }
                Ok(outcome)
            },
            move |outcome| match outcome {
                LinkOutcome::Linked(user) => Ok(LinkSocialReply {
                    user: user.into_info(),
                    provider: reply_provider,
                    subject: reply_subject,
                }),
                LinkOutcome::AlreadyLinked => Err(HandlerError::AlreadyLinked),
                LinkOutcome::SessionInvalid => Err(HandlerError::SessionInvalid),
                LinkOutcome::Suspended => Err(HandlerError::UserSuspended),
            },
        )
        .await;
    match linked {
        Err(e) if is_login_failure(&e) => failed(e).await,
        other => other,
    }
}

/// What a re-check concluded.
enum Verdict {
    /// The provider still knows the user: the next re-check is after the interval.
    Verified(Option<Vec<u8>>),
    /// The provider could not say (down, slow, garbage): try again after the retry delay.
    Postpone,
    /// The provider refused (or authq can no longer ask it): the session ends.
    Refused(&'static str),
}

/// Re-checks a social session with its provider once its re-check is due (called by `check`
/// for a live session). A refusal ends the session (`session_invalid`); a provider that cannot
/// answer leaves it valid and postpones the re-check; when the provider calls are at their
/// bound the re-check is skipped and a later `check` does it.
pub(crate) async fn recheck(ctx: &Call<'_>, digest: Digest) -> Result<(), HandlerError> {
    let Some(interval) = ctx.social.config().recheck_interval else {
        return Ok(());
    };
    let now = ctx.now();
    let Some(due) = ctx
        .read(move |s| s.social_session_due(&digest, now))
        .await?
    else {
        return Ok(());
    };
    let verdict = match ctx.social.provider(&due.provider) {
        None => Verdict::Refused("the provider is no longer configured"),
        Some((provider, client, sealer)) => {
            let kept = due
                .tokens_sealed
                .as_deref()
                .and_then(|b| sealer.open(b, &social::tokens_aad(&digest)).ok())
                .and_then(|mut plain| {
                    let kept = serde_json::from_slice::<KeptTokens>(&plain).ok();
                    plain.zeroize();
                    kept
                });
            match kept {
                None => Verdict::Refused("no usable provider token"),
                Some(kept) => {
                    let Some(_permit) = ctx.social.try_permit() else {
                        debug!("social re-check skipped: provider calls at their bound");
                        return Ok(());
                    };
                    match verify(client, provider, kept, &due.subject).await {
                        Ok(tokens) => Verdict::Verified(Some(seal_tokens(
                            ctx,
                            &due.provider,
                            &tokens,
                            &digest,
                        )?)),
                        Err(ProviderError::Refused(_) | ProviderError::MissingSubject) => {
                            Verdict::Refused("the provider refused")
                        }
                        Err(e) => {
                            warn!(error = %e, "social re-check postponed");
                            Verdict::Postpone
                        }
                    }
                }
            }
        }
    };
    match verdict {
        Verdict::Verified(sealed) => {
            let next = now.saturating_add(duration_ms(interval));
            ctx.write(move |s| {
                s.social_session_rechecked(&digest, Some(now), next, sealed.as_deref())
            })
            .await?;
            Ok(())
        }
        Verdict::Postpone => {
            let next = now.saturating_add(duration_ms(ctx.social.config().recheck_retry));
            ctx.write(move |s| s.social_session_rechecked(&digest, None, next, None))
                .await?;
            Ok(())
        }
        Verdict::Refused(why) => {
            info!(reason = why, "social re-check refused: session ended");
            ctx.write(move |s| s.end_session(&digest, now)).await?;
            Err(HandlerError::SessionInvalid)
        }
    }
}

/// Asks the provider whether the user is still theirs: refreshes the token when there is a
/// refresh token, then fetches the profile and compares the subject.
async fn verify(
    client: &OAuthClient,
    provider: &ProviderConfig,
    kept: KeptTokens,
    subject: &str,
) -> Result<Tokens, ProviderError> {
    let tokens = match &kept.refresh {
        Some(refresh) => client.refresh(provider, refresh).await?,
        None => Tokens {
            access: kept.access.clone(),
            refresh: None,
            answer: serde_json::Value::Null,
        },
    };
    let identity = client.identity(provider, &tokens).await?;
    if identity.subject != subject {
        return Err(ProviderError::Refused("the token is another user's".into()));
    }
    Ok(tokens)
}
